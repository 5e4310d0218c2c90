"""The Discord double's fault injection, moments, token expiry, gateway drops and channel
history, driven by the real discord.py client."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from tests.discord_double import (
    APPLIED,
    DROP_AFTER,
    DROP_BEFORE,
    RECEIVED,
    RESPONDED,
    Chaos,
    DiscordDouble,
    InteractionRecord,
    RecordedRequest,
    is_file_post,
    is_interaction_callback,
)
from tests.discord_double.client import DEFAULT_TOKEN, running_client

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.discord_double.fixtures"]

CHANNEL_MESSAGES = "/channels/{channel_id}/messages"
CHANNEL_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"
WEBHOOK_MESSAGE = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"

Action = Callable[[discord.Interaction], Awaitable[None]]

# A bot process that posts one file as soon as it is ready, then idles until killed.
FILE_POSTER = """
import asyncio, io, os, discord, yarl
discord.http.Route.BASE = os.environ["API_BASE"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["GATEWAY_URL"])
client = discord.Client(intents=discord.Intents.default())

@client.event
async def on_ready():
    channel = client.get_channel(int(os.environ["CHANNEL_ID"]))
    await channel.send("tile", file=discord.File(io.BytesIO(b"png"), filename="tile.png"))

client.run(os.environ["TOKEN"], log_handler=None)
"""


class ActBot(commands.Bot):
    """Runs the test's ``action`` for each ``/act`` and reports how it ended."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.action: Action | None = None
        self.outcomes: asyncio.Queue[Exception | None] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.tree.add_command(act)
        await self.tree.sync()


@app_commands.command(description="Runs the test's action")
async def act(interaction: discord.Interaction[ActBot]) -> None:
    bot = interaction.client
    assert bot.action is not None
    try:
        await bot.action(interaction)
    except Exception as error:
        bot.outcomes.put_nowait(error)
    else:
        bot.outcomes.put_nowait(None)


@pytest_asyncio.fixture
async def bot(discord_double: DiscordDouble) -> AsyncIterator[ActBot]:
    async with running_client(ActBot()) as client:
        yield client


def text_channel(bot: ActBot, double: DiscordDouble) -> discord.TextChannel:
    channel = bot.get_channel(double.channel().id)
    assert isinstance(channel, discord.TextChannel)
    return channel


def tile() -> discord.File:
    return discord.File(io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(32)), filename="tile.png")


async def run_act(
    double: DiscordDouble, bot: ActBot, action: Action
) -> tuple[InteractionRecord, Exception | None]:
    """Send ``/act`` with ``action`` and return the interaction and what the action raised."""
    bot.action = action
    record = await double.send_slash_command(name="act")
    return record, await asyncio.wait_for(bot.outcomes.get(), timeout=5.0)


# Status faults


async def test_a_queued_429_is_waited_out_and_the_message_created_once(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    double.fail_next("POST", CHANNEL_MESSAGES, status=429)
    await text_channel(bot, double).send("hello")
    limited, created = double.requests("POST", CHANNEL_MESSAGES)
    assert (limited.status, created.status) == (429, 200)
    assert limited.response == {
        "message": "You are being rate limited.",
        "retry_after": 0.05,
        "global": False,
    }
    assert [m.content for m in double.messages()] == ["hello"]
    assert double.fault_counts() == {"429": 1}


async def test_chaos_429s_look_like_discords_and_discord_py_retries_them(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    double.chaos(1.0, kinds=["429"], retry_after=(0.01, 0.02))
    with pytest.raises(discord.HTTPException) as caught:
        await text_channel(bot, double).send("never")
    assert caught.value.status == 429
    assert double.fault_counts("chaos") == {"429": 5}, "discord.py tries five times, then gives up"
    assert not double.messages()

    url = f"{double.api_base}/channels/{double.channel().id}/messages"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"content": "x"}, headers={"Authorization": f"Bot {DEFAULT_TOKEN}"}) as answer,
    ):
        body = await answer.json()
        assert answer.status == 429
        assert (answer.headers["Via"], answer.headers["Retry-After"]) == ("1.1 google", "1")
        assert answer.headers["X-RateLimit-Scope"] == "user"
    assert (body["message"], body["global"]) == ("You are being rate limited.", False)
    assert 0.01 <= body["retry_after"] <= 0.02


async def test_chaos_503_is_not_retried_by_the_rest_client(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    double.chaos(1.0, kinds=["503"])
    with pytest.raises(discord.DiscordServerError) as caught:
        await text_channel(bot, double).send("never")
    assert caught.value.status == 503
    assert caught.value.text == "503: Service Unavailable"
    assert double.fault_counts() == {"503": 1}


# Dropped connections


async def test_drop_before_apply_changes_nothing(discord_double: DiscordDouble, bot: ActBot) -> None:
    double = discord_double
    double.drop_next("POST", CHANNEL_MESSAGES)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await text_channel(bot, double).send("lost", file=tile())
    [dropped] = double.requests("POST", CHANNEL_MESSAGES)
    assert (dropped.fault, dropped.status, dropped.delivered) == (DROP_BEFORE, None, False)
    assert [f.filename for f in dropped.files] == ["tile.png"]
    assert not double.messages()


async def test_drop_after_apply_creates_the_message_but_the_client_never_hears(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    double.drop_next("POST", CHANNEL_MESSAGES, after_apply=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await text_channel(bot, double).send("posted", file=tile())
    [dropped] = double.requests("POST", CHANNEL_MESSAGES)
    assert (dropped.fault, dropped.status, dropped.delivered) == (DROP_AFTER, 200, False)
    [message] = double.messages()
    assert (message.content, [a.filename for a in message.attachments]) == ("posted", ["tile.png"])
    [fault] = double.injected_faults
    assert (fault.kind, fault.source, fault.method, fault.route) == (
        DROP_AFTER,
        "queued",
        "POST",
        CHANNEL_MESSAGES,
    )


async def test_aiohttp_resends_a_dropped_delete(discord_double: DiscordDouble, bot: ActBot) -> None:
    """DELETE is idempotent, so aiohttp itself sends it again on a fresh connection: a drop
    before is invisible to the bot, a drop after turns into 404 Unknown Message."""
    double = discord_double
    channel = text_channel(bot, double)
    first, second = await channel.send("one"), await channel.send("two")
    double.drop_next("DELETE", CHANNEL_MESSAGE)
    await first.delete()
    double.drop_next("DELETE", CHANNEL_MESSAGE, after_apply=True)
    with pytest.raises(discord.NotFound) as caught:
        await second.delete()
    assert caught.value.code == 10008
    assert [(r.fault, r.status) for r in double.requests("DELETE", CHANNEL_MESSAGE)] == [
        (DROP_BEFORE, None),
        (None, 204),
        (DROP_AFTER, 204),
        (None, 404),
    ]
    assert not double.messages()


async def test_a_deferral_dropped_after_apply_is_accepted_but_not_done_for_the_bot(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    done: list[bool] = []

    async def defer(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer()
        finally:
            done.append(interaction.response.is_done())

    double.drop_next("POST", CALLBACK, after_apply=True)
    record, outcome = await run_act(double, bot, defer)
    assert isinstance(outcome, aiohttp.ServerDisconnectedError)
    assert record.response is not None and record.response.type == 5
    assert done == [False], "discord.py only marks the response done once it has Discord's answer"


@pytest.mark.parametrize("after_apply", [False, True], ids=["before", "after"])
async def test_dropped_interaction_webhook_calls_raise_aiohttp_errors(
    discord_double: DiscordDouble, bot: ActBot, after_apply: bool
) -> None:
    double = discord_double
    errors: list[type[Exception] | None] = []

    async def attempt(call: Callable[[], Awaitable[object]], method: str, route: str) -> None:
        double.drop_next(method, route, after_apply=after_apply)
        try:
            await call()
        except Exception as error:
            errors.append(type(error))
        else:
            errors.append(None)

    async def action(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await attempt(lambda: interaction.followup.send("tile", file=tile(), wait=True), "POST", WEBHOOK)
        await attempt(lambda: interaction.edit_original_response(content="edited"), "PATCH", WEBHOOK_MESSAGE)
        await attempt(interaction.delete_original_response, "DELETE", WEBHOOK_MESSAGE)

    record, outcome = await run_act(double, bot, action)
    assert outcome is None
    disconnected = aiohttp.ServerDisconnectedError
    if after_apply:
        assert errors == [disconnected, disconnected, discord.NotFound]
        assert record.original is not None and record.original.deleted
        assert record.original.content == "edited", "the follow-up and the edit both landed"
    else:
        assert errors == [disconnected, disconnected, None]
        assert record.original is not None and record.original.deleted
        assert record.original.loading, "neither the follow-up nor the edit arrived"


# Moments


async def test_a_hold_keeps_the_answer_back_and_hooks_run_in_every_phase(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    phases: list[str] = []
    double.on_moment(lambda request, phase: phases.append(phase), when=is_file_post)
    channel = text_channel(bot, double)
    await channel.send("no file, no moment")
    async with double.hold(APPLIED, is_file_post) as hold:
        sending = asyncio.create_task(channel.send("tile", file=tile()))
        held = await hold.wait()
        assert [m.content for m in double.messages()] == ["no file, no moment", "tile"]
        assert (held.status, held.delivered) == (200, None)
        await asyncio.sleep(0.05)
        assert not sending.done()
    sent = await sending
    assert sent.id == double.messages()[-1].id
    assert phases == [RECEIVED, APPLIED, RESPONDED]
    assert held.delivered is True


async def test_a_hold_at_received_comes_before_anything_is_applied(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double

    async def defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer()

    async with double.hold(RECEIVED, is_interaction_callback) as hold:
        bot.action = defer
        record = await double.send_slash_command(name="act")
        held = await hold.wait()
        assert held.status is None
        assert record.response is None and not double.messages()
    assert await asyncio.wait_for(bot.outcomes.get(), timeout=5.0) is None
    assert record.response is not None and record.response.type == 5


async def test_status_faults_skip_the_applied_phase(discord_double: DiscordDouble, bot: ActBot) -> None:
    double = discord_double
    seen: list[tuple[str, int | None]] = []

    async def note(request: RecordedRequest, phase: str) -> None:
        seen.append((phase, request.status))

    double.on_moment(note)
    double.fail_next("POST", CHANNEL_MESSAGES, status=429)
    await text_channel(bot, double).send("hello")
    assert seen == [(RECEIVED, None), (RESPONDED, 429), (RECEIVED, None), (APPLIED, 200), (RESPONDED, 200)]


async def test_a_failing_hook_is_reported_and_the_call_goes_on(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double

    def boom(request: RecordedRequest, phase: str) -> None:
        raise RuntimeError("harness bug")

    remove = double.on_moment(boom, phases=[RECEIVED])
    await text_channel(bot, double).send("still sent")
    remove()
    assert [str(e) for e in double.internal_errors] == ["harness bug"]
    double.internal_errors.clear()
    assert [m.content for m in double.messages()] == ["still sent"]


async def test_a_client_that_vanishes_mid_request_leaves_the_double_healthy(
    discord_double: DiscordDouble,
) -> None:
    double = discord_double
    channel_id = double.channel().id
    head = (
        f"POST /api/v10/channels/{channel_id}/messages HTTP/1.1\r\nHost: double\r\n"
        f"Authorization: Bot {DEFAULT_TOKEN}\r\nContent-Type: application/json\r\n"
    )
    # Killed while uploading: Discord never saw a whole request.
    _, writer = await asyncio.open_connection(double.host, double.port)
    writer.write(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"content": "cut')
    await writer.drain()
    writer.close()
    # Killed while Discord applied it: the message exists, the answer goes nowhere.
    body = b'{"content": "orphan"}'
    async with double.hold(APPLIED) as hold:
        _, writer = await asyncio.open_connection(double.host, double.port)
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        held = await hold.wait()
        writer.close()
        await asyncio.sleep(0.05)
    await double.wait_for(lambda: held.delivered is not None)
    assert held.delivered is False
    assert [r.json for r in double.requests("POST", CHANNEL_MESSAGES)] == [{"content": "orphan"}]
    assert [m.content for m in double.messages()] == ["orphan"]


@pytest.mark.parametrize("phase", [APPLIED, RESPONDED])
async def test_a_bot_process_killed_at_a_moment_of_its_file_post(
    discord_double: DiscordDouble, phase: str
) -> None:
    """The harness pattern: hold the file post at ``phase``, kill -9 the bot, let the post go on.
    Killed at "applied", the message exists but its answer never reaches the bot."""
    double = discord_double
    env = {
        **os.environ,
        "API_BASE": double.api_base,
        "GATEWAY_URL": double.gateway_url,
        "CHANNEL_ID": str(double.channel().id),
        "TOKEN": DEFAULT_TOKEN,
    }
    async with double.hold(phase, is_file_post) as hold:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", FILE_POSTER, env=env)
        try:
            held = await hold.wait(timeout=30.0)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        await double.wait_for(lambda: not double.gateway.connected_sessions)
    await double.wait_for(lambda: held.delivered is not None)
    assert held.delivered is (phase == RESPONDED)
    [message] = double.messages()
    assert [a.filename for a in message.attachments] == ["tile.png"]


# Chaos


async def test_chaos_with_a_seed_is_reproducible(discord_double: DiscordDouble, bot: ActBot) -> None:
    double = discord_double
    channel = text_channel(bot, double)

    async def one_run() -> list[tuple[str, str]]:
        start = len(double.injected_faults)
        double.chaos(1.0, seed=11, kinds=["503", DROP_BEFORE, DROP_AFTER])
        raised = []
        for n in range(8):
            with pytest.raises((discord.DiscordServerError, aiohttp.ServerDisconnectedError)) as caught:
                await channel.send(f"message {n}")
            raised.append(type(caught.value).__name__)
        double.stop_chaos()
        return list(zip([f.kind for f in double.injected_faults[start:]], raised, strict=True))

    first = await one_run()
    assert await one_run() == first
    assert {kind for kind, _ in first} == {"503", DROP_BEFORE, DROP_AFTER}
    for kind, raised in first:
        assert raised == ("DiscordServerError" if kind == "503" else "ServerDisconnectedError")
    assert len(double.messages()) == 2 * sum(kind == DROP_AFTER for kind, _ in first)
    await channel.send("calm again")
    assert double.requests("POST", CHANNEL_MESSAGES)[-1].fault is None


async def test_chaos_leaves_login_gateway_and_command_sync_alone(discord_double: DiscordDouble) -> None:
    double = discord_double
    double.chaos(1.0)
    async with running_client(ActBot()) as client:
        assert client.is_ready()
        assert double.commands.list(None)
    assert not double.injected_faults
    chaos = Chaos(1.0)
    assert chaos.eligible("POST", WEBHOOK.format(webhook_id=1, webhook_token="t"))
    assert not chaos.eligible("PUT", "/applications/1/commands")
    assert not chaos.eligible("GET", "/channels/1/messages")
    with pytest.raises(ValueError):
        Chaos(1.5)
    with pytest.raises(ValueError):
        Chaos(0.5, kinds=["418"])


def test_chaos_decisions_follow_the_seed_and_rate() -> None:
    path = "/channels/1/messages"
    runs = [Chaos(0.15, seed=3), Chaos(0.15, seed=3)]
    kinds = [[f.kind if (f := chaos.pick("POST", path)) else None for _ in range(200)] for chaos in runs]
    assert kinds[0] == kinds[1]
    assert 10 <= sum(k is not None for k in kinds[0]) <= 50
    weighted = Chaos(1.0, seed=3, kinds={DROP_AFTER: 3.0, "500": 1.0})
    drawn = [weighted.pick("POST", path) for _ in range(100)]
    assert {f.kind for f in drawn if f} == {DROP_AFTER, "500"}
    assert sum(f.kind == DROP_AFTER for f in drawn if f) > 50


# Interaction tokens


async def test_an_expired_token_gets_401_invalid_webhook_token(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double

    async def late_followup(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        assert double.expire_token(interaction.token)
        await interaction.followup.send("too late")

    record, outcome = await run_act(double, bot, late_followup)
    assert isinstance(outcome, discord.HTTPException)
    assert (outcome.status, outcome.code, outcome.text) == (401, 50027, "Invalid Webhook Token")
    assert record.token_expired and record.original is not None and record.original.loading


async def test_expiring_every_token_also_refuses_callbacks(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double

    async def reply(interaction: discord.Interaction) -> None:
        double.expire_token()
        await interaction.response.send_message("too late")

    record, outcome = await run_act(double, bot, reply)
    assert isinstance(outcome, discord.NotFound) and outcome.code == 10062
    assert record.response is None
    fresh, outcome = await run_act(double, bot, lambda i: i.response.send_message("in time"))
    assert outcome is None and not fresh.token_expired


# Gateway


async def test_an_abrupt_gateway_close_is_followed_by_a_resume(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    [session] = double.gateway.live_sessions
    arrived = asyncio.create_task(bot.wait_for("message", timeout=5.0))
    assert double.drop_gateway() == 1
    posted = await double.post_message("said while the bot was away")
    await double.wait_for(lambda: session.resumes == 1 and session.connection is not None)
    first, second = double.gateway.connections
    assert first.close_code == 1006 and first.dropped
    assert [p["op"] for p in second.received if p["op"] != 1][:1] == [6]  # RESUME, not IDENTIFY
    assert (await arrived).id == posted.id, "the event missed while away is replayed"
    _, outcome = await run_act(double, bot, lambda i: i.response.send_message("still here"))
    assert outcome is None


# Channel history


async def test_history_honours_limit_before_after_and_around(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double
    posted = [(await double.post_message(f"m{n}")).id for n in range(105)]
    channel = text_channel(bot, double)

    async def ids(**options: object) -> list[int]:
        return [m.id async for m in channel.history(**options)]  # type: ignore[arg-type]

    assert await ids(limit=3) == posted[::-1][:3]
    assert await ids(before=discord.Object(posted[4]), limit=2) == [posted[3], posted[2]]
    assert await ids(after=discord.Object(posted[1]), limit=3) == posted[2:5]
    raw = double.requests("GET", CHANNEL_MESSAGES)[-1]
    assert [int(m["id"]) for m in raw.response] == posted[4:1:-1], "Discord answers newest first"
    assert await ids(around=discord.Object(posted[50]), limit=5) == posted[52:47:-1]
    assert await ids(limit=None) == posted[::-1]
    assert await ids(after=discord.Object(posted[0]), limit=None) == posted[1:], "paged forward"
    with pytest.raises(discord.HTTPException) as caught:
        await bot.http.logs_from(channel.id, 101)
    assert (caught.value.status, caught.value.code) == (400, 50035)


async def test_history_shows_interaction_messages_but_not_ephemeral_ones(
    discord_double: DiscordDouble, bot: ActBot
) -> None:
    double = discord_double

    async def reply(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("public")
        await interaction.followup.send("only for you", ephemeral=True)
        await interaction.followup.send("follow-up")

    record, outcome = await run_act(double, bot, reply)
    assert outcome is None
    history = [m async for m in text_channel(bot, double).history(limit=10)]
    assert [m.content for m in history] == ["follow-up", "public"]
    assert bot.user is not None
    for message in history:
        assert message.author.id == bot.user.id and message.author.bot
        assert message.webhook_id == double.world.application_id
        assert message.interaction_metadata is not None and message.interaction_metadata.id == record.id
    assert len(double.messages()) == 3, "the ephemeral one exists, only history hides it"
