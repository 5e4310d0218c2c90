"""Discord faults through the real discord.py client: dropped connections, refused tokens, and
a result that reached Discord although the bot never heard so, posted exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta

from tests.discord_double import DiscordDouble
from tests.helpers_services import has_image
from tests.test_bot_e2e import TIMEOUT, BotSettings, result_message, running_nanke, settings

pytest_plugins = ["tests.discord_double.fixtures"]
__all__ = ["settings"]  # the fixture, imported so pytest finds it here

FOLLOW_UP = "/webhooks/{webhook_id}/{webhook_token}"
WEBHOOK_MESSAGE = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"


def delivery_row(settings: BotSettings, job_id: int) -> tuple[str, int | None, str | None]:
    with sqlite3.connect(settings[0].data_dir / "nanke.db") as connection:
        return connection.execute(
            "SELECT status, result_message_id, posting_since FROM deliveries WHERE job_id = ?", (job_id,)
        ).fetchone()


async def test_a_result_whose_answer_was_lost_is_found_not_posted_again(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.drop_next("POST", FOLLOW_UP, after_apply=True)
    async with running_nanke(settings, discord_double) as bot:
        await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2 --size 64x64"}
        )
        posted = await result_message(discord_double)
        await discord_double.wait_for(
            lambda: delivery_row(settings, 1)[2] is not None or None, timeout=TIMEOUT
        )  # the attempt is recorded; its answer never came back
        assert delivery_row(settings, 1)[0] == "pending"

        discord_double.clock.advance(10)  # the retry is due
        # (the first attempt may still be giving up on its lost answer: retry until it has)
        deadline = time.monotonic() + TIMEOUT
        while await bot.deliverer.deliver_due() == 0:
            assert time.monotonic() < deadline, "the retry never ran"
            await asyncio.sleep(0.1)

        assert delivery_row(settings, 1) == ("delivered", posted.id, None)
        assert [m.id for m in discord_double.messages() if has_image(m)] == [posted.id]


async def test_a_dropped_queue_message_edit_still_delivers_without_an_error(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.drop_next("PATCH", WEBHOOK_MESSAGE)
    async with running_nanke(settings, discord_double) as bot:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2 --size 64x64"}
        )
        await command.wait_for_response()
        discord_double.clock.advance(60)  # past the wait for the queue message that never came
        await discord_double.wait_for(lambda: bot.app.jobs.get(1).finished or None, timeout=TIMEOUT)
        await bot.deliverer.deliver_due()
        await result_message(discord_double)
        await discord_double.wait_for(
            lambda: delivery_row(settings, 1)[0] == "delivered" or None, timeout=TIMEOUT
        )
        assert not [
            m for m in discord_double.messages(include_deleted=True) if "went wrong" in (m.content or "")
        ]


async def test_an_expired_token_leaves_no_stale_queue_message(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2 --size 64x64"}
        )
        queued = await command.wait_for_original(lambda m: "job #1" in (m.content or ""), timeout=TIMEOUT)
        bot.deliverer.now = lambda: discord_double.clock.datetime() - timedelta(minutes=20)  # "still valid"
        discord_double.expire_token(command)  # ... but Discord refuses it
        bot.start_worker()
        result = await result_message(discord_double)
        assert result.content.startswith(f"<@{discord_double.user('alice').id}>")
        await discord_double.wait_for(
            lambda: discord_double.message(queued.id).deleted or None, timeout=TIMEOUT
        )
        assert discord_double.requests("DELETE", "/channels/{channel_id}/messages/{message_id}", status=204)
