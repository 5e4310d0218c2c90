"""The HTTP API served beside the bot (NANKE_API_PORT): one queue and one worker for both front
doors, through the real discord.py client and the Discord double."""

from __future__ import annotations

import asyncio

import httpx

from tests.discord_double import DiscordDouble
from tests.test_bot_community import imagine
from tests.test_bot_e2e import BotSettings, running_nanke, settings

pytest_plugins = ["tests.discord_double.fixtures"]
__all__ = ["settings"]  # the fixture, imported so pytest finds it here


async def test_the_api_and_discord_share_the_queue_and_the_worker(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, api=True) as bot:
        assert bot.api is not None
        _, secret = await asyncio.to_thread(bot.app.jobs.keys.create, "beside-the-bot")
        base = f"http://127.0.0.1:{bot.api.port}"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=60
        ) as client:
            generated = asyncio.ensure_future(
                client.post(
                    "/sdapi/v1/txt2img",
                    json={"prompt": "a fox from a script", "steps": 2, "width": 64, "height": 64},
                )
            )
            posted = await imagine(discord_double, "a fox from Discord", count=1)
            answer = await generated
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["images"]) == 1
        assert posted.attachments, "the Discord job was delivered too"
        owners = {job.owner_name for job in map(bot.app.jobs.get, (1, 2))}
        assert owners == {"api:beside-the-bot", "alice"}
