"""The Discord front door's settings: the token, where Discord is, and where to sync commands.

Read like the shared settings (:mod:`pipeline.settings`), from the environment and ``.env``,
every problem one line naming the setting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.settings import Settings, SettingsError, SettingsReader, environment, load_settings

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
TOKEN_HELP = (
    "create an application at https://discord.com/developers/applications, add a bot, copy its token "
    "and put DISCORD_TOKEN=<token> in .env (see README: 'Creating the Discord application')"
)


@dataclass(frozen=True)
class DiscordSettings:
    """How the bot reaches Discord. Field docs name the environment variable that sets each one."""

    discord_token: str | None = field(default=None, repr=False)
    """DISCORD_TOKEN: the bot token (needed by ``run`` only)."""
    discord_api_base: str = DEFAULT_API_BASE
    """DISCORD_API_BASE: Discord's REST API base (change only to use a Discord-compatible server)."""
    discord_gateway_url: str = DEFAULT_GATEWAY_URL
    """DISCORD_GATEWAY_URL: Discord's gateway address (likewise)."""
    guild_ids: tuple[int, ...] = ()
    """NANKE_GUILD_IDS: comma-separated guild ids to sync commands to at once (else global sync)."""

    def require_discord_token(self) -> str:
        if not self.discord_token:
            raise SettingsError([f"DISCORD_TOKEN: not set. To run the bot, {TOKEN_HELP}."])
        return self.discord_token


def load_discord_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> DiscordSettings:
    """Read the Discord settings like :func:`pipeline.settings.load_settings` reads the shared ones."""
    reader = SettingsReader(environment(environ, dotenv=dotenv))
    settings = DiscordSettings(
        discord_token=reader.text("DISCORD_TOKEN", "") or None,
        discord_api_base=reader.url("DISCORD_API_BASE", DEFAULT_API_BASE, ("http://", "https://")),
        discord_gateway_url=reader.url("DISCORD_GATEWAY_URL", DEFAULT_GATEWAY_URL, ("ws://", "wss://")),
        guild_ids=reader.id_list("NANKE_GUILD_IDS"),
    )
    reader.check()
    return settings


def load_bot_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> tuple[Settings, DiscordSettings]:
    """The shared settings and the Discord ones, for running the bot; a :class:`SettingsError`
    lists every problem of both at once."""
    environ = environment(environ, dotenv=dotenv)
    problems: list[str] = []
    loaded: list[object] = []
    for load in (load_settings, load_discord_settings):
        try:
            loaded.append(load(environ))
        except SettingsError as error:
            problems.extend(error.problems)
    if problems:
        raise SettingsError(problems)
    settings, discord_settings = loaded
    return settings, discord_settings  # type: ignore[return-value]
