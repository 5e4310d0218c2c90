"""简体中文 end to end: a member whose Discord is in Chinese gets the queue message, the result,
its buttons and errors in Chinese, through the real discord.py client and the Discord double;
the synced commands carry Chinese names and still run by their English ones."""

from __future__ import annotations

from typing import Any

from tests.discord_double import DiscordDouble
from tests.test_bot_community import ephemeral_answer
from tests.test_bot_e2e import (
    FAST,
    TIMEOUT,
    BotSettings,
    custom_ids,
    labels,
    result_message,
    running_nanke,
    settings,
)

pytest_plugins = ["tests.discord_double.fixtures"]
__all__ = ["settings"]  # the fixture, imported so pytest finds it here

CHINESE = "zh-CN"


def field_names(message: Any) -> list[str]:
    return [field["name"] for field in message.embeds[0]["fields"]]


async def test_a_member_whose_discord_is_in_chinese_is_answered_in_chinese(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        imagine = discord_double.commands.find("imagine", guild_id=discord_double.guild().id)
        assert imagine is not None and imagine["name_localizations"] == {CHINESE: "画图"}
        prompt = next(o for o in imagine["options"] if o["name"] == "prompt")
        assert prompt["name_localizations"] == {CHINESE: "提示词"}

        # A bad flag: an ephemeral error, in Chinese, naming the field
        refused = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 999"}, locale=CHINESE
        )
        response = await refused.wait_for_response()
        assert response.data["flags"] & 64
        assert response.data["content"] == "⚠️ --steps（步数）：'999' 超出范围（允许 1 到 150 的整数）"

        # The queue message, the /queue answer, then the result with its embed and buttons
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a red fox {FAST}"}, locale=CHINESE
        )
        queued = await command.wait_for_original(lambda m: "任务 #1" in (m.content or ""), timeout=TIMEOUT)
        assert queued.content == "**a red fox**\n⏳ 等待开始（队列第 1 位） · 任务 #1"
        queue = await discord_double.send_slash_command(name="queue", locale=CHINESE)
        assert (await ephemeral_answer(queue)).startswith("📋 你的任务\n#1 ⏳ 第 1 位 · 1 张图")
        bot.start_worker()
        result = await result_message(discord_double)
        assert result.content == "**a red fox**"
        assert field_names(result) == ["种子", "步数", "采样器", "提示词相关性（CFG）", "尺寸", "模型"]
        assert result.embeds[0]["footer"]["text"].startswith("任务 #1 · 作者 alice")
        assert labels(result) == [
            *("放大（2 倍）", "强烈变体", "细微变体", "🔄", "🗑️"),
            *("❤️", "分享", "使用此提示词"),
            *("缩小 2 倍", "缩小 1.5 倍", "局部重绘"),
            *("⬅️", "➡️", "⬆️", "⬇️"),
        ]

        # A button: its child job is announced and delivered in the clicker's language
        upscale = await discord_double.click_button(result, custom_ids(result)[0], locale=CHINESE)
        upscaled = await result_message(discord_double, count=2)
        assert upscaled.content == "**a red fox** — 放大自 #1 第 1 张"
        assert upscale.response is not None

        # Refusals, in Chinese too; an English member still reads English
        stranger = discord_double.add_user("bob")
        share = next(i for i in custom_ids(result) if i.startswith("nk:share:"))
        click = await discord_double.click_button(result, share, user=stranger, locale=CHINESE)
        assert await ephemeral_answer(click) == "⚠️ 只有这张图片的作者才能分享它。"
        click = await discord_double.click_button(result, share, user=stranger)
        assert await ephemeral_answer(click) == "⚠️ Only the person who made this image can share it."


async def test_a_result_posted_after_a_restart_is_in_the_servers_language(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.guild().locale = CHINESE
    async with running_nanke(settings, discord_double, worker=False):
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        queued = await command.wait_for_original(lambda m: "job #1" in (m.content or ""), timeout=TIMEOUT)
        assert "Waiting to start" in queued.content, "the member's own language while it is known"

    async with running_nanke(settings, discord_double):  # a new process: nobody's interaction is known
        result = await result_message(discord_double)
        assert field_names(result)[:2] == ["种子", "步数"]
        assert "使用此提示词" in labels(result)
