"""Moderation through the real discord.py client and the Discord double: a server with a normal and
an age-restricted channel, its content rules set with /settings moderation and applied to
/imagine, remixes and /reproduce, the image safety check withholding or spoilering, banned
members turned away, daily limits, and every decision in /admin log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.settings import load_bot_settings
from pipeline.domain.metadata import write_png
from tests.discord_double import DiscordDouble
from tests.discord_double.client import DEFAULT_TOKEN
from tests.discord_double.command_options import OptionFile
from tests.helpers_services import has_image
from tests.test_bot_community import ephemeral_answer, imagine, listed, listing
from tests.test_bot_e2e import FAST, TIMEOUT, BotSettings, custom_ids, job_count, running_nanke, settings

pytest_plugins = ["tests.discord_double.fixtures"]
__all__ = ["settings"]  # the fixture, imported so pytest finds it here


@pytest.fixture
def adult_channel(discord_double: DiscordDouble) -> Any:
    return discord_double.world.add_channel(discord_double.guild(), "adult", nsfw=True)


async def moderation(double: DiscordDouble, subcommand: str, *, user: Any = None, **options: Any) -> Any:
    """``/settings moderation <subcommand>`` by the server's owner (or ``user``); its answer."""
    command = await double.send_slash_command(
        name="settings",
        subcommand=f"moderation {subcommand}",
        options=options,
        user=user or double.guild().owner_id,
    )
    return await command.wait_for_response()


async def admin(double: DiscordDouble, subcommand: str, **options: Any) -> Any:
    command = await double.send_slash_command(
        name="admin", subcommand=subcommand, options=options, user=double.guild().owner_id
    )
    return command


async def audit_log(double: DiscordDouble, **options: Any) -> str:
    command = await admin(double, "log", **options)
    [answer] = await command.wait_for_followups(1, timeout=TIMEOUT)
    assert answer.ephemeral
    return answer.embeds[0]["description"]


async def refused(double: DiscordDouble, prompt: str, **where: Any) -> str:
    command = await double.send_slash_command(name="imagine", options={"prompt": f"{prompt} {FAST}"}, **where)
    return await ephemeral_answer(command)


async def finished_message(double: DiscordDouble, job_id: int, channel: Any = None) -> Any:
    """The result of ``job_id`` (its 🗑 button), with or without an image."""

    def found() -> Any:
        for message in double.messages(channel):
            if f"nk:delete:{job_id}" in custom_ids(message):
                return message
        return None

    return await double.wait_for(found, timeout=TIMEOUT)


async def test_the_rules_apply_in_both_channels_and_every_decision_is_logged(
    settings: BotSettings, discord_double: DiscordDouble, adult_channel: Any
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        answer = await moderation(discord_double, "banned-terms", action="add", terms="gore, Blood Bath")
        fields = {f["name"]: f["value"] for f in answer.data["embeds"][0]["fields"]}
        assert "`gore`, `Blood Bath`" in fields["Banned terms (refused everywhere)"]
        assert answer.data["flags"] & 64
        shown = await moderation(discord_double, "show", user="alice")
        assert "Manage Server" in shown.data["content"]
        empty = await moderation(discord_double, "banned-terms", action="remove")
        assert "Name the terms" in empty.data["content"]

        # A banned term: refused in both channels, whatever its spelling
        assert "does not allow “gore”" in await refused(discord_double, "a castle, (((G.O.R.E)))")
        said = await refused(discord_double, "ＧＯＲＥ 城堡", locale="zh-CN")
        assert "本服务器不允许在提示词中使用“gore”" in said
        assert "“Blood Bath”" in await refused(discord_double, "a bloodbath", channel="adult")
        # An adult term: only in the age-restricted channel
        assert "age-restricted channel" in await refused(discord_double, "a nude figure study")
        adult = await imagine(discord_double, "a nude figure study", count=1, channel="adult")
        assert adult.attachments, "shown as it is where adult content is allowed"
        assert job_count(bot) == 1

        # A remix of an allowed prompt with a banned term added, and a /reproduce import
        fox = await imagine(discord_double, "a red fox", count=1)
        use = next(i for i in custom_ids(fox) if i.startswith("nk:use:"))
        click = await discord_double.click_button(fox, use)
        await click.wait_for_response()
        [field] = [
            c for row in click.modal["components"] for c in row.get("components", [row.get("component")])
        ]
        remix = await discord_double.submit_modal(click, {field["custom_id"]: "a red fox, gore --steps 2"})
        assert "does not allow “gore”" in await ephemeral_answer(remix)
        png = write_png(Image.new("RGB", (64, 64)), "blood bath at dusk\nSteps: 2, Seed: 5, Size: 64x64")
        reproduce = await discord_double.send_slash_command(
            name="reproduce", options={"image": OptionFile("a.png", png, "image/png")}
        )
        assert "does not allow “Blood Bath”" in await ephemeral_answer(reproduce)
        assert job_count(bot) == 2

        # Adult jobs stay out of the listings
        assert listed(await listing(discord_double, "recent")) == [2]

        log = await audit_log(discord_double)
        lines = log.splitlines()
        assert len(lines) == 8, log
        assert "changed the content rules" in lines[-1] and "+gore" in lines[-1]
        assert sum("prompt refused (banned term" in line for line in lines) == 5
        assert any("prompt refused (adult term “nude”)" in line for line in lines)
        assert any("adult prompt allowed" in line and line.endswith("· #1") for line in lines)
        alice = discord_double.world.user("alice").id
        assert all(f"<@{alice}>" in line or "changed" in line for line in lines)
        assert len((await audit_log(discord_double, member=alice)).splitlines()) == 7


@pytest.fixture
def checked_settings(
    tmp_path: Path, tiny_model_dir: Path, discord_double: DiscordDouble, tiny_safety_checkers: dict[str, Path]
) -> BotSettings:
    return load_bot_settings(
        {
            "NANKE_DATA_DIR": str(tmp_path / "data"),
            "NANKE_MODEL": str(tiny_model_dir),
            "NANKE_DEVICE": "cpu",
            "NANKE_SAFETY_CHECKER": str(tiny_safety_checkers["sd_all"]),
            "DISCORD_TOKEN": DEFAULT_TOKEN,
            "DISCORD_API_BASE": discord_double.api_base,
            "DISCORD_GATEWAY_URL": discord_double.gateway_url,
            "NANKE_MAX_QUEUED_PER_USER": "10",
        }
    )


async def test_flagged_images_are_withheld_or_spoilered_per_the_servers_policy(
    checked_settings: BotSettings, discord_double: DiscordDouble, adult_channel: Any
) -> None:
    async with running_nanke(checked_settings, discord_double):
        await discord_double.send_slash_command(name="imagine", options={"prompt": f"a lighthouse {FAST}"})
        withheld = await finished_message(discord_double, 1)
        assert not withheld.attachments
        assert "Held back here: adult content" in withheld.content
        shown = await imagine(discord_double, "a lighthouse", count=1, channel="adult")
        assert shown.attachments and not shown.attachments[0].filename.startswith("SPOILER_")

        await moderation(discord_double, "flagged-images", action="spoiler")
        await discord_double.send_slash_command(name="imagine", options={"prompt": f"a lighthouse {FAST}"})
        covered = await finished_message(discord_double, 3)
        assert covered.attachments[0].filename.startswith("SPOILER_")
        assert "Behind a spoiler" in covered.content

        # Never in the showcase, nor shown again outside age-restricted channels
        owner = discord_double.guild().owner_id
        showcase = await discord_double.send_slash_command(
            name="settings", subcommand="showcase", options={"channel": "art"}, user=owner
        )
        assert "Shared images now go to" in await ephemeral_answer(showcase)
        share = next(i for i in custom_ids(covered) if i.startswith("nk:share:"))
        assert "cannot be shared" in await ephemeral_answer(await discord_double.click_button(covered, share))
        show = await discord_double.send_slash_command(name="show", options={"job": 3})
        assert "age-restricted channel" in await ephemeral_answer(show)
        assert not [m for m in discord_double.messages("art") if has_image(m)]

        log = await audit_log(discord_double)
        assert log.count("The safety check flagged image 1") == 3


async def test_a_banned_member_is_turned_away_and_daily_limits_hold(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    alice = discord_double.world.user("alice")
    async with running_nanke(settings, discord_double):
        fox = await imagine(discord_double, "a red fox", count=1)
        await (await admin(discord_double, "ban", member=alice.id, reason="posting spam")).wait_for_response()

        like = next(i for i in custom_ids(fox) if i.startswith("nk:like:"))
        assert "posting spam" in await ephemeral_answer(await discord_double.click_button(fox, like))
        assert "posting spam" in await refused(discord_double, "a fox")
        recent = await discord_double.send_slash_command(name="prompts", subcommand="recent")
        assert "posting spam" in await ephemeral_answer(recent)
        bob = discord_double.add_user("bob")
        assert "posting spam" not in await ephemeral_answer(
            await discord_double.click_button(fox, like, user=bob)
        )

        await (await admin(discord_double, "unban", member=alice.id)).wait_for_response()
        limit = await admin(discord_double, "limit", member=alice.id, images=1)
        assert "Daily limit of" in await ephemeral_answer(limit)
        assert "have 0 left today" in await refused(discord_double, "a fox")

        log = await audit_log(discord_double, member=alice.id)
        assert "turned away (banned)" in log and "banned <@" in log and "lifted the ban" in log
        assert "daily limit reached" in log and "set the daily limit" in log
