"""End-to-end checks of the Discord double, driven by the real discord.py client."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import re
import warnings
from collections.abc import AsyncIterator

import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands
from discord.http import Route
from PIL import Image

from tests.discord_double import DiscordDouble, OptionFile, StoredMessage
from tests.discord_double.client import running_client

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.discord_double.fixtures"]


def png_bytes(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


class VariantButton(discord.ui.DynamicItem[discord.ui.Button], template=r"variant:(?P<seed>\d+)"):
    def __init__(self, seed: int) -> None:
        super().__init__(discord.ui.Button(label=f"Variant {seed}", custom_id=f"variant:{seed}"))
        self.seed = seed

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> VariantButton:
        return cls(int(match["seed"]))

    async def callback(self, interaction: discord.Interaction[DoubleTestBot]) -> None:
        interaction.client.clicks.append((self.seed, interaction.user.id))
        await interaction.response.edit_message(
            content=f"variant {self.seed} chosen by {interaction.user.name}"
        )


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="What do you think?", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction[DoubleTestBot]) -> None:
        interaction.client.feedback.append(self.text.value)
        await interaction.response.send_message("thanks", ephemeral=True)


@app_commands.command(description="Answers with a tile and a button")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    view = discord.ui.View(timeout=None)
    view.add_item(VariantButton(42))
    tile = discord.File(io.BytesIO(png_bytes()), filename="tile.png")
    await interaction.followup.send("pong", file=tile, view=view)


@app_commands.command(description="Repeats the text")
async def echo(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(text)


@echo.autocomplete("text")
async def echo_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=current + end, value=current + end) for end in ("!", "?")]


@app_commands.command(description="Opens a feedback form")
async def feedback(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(FeedbackModal())


@app_commands.command(description="Shows whether you may manage messages")
async def perms(interaction: discord.Interaction) -> None:
    allowed = interaction.permissions.manage_messages
    await interaction.response.send_message(f"manage_messages={allowed}", ephemeral=True)


@app_commands.command(description="Answers once released")
async def slow_reply(interaction: discord.Interaction[DoubleTestBot]) -> None:
    await interaction.client.release.wait()
    try:
        await interaction.response.send_message("finally")
    except discord.HTTPException as error:
        interaction.client.errors.put_nowait(error)


@app_commands.command(description="Defers, and follows up once released")
async def slow_followup(interaction: discord.Interaction[DoubleTestBot]) -> None:
    await interaction.response.defer(thinking=True)
    await interaction.client.release.wait()
    try:
        await interaction.followup.send("finally")
    except discord.HTTPException as error:
        interaction.client.errors.put_nowait(error)


class DoubleTestBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.clicks: list[tuple[int, int]] = []
        self.feedback: list[str] = []
        self.errors: asyncio.Queue[discord.HTTPException] = asyncio.Queue()
        self.release = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(VariantButton)
        for command in (ping, echo, feedback, perms, slow_reply, slow_followup):
            self.tree.add_command(command)
        await self.tree.sync()


class StylePicker(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(custom_id="style", options=[discord.SelectOption(label=s) for s in ("photo", "ink")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.edit_message(content=f"style={select.values[0]}", view=None)


class NameForm(discord.ui.Modal, title="Name"):
    name = discord.ui.Label(text="Name", component=discord.ui.TextInput(custom_id="form:name"))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.name.component, discord.ui.TextInput)
        await interaction.response.send_message(f"hi {self.name.component.value}")


class GuildBot(DoubleTestBot):
    """Syncs an ``/imagine`` group to one guild only."""

    def __init__(self, guild_id: int) -> None:
        super().__init__()
        self.guild_id = guild_id

    async def setup_hook(self) -> None:
        imagine = app_commands.Group(name="imagine", description="Make images")

        @imagine.command(description="From a prompt")
        @app_commands.describe(prompt="What", steps="How many", who="For whom", init="Start image")
        async def text(
            interaction: discord.Interaction,
            prompt: str,
            steps: app_commands.Range[int, 1, 50] = 20,
            who: discord.Member | None = None,
            init: discord.Attachment | None = None,
        ) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            start = await init.read() if init else b""
            await interaction.edit_original_response(
                content=f"{prompt}/{steps}/{who and who.name}/{len(start)}",
                attachments=[discord.File(io.BytesIO(png_bytes(4)), filename="out.png")],
            )
            await interaction.followup.send("style?", view=StylePicker())

        @imagine.command(description="Asks a name")
        async def form(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(NameForm())

        self.tree.add_command(imagine, guild=discord.Object(self.guild_id))
        await self.tree.sync(guild=discord.Object(self.guild_id))


@pytest_asyncio.fixture
async def bot(discord_double: DiscordDouble) -> AsyncIterator[DoubleTestBot]:
    client = DoubleTestBot()
    async with running_client(client):
        yield client


async def ping_followup(double: DiscordDouble) -> StoredMessage:
    record = await double.send_slash_command(name="ping")
    [message] = await record.wait_for_followups()
    return message


async def test_login_identify_and_command_sync(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    assert [r.path for r in double.requests()[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    [sync] = double.requests("PUT", "/applications/{application_id}/commands")
    assert sync.status == 200
    synced = {c["name"]: c for c in double.commands.list(None)}
    assert set(synced) == {"ping", "echo", "feedback", "perms", "slow_reply", "slow_followup"}
    assert synced["echo"]["options"][0]["type"] == 3
    assert {c.name for c in await bot.tree.fetch_commands()} == set(synced)

    connection = double.gateway.connections[0]
    assert connection.compress == "zlib-stream"
    assert connection.session is not None
    assert connection.session.intents == discord.Intents.default().value
    guild = double.guild()
    assert bot.get_guild(guild.id) is not None
    assert bot.get_guild(guild.id).get_member(double.world.bot.id) is not None
    assert not double.unknown_requests()


async def test_wrong_token_fails_login(discord_double: DiscordDouble) -> None:
    with pytest.raises(discord.LoginFailure):
        async with running_client(DoubleTestBot(), token="not-the-token"):
            pass
    assert discord_double.requests("GET", "/users/@me")[0].status == 401


async def test_ping_defers_then_follows_up_with_file_and_view(
    discord_double: DiscordDouble, bot: DoubleTestBot
) -> None:
    double = discord_double
    record = await double.send_slash_command(name="ping")
    response = await record.wait_for_response()
    assert response.type == 5
    [message] = await record.wait_for_followups()

    [upload] = double.requests("POST", "/webhooks/{application_id}/{token}")
    assert upload.status == 200
    assert upload.json["content"] == "pong"
    assert [(f.field, f.filename) for f in upload.files] == [("files[0]", "tile.png")]
    # The first follow-up after a deferral fills the "thinking..." message.
    assert message.id == record.original_message_id
    assert not message.loading
    assert message.content == "pong"
    assert "variant:42" in message.custom_ids()
    [attachment] = message.attachments
    assert attachment.content_type == "image/png"
    assert Image.open(io.BytesIO(attachment.data)).size == (8, 8)
    url = double.render(message)["attachments"][0]["url"]
    assert await bot.http.get_from_cdn(url) == attachment.data
    assert double.messages() == [message]


async def test_dynamic_button_click_runs_the_callback(
    discord_double: DiscordDouble, bot: DoubleTestBot
) -> None:
    double = discord_double
    message = await ping_followup(double)
    click = await double.click_button(message, "variant:42", user="moderator")
    response = await click.wait_for_response()
    assert response.type == 7
    assert bot.clicks == [(42, double.user("moderator").id)]
    assert double.message(message.id).content == "variant 42 chosen by moderator"


async def test_dynamic_items_survive_a_restart(discord_double: DiscordDouble) -> None:
    double = discord_double
    async with running_client(DoubleTestBot()):
        message = await ping_followup(double)
    restarted = DoubleTestBot()
    async with running_client(restarted):
        click = await double.click_button(message, "variant:42")
        assert (await click.wait_for_response()).type == 7
    assert restarted.clicks == [(42, double.user("alice").id)]


async def test_permissions_follow_the_roles(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    stranger = double.add_user("stranger")
    for user, allowed in ((stranger, False), ("moderator", True)):
        record = await double.send_slash_command(name="perms", user=user)
        response = await record.wait_for_response()
        assert (response.type, response.data["content"]) == (4, f"manage_messages={allowed}")
        assert record.original is not None and record.original.ephemeral


async def test_options_are_typed_and_checked(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    record = await double.send_slash_command(name="echo", options={"text": "hello"})
    assert (await record.wait_for_original()).content == "hello"
    assert record.payload["data"]["options"] == [{"name": "text", "type": 3, "value": "hello"}]
    with pytest.raises(ValueError, match="no option"):
        await double.send_slash_command(name="echo", options={"txt": "hello"})
    with pytest.raises(ValueError, match="missing required"):
        await double.send_slash_command(name="echo")
    with pytest.raises(LookupError):
        await double.send_slash_command(name="imagine")


async def test_autocomplete_and_modal(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    typing = await double.send_autocomplete(name="echo", options={"text": "hel"}, focused="text")
    assert (await typing.wait_for_response()).type == 8
    assert [c["value"] for c in typing.choices or []] == ["hel!", "hel?"]

    record = await double.send_slash_command(name="feedback")
    assert (await record.wait_for_response()).type == 9
    submitted = await double.submit_modal(record, {"feedback:text": "lovely"})
    response = await submitted.wait_for_response()
    assert (response.type, response.data["content"]) == (4, "thanks")
    assert bot.feedback == ["lovely"]


async def test_late_callback_is_an_unknown_interaction(
    discord_double: DiscordDouble, bot: DoubleTestBot
) -> None:
    double = discord_double
    record = await double.send_slash_command(name="slow_reply")
    double.clock.advance(3.5)
    bot.release.set()
    error = await asyncio.wait_for(bot.errors.get(), timeout=5.0)
    assert isinstance(error, discord.NotFound)
    assert error.code == 10062
    assert record.response is None


async def test_expired_token_gets_401(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    record = await double.send_slash_command(name="slow_followup")
    assert (await record.wait_for_response()).type == 5
    double.clock.advance(15 * 60 + 1)
    bot.release.set()
    error = await asyncio.wait_for(bot.errors.get(), timeout=5.0)
    assert (error.status, error.code) == (401, 50027)
    assert double.requests("POST", "/webhooks/{id}/{token}", status=401)
    assert record.original is not None and record.original.loading


async def test_fault_injection_500_then_200(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    double.fail_next("POST", "/channels/{id}/messages", status=500)
    channel = bot.get_channel(double.channel().id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello")
    assert [r.status for r in double.requests("POST", "/channels/{id}/messages")] == [500, 200]
    assert double.message(sent.id).content == "hello"


async def test_upload_over_the_limit_is_rejected(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    double.upload_limit = 1024
    channel = bot.get_channel(double.channel().id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(file=discord.File(io.BytesIO(bytes(2048)), filename="big.bin"))
    assert (caught.value.status, caught.value.code) == (413, 40005)
    assert not double.messages()


async def test_edit_spacing_violations_are_recorded(
    discord_double: DiscordDouble, bot: DoubleTestBot
) -> None:
    double = discord_double
    double.min_edit_interval = 10.0
    channel = bot.get_channel(double.channel().id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("step 0")
    await message.edit(content="step 1")
    await message.edit(content="step 2")
    double.clock.advance(10)
    await message.edit(content="step 3")
    assert [v.message_id for v in double.violations] == [message.id]
    assert double.message(message.id).content == "step 3"


async def test_enforced_edit_spacing_answers_429(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    double.min_edit_interval = 0.2
    double.enforce_edit_interval = True
    channel = bot.get_channel(double.channel().id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("step 0")
    await message.edit(content="step 1")
    await message.edit(content="step 2")  # 429 with retry_after, which discord.py waits out
    edits = double.requests("PATCH", "/channels/{id}/messages/{mid}")
    assert [r.status for r in edits] == [200, 429, 200]
    assert len(double.violations) == 1
    assert double.message(message.id).content == "step 2"


async def test_guild_group_with_typed_options(discord_double: DiscordDouble) -> None:
    double = discord_double
    guild = double.guild()
    async with running_client(GuildBot(guild.id)):
        assert [c["name"] for c in double.commands.list(guild.id)] == ["imagine"]
        record = await double.send_slash_command(
            name="imagine",
            subcommand="text",
            options={
                "prompt": "cat",
                "steps": 30,
                "who": "moderator",
                "init": OptionFile("in.png", png_bytes(2)),
            },
        )
        original = await record.wait_for_original()
        data = record.payload["data"]
        assert data["guild_id"] == str(guild.id)
        assert [o["type"] for o in data["options"][0]["options"]] == [3, 4, 6, 11]
        assert original.ephemeral
        assert original.content == f"cat/30/moderator/{len(png_bytes(2))}"
        assert [a.filename for a in original.attachments] == ["out.png"]
        [picker] = await record.wait_for_followups()
        pick = await double.select_values(picker, "style", ["ink"])
        assert (await pick.wait_for_response()).type == 7
        assert (double.message(picker.id).content, double.message(picker.id).components) == ("style=ink", [])
        with pytest.raises(ValueError, match="outside"):
            await double.send_slash_command(
                name="imagine", subcommand="text", options={"prompt": "x", "steps": 99}
            )

        asked = await double.send_slash_command(name="imagine", subcommand="form")
        assert (await asked.wait_for_response()).type == 9
        answered = await double.submit_modal(asked, {"form:name": "Zed"})
        assert (await answered.wait_for_original()).content == "hi Zed"


async def test_unknown_routes_are_recorded(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(Route("GET", "/nowhere/{thing_id}", thing_id=1))
    [unknown] = discord_double.unknown_requests()
    assert (unknown.path, unknown.status, unknown.response) == (
        "/nowhere/1",
        404,
        {"message": "Unknown", "code": 0},
    )


async def test_heartbeats_are_acknowledged(discord_double: DiscordDouble) -> None:
    double = discord_double
    double.heartbeat_interval = 0.05
    async with running_client(DoubleTestBot()) as client:
        connection = double.gateway.connections[-1]
        await double.wait_for(lambda: len(connection.heartbeats) >= 3, timeout=2.0)
        assert client.latency < 1.0


async def test_reconnect_resumes_the_session(discord_double: DiscordDouble, bot: DoubleTestBot) -> None:
    double = discord_double
    [session] = double.gateway.live_sessions
    await double.request_reconnect()
    await double.wait_for(lambda: session.resumes == 1 and session.connection is not None)
    assert len(double.gateway.connections) == 2
    assert double.gateway.connections[1].received[-1]["op"] == 6  # RESUME
    record = await double.send_slash_command(name="echo", options={"text": "still here"})
    assert (await record.wait_for_response()).type == 4


async def test_shutdown_is_clean(discord_double: DiscordDouble, caplog: pytest.LogCaptureFixture) -> None:
    double = discord_double
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with running_client(DoubleTestBot()) as client:
            await ping_followup(double)
        await double.wait_for(lambda: not double.gateway.open_connections)
        gc.collect()
    assert client.is_closed()
    # Client.close() asks for 1000, but its reader task closes the socket first, with 4000.
    assert [c.close_code for c in double.gateway.connections] in ([1000], [4000])
    assert not double.gateway.connected_sessions
    assert not [w for w in caught if issubclass(w.category, ResourceWarning | RuntimeWarning)]
    assert "Task was destroyed" not in caplog.text
    assert "Unclosed" not in caplog.text
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in pending if "discord" in repr(t.get_coro())]
