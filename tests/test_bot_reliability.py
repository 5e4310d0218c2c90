"""Reliability through the real discord.py client and the Discord double: forged and malformed
clicks, the job written before Discord hears back, /queue, /admin pause|resume|ban|unban."""

from __future__ import annotations

import sqlite3
from typing import Any

from tests.discord_double import DiscordDouble
from tests.discord_double.models import ALL_PERMISSIONS
from tests.discord_double.moments import RECEIVED, is_interaction_callback
from tests.test_bot_community import ephemeral_answer, imagine
from tests.test_bot_e2e import (
    TIMEOUT,
    BotSettings,
    custom_ids,
    job_count,
    result_message,
    running_nanke,
    settings,
)

pytest_plugins = ["tests.discord_double.fixtures"]
__all__ = ["settings"]  # the fixture, imported so pytest finds it here


def forge(message: Any, genuine: str, forged: str) -> None:
    """Make the button ``genuine`` of a stored message carry ``forged`` (what a modified client sends)."""
    message.component(genuine)["custom_id"] = forged


async def click_answer(double: DiscordDouble, message: Any, custom_id: str, user: Any = None) -> str:
    return await ephemeral_answer(await double.click_button(message, custom_id, user=user))


async def test_clicks_forged_to_name_another_guilds_job_do_nothing(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    world = discord_double.world
    other = world.add_guild("other guild", bot_permissions=ALL_PERMISSIONS)
    world.add_channel(other, "lobby")
    admin_b = world.add_user("mallory", guild=other, permissions=ALL_PERMISSIONS)
    async with running_nanke(settings, discord_double) as bot:
        await imagine(discord_double, "a fox from guild A", count=1)
        theirs = await imagine(
            discord_double, "a fox from guild B", user=admin_b, guild=other, channel="lobby", count=1
        )
        own = {cid.split(":")[1]: cid for cid in custom_ids(theirs)}  # up, var, reroll, delete, like, ...
        forged = {
            own["up"]: "nk:up:1:0",
            own["var"]: "nk:var:1:0:strong",
            own["reroll"]: "nk:reroll:1",
            own["delete"]: "nk:delete:1",
            own["like"]: "nk:like:1",
            own["share"]: "nk:share:1",
            own["use"]: "nk:use:1",
        }
        for genuine, fake in forged.items():
            forge(theirs, genuine, fake)
            answer = await click_answer(discord_double, theirs, fake, user=admin_b)
            assert "not found" in answer, (fake, answer)
        assert job_count(bot) == 2, "nothing was queued"
        assert bot.app.jobs.get(1).status == "done", "guild A's job was not deleted"
        assert bot.app.jobs.community.like_count(1) == 0


async def test_malformed_and_unknown_custom_ids_are_refused_politely(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        result = await imagine(discord_double, "a fox", count=1)
        genuine = custom_ids(result)
        for fake in (
            "nk:up:abc:9",
            "nk:up:" + "9" * 200 + ":0",
            "nk:zzz:1",
            "nk:page:top:1:forever",
            "nk:up:1",
        ):
            forge(result, genuine.pop(0), fake)
            assert "not valid" in await click_answer(discord_double, result, fake), fake
        assert job_count(bot) == 1


async def test_the_job_is_stored_before_discord_hears_back(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    rows_when_acknowledged: list[int] = []

    def count_rows(request: Any, phase: str) -> None:
        rows_when_acknowledged.append(stored_jobs(settings))

    discord_double.on_moment(count_rows, phases=[RECEIVED], when=is_interaction_callback)
    async with running_nanke(settings, discord_double, worker=False) as bot:
        for prompt in ("a fox --steps 2", "a whale --steps 2"):
            command = await discord_double.send_slash_command(name="imagine", options={"prompt": prompt})
            assert (await command.wait_for_response()).type == 5
        assert job_count(bot) == 2
    assert rows_when_acknowledged == [1, 2], "each acknowledgement left after its job was written"


def stored_jobs(settings: BotSettings) -> int:
    with sqlite3.connect(settings[0].data_dir / "nanke.db") as connection:
        return connection.execute("SELECT count(*) FROM jobs").fetchone()[0]


async def test_queue_shows_your_jobs_and_admins_see_the_servers(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    alice = discord_double.user("alice")
    bob = discord_double.add_user("bob")
    async with running_nanke(settings, discord_double, worker=False):
        for user, prompt in ((alice, "a fox"), (bob, "a whale"), (alice, "an owl")):
            command = await discord_double.send_slash_command(
                name="imagine", options={"prompt": f"{prompt} --steps 2"}, user=user
            )
            await command.wait_for_original(lambda m: "job #" in (m.content or ""), timeout=TIMEOUT)

        mine = await ephemeral_answer(await discord_double.send_slash_command(name="queue", user=bob))
        assert "#2 ⏳ position 2" in mine and "#1" not in mine and "2 other job(s)" in mine

        owner = discord_double.guild().owner_id
        everyone = await ephemeral_answer(await discord_double.send_slash_command(name="queue", user=owner))
        assert all(f"#{n} ⏳ position {n}" in everyone for n in (1, 2, 3))
        assert "bob" in everyone and "alice" in everyone


async def test_admins_pause_resume_ban_and_unban(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    owner = discord_double.guild().owner_id
    bob = discord_double.add_user("bob")

    async def admin(subcommand: str, user: Any = owner, **options: Any) -> str:
        command = await discord_double.send_slash_command(
            name="admin", subcommand=subcommand, options=options, user=user
        )
        return await ephemeral_answer(command)

    async with running_nanke(settings, discord_double) as bot:
        assert "Manage Server" in await admin("pause", user=bob)
        assert "paused" in await admin("pause")
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2"}
        )
        await command.wait_for_original(lambda m: "job #1" in (m.content or ""), timeout=TIMEOUT)
        queue = await ephemeral_answer(await discord_double.send_slash_command(name="queue"))
        assert "paused by an admin" in queue
        assert bot.app.jobs.get(1).status == "queued"
        assert "runs again" in await admin("resume")
        await result_message(discord_double)

        assert "can no longer" in await admin("ban", member=bob.id, reason="posting spam")
        refused = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2"}, user=bob
        )
        assert "posting spam" in await ephemeral_answer(refused)
        assert job_count(bot) == 1
        assert "may ask for images again" in await admin("unban", member=bob.id)
        allowed = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2 --size 64x64"}, user=bob
        )
        await allowed.wait_for_original(lambda m: "job #2" in (m.content or ""), timeout=TIMEOUT)
