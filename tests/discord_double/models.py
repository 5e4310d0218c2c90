"""The world the double serves: users, guilds, roles, channels, members and their permissions."""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import FakeClock, Snowflakes

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

GUILD_TEXT = 0
GUILD_CATEGORY = 4

OVERWRITE_ROLE = 0
OVERWRITE_MEMBER = 1


@dataclass
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False


@dataclass
class Overwrite:
    id: int
    type: int = OVERWRITE_ROLE
    allow: int = 0
    deny: int = 0


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = GUILD_TEXT
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    nsfw: bool = False
    overwrites: list[Overwrite] = field(default_factory=list)


@dataclass
class Member:
    user: User
    role_ids: list[int]
    joined_at: str
    nick: str | None = None


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    locale: str = "en-US"

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def permissions_for(self, user_id: int, channel_id: int | None = None) -> int:
        """Discord's permission computation: roles, administrator, then channel overwrites."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members[user_id]
        base = self.everyone.permissions
        for role_id in member.role_ids:
            base |= self.roles[role_id].permissions
        if base & ADMINISTRATOR:
            return ALL_PERMISSIONS
        channel = self.channels.get(channel_id) if channel_id is not None else None
        if channel is None:
            return base
        by_target = {(o.type, o.id): o for o in channel.overwrites}
        everyone = by_target.get((OVERWRITE_ROLE, self.id))
        if everyone is not None:
            base = (base & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = by_target.get((OVERWRITE_ROLE, role_id))
            if overwrite is not None:
                allow |= overwrite.allow
                deny |= overwrite.deny
        base = (base & ~deny) | allow
        own = by_target.get((OVERWRITE_MEMBER, user_id))
        if own is not None:
            base = (base & ~own.deny) | own.allow
        return base

    def text_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.type == GUILD_TEXT]


class World:
    """Everything the double knows about: created empty, filled by :meth:`default` or by hand."""

    def __init__(self, clock: FakeClock, snowflakes: Snowflakes, *, bot_name: str = "nanke") -> None:
        self.clock = clock
        self.snowflakes = snowflakes
        self.bot = User(id=snowflakes.next(), username=bot_name, bot=True)
        self.application_id = self.bot.id
        self.users: dict[int, User] = {self.bot.id: self.bot}
        self.guilds: dict[int, Guild] = {}

    @classmethod
    def default(cls, clock: FakeClock, snowflakes: Snowflakes) -> World:
        """One guild with ``#general`` and ``#art``, an owner, a moderator (Manage Messages),
        and ``alice``, a plain member without it."""
        world = cls(clock, snowflakes)
        guild = world.add_guild("nanke test guild")
        world.add_channel(guild, "general")
        world.add_channel(guild, "art")
        world.add_user("alice", guild=guild)
        moderators = world.add_role(guild, "Moderator", MANAGE_MESSAGES)
        world.add_user("moderator", guild=guild, roles=[moderators])
        return world

    def add_guild(self, name: str, *, owner: User | None = None, bot_permissions: int = 0) -> Guild:
        """A guild with its @everyone role, the bot as a member (with a managed role holding
        ``bot_permissions``) and an owner (created when not given)."""
        guild_id = self.snowflakes.next()
        if owner is None:
            owner = self._new_user(f"{name}-owner")
        guild = Guild(id=guild_id, name=name, owner_id=owner.id)
        guild.roles[guild_id] = Role(id=guild_id, name="@everyone", permissions=EVERYONE_PERMISSIONS)
        self.guilds[guild_id] = guild
        bot_role = self.add_role(guild, self.bot.username, bot_permissions, managed=True)
        self.add_member(guild, self.bot, roles=[bot_role])
        self.add_member(guild, owner)
        return guild

    def add_role(self, guild: Guild, name: str, permissions: int, *, managed: bool = False) -> Role:
        role = Role(
            id=self.snowflakes.next(),
            name=name,
            permissions=permissions,
            position=len(guild.roles),
            managed=managed,
        )
        guild.roles[role.id] = role
        return role

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        type: int = GUILD_TEXT,
        parent: Channel | None = None,
        overwrites: list[Overwrite] | None = None,
        nsfw: bool = False,
    ) -> Channel:
        channel = Channel(
            id=self.snowflakes.next(),
            guild_id=guild.id,
            name=name,
            type=type,
            position=len(guild.channels),
            parent_id=parent.id if parent else None,
            overwrites=list(overwrites or []),
            nsfw=nsfw,
        )
        guild.channels[channel.id] = channel
        return channel

    def add_user(
        self,
        username: str,
        *,
        guild: Guild | None = None,
        roles: list[Role] | None = None,
        permissions: int | None = None,
        bot: bool = False,
    ) -> User:
        """A user; with ``guild``, also a member holding ``roles``. ``permissions`` gives the
        member a role of its own with exactly those bits (on top of @everyone's)."""
        user = self._new_user(username, bot=bot)
        if guild is not None:
            member_roles = list(roles or [])
            if permissions is not None:
                member_roles.append(self.add_role(guild, f"{username} role", permissions))
            self.add_member(guild, user, roles=member_roles)
        return user

    def add_member(self, guild: Guild, user: User, *, roles: list[Role] | None = None) -> Member:
        member = Member(user=user, role_ids=[r.id for r in roles or []], joined_at=self.clock.iso())
        guild.members[user.id] = member
        return member

    def _new_user(self, username: str, *, bot: bool = False) -> User:
        user = User(id=self.snowflakes.next(), username=username, bot=bot)
        self.users[user.id] = user
        return user

    # Look-ups accepting an object, an id or a name.

    def guild(self, ref: Guild | int | str | None = None) -> Guild:
        if isinstance(ref, Guild):
            return ref
        for guild in self.guilds.values():
            if ref is None or ref in (guild.id, guild.name):
                return guild
        raise KeyError(f"no guild {ref!r}")

    def channel(
        self, ref: Channel | int | str | None = None, guild: Guild | int | str | None = None
    ) -> Channel:
        if isinstance(ref, Channel):
            return ref
        guilds = [self.guild(guild)] if guild is not None else list(self.guilds.values())
        for candidate in guilds:
            if ref is None:
                return candidate.text_channels()[0]
            for channel in candidate.channels.values():
                if ref in (channel.id, channel.name):
                    return channel
        raise KeyError(f"no channel {ref!r}")

    def user(self, ref: User | int | str) -> User:
        if isinstance(ref, User):
            return ref
        for user in self.users.values():
            if ref in (user.id, user.username):
                return user
        raise KeyError(f"no user {ref!r}")

    def default_user(self, guild: Guild) -> User:
        """The first member added who is neither the bot nor the owner (``alice`` by default)."""
        for member in guild.members.values():
            if not member.user.bot and member.user.id != guild.owner_id:
                return member.user
        raise KeyError(f"guild {guild.name!r} has no plain member")

    def role(self, guild: Guild, ref: Role | int | str) -> Role:
        if isinstance(ref, Role):
            return ref
        for role in guild.roles.values():
            if ref in (role.id, role.name):
                return role
        raise KeyError(f"no role {ref!r}")

    def guild_of_channel(self, channel_id: int) -> Guild | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild
        return None
