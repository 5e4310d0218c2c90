"""Sharing end to end: likes, the showcase, remixes, /prompts listings, privacy, guild isolation,
/show, /history and /info, through the real discord.py client and the loopback Discord double."""

from __future__ import annotations

from typing import Any

from tests.discord_double import DiscordDouble
from tests.helpers_services import has_image
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


async def imagine(double: DiscordDouble, prompt: str, *, user: Any = None, count: int, **where: Any) -> Any:
    """Run /imagine and wait for its result: the ``count``-th result message in that channel."""
    command = await double.send_slash_command(
        name="imagine", options={"prompt": f"{prompt} {FAST}"}, user=user, **where
    )
    await command.wait_for_response()
    channel = where.get("channel")

    def results() -> list[Any] | None:
        found = [m for m in double.messages(channel) if has_image(m) and not m.ephemeral]
        return found if len(found) >= count else None

    return (await double.wait_for(results, timeout=TIMEOUT))[count - 1]


async def listing(double: DiscordDouble, name: str, *, user: Any = None, **options: Any) -> Any:
    """Run ``/prompts <name>`` (or another listing command) and return its ephemeral answer."""
    if name in ("history",):
        command = await double.send_slash_command(name=name, user=user)
    else:
        command = await double.send_slash_command(name="prompts", subcommand=name, options=options, user=user)
    message = await command.wait_for_original(lambda m: bool(m.content), timeout=TIMEOUT)
    assert message.ephemeral
    return message


def listed(message: Any) -> list[int]:
    return [int(embed["title"].lstrip("#")) for embed in message.embeds]


async def ephemeral_answer(command: Any) -> str:
    """The text of an ephemeral answer: the response itself, or a follow-up after a deferral."""
    response = await command.wait_for_response()
    if response.type == 4:
        assert response.data["flags"] & 64
        return response.data["content"]
    [followup] = await command.wait_for_followups(1, timeout=TIMEOUT)
    assert followup.ephemeral
    return followup.content


def like_id(message: Any) -> str:
    return next(i for i in custom_ids(message) if i.startswith("nk:like:"))


def like_label(message: Any) -> str | None:
    return message.component(like_id(message)).get("label")


async def test_like_toggles_counts_and_feeds_top(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        result = await imagine(discord_double, "a red fox --n 2", count=1)
        assert labels(result)[-3:] == ["❤️", "Share", "Use this prompt"]
        for user, expected in (("alice", "1"), ("moderator", "2"), ("alice", "1")):
            click = await discord_double.click_button(result, like_id(result), user=user)
            await click.wait_for_followups(1, timeout=TIMEOUT)
            assert like_label(discord_double.message(result.id)) == expected
        top = await listing(discord_double, "top", period="all")
        assert listed(top) == [1]
        assert "❤ 1" in top.embeds[0]["footer"]["text"]
        assert top.embeds[0]["thumbnail"]["url"].startswith("attachment://") and top.attachments
        # The ❤ on the listing itself works too and updates that message's count.
        click = await discord_double.click_button(top, like_id(top), user="alice")
        await click.wait_for_followups(1, timeout=TIMEOUT)
        assert like_label(discord_double.message(top.id)) == "2"


async def test_search_ranks_and_private_jobs_never_appear(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        await imagine(discord_double, "a red fox in the snow near a river", count=1)
        await imagine(discord_double, "fox fox portrait", count=2)
        await imagine(discord_double, "a secret fox --private", count=3)
        answer = await discord_double.send_slash_command(
            name="settings", subcommand="private", options={"enabled": True}
        )
        assert "private by default" in await ephemeral_answer(answer)
        await imagine(discord_double, "another fox, private by default", count=4)
        answer = await discord_double.send_slash_command(
            name="settings", subcommand="private", options={"enabled": False}
        )
        assert "public by default" in await ephemeral_answer(answer)
        await imagine(discord_double, "a cat", count=5)

        assert listed(await listing(discord_double, "search", text="fox")) == [2, 1]
        assert listed(await listing(discord_double, "search", text="river FOX")) == [1]
        assert listed(await listing(discord_double, "recent")) == [5, 2, 1]
        assert listed(await listing(discord_double, "by", member="alice")) == [5, 2, 1]
        assert listed(await listing(discord_double, "top", period="all")) == [5, 2, 1]
        history = await listing(discord_double, "history")
        assert listed(history) == [5, 4, 3, 2]  # the owner's own, private ones too; page 1 of 2
        page_two = await discord_double.click_button(history, custom_ids(history)[-1])
        await page_two.wait_for_response()
        assert listed(discord_double.message(history.id)) == [1]

        for command in ("show", "info"):
            refused = await discord_double.send_slash_command(
                name=command, options={"job": 3}, user="moderator"
            )
            assert "not found" in await ephemeral_answer(refused)
        own = await discord_double.send_slash_command(name="info", options={"job": 3})
        [info] = await own.wait_for_followups(1, timeout=TIMEOUT)
        assert "private" in info.embeds[0]["title"]


async def test_deleted_job_leaves_every_listing(settings: BotSettings, discord_double: DiscordDouble) -> None:
    async with running_nanke(settings, discord_double) as bot:
        result = await imagine(discord_double, "a lonely fox", count=1)
        assert listed(await listing(discord_double, "search", text="fox")) == [1]
        delete = next(i for i in custom_ids(result) if i.startswith("nk:delete:"))
        click = await discord_double.click_button(result, delete)
        await click.wait_for_followups(1, timeout=TIMEOUT)
        assert listed(await listing(discord_double, "search", text="fox")) == []
        assert listed(await listing(discord_double, "recent")) == []
        assert not list(bot.app.settings.image_dir.rglob("*.png"))


async def test_guild_isolation(settings: BotSettings, discord_double: DiscordDouble) -> None:
    world = discord_double.world
    other = world.add_guild("other guild")
    world.add_channel(other, "lobby")
    bob = world.add_user("bob", guild=other)
    async with running_nanke(settings, discord_double):
        await imagine(discord_double, "a fox from guild A", count=1)
        await imagine(discord_double, "a fox from guild B", user=bob, guild=other, channel="lobby", count=1)
        in_b = await discord_double.send_slash_command(
            guild=other,
            channel="lobby",
            user=bob,
            name="prompts",
            subcommand="search",
            options={"text": "fox"},
        )
        message = await in_b.wait_for_original(lambda m: bool(m.content), timeout=TIMEOUT)
        assert listed(message) == [2]
        assert listed(await listing(discord_double, "search", text="fox")) == [1]
        for command in ("show", "info"):
            refused = await discord_double.send_slash_command(
                guild=other, channel="lobby", user=bob, name=command, options={"job": 1}
            )
            assert "not found" in await ephemeral_answer(refused)


async def test_share_posts_once_to_the_showcase_and_refuses_others(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    guild = discord_double.guild()
    owner = discord_double.user(guild.owner_id)
    async with running_nanke(settings, discord_double):
        refused = await discord_double.send_slash_command(
            name="settings", subcommand="showcase", options={"channel": "art"}
        )
        assert "Manage Server" in await ephemeral_answer(refused)
        accepted = await discord_double.send_slash_command(
            name="settings", subcommand="showcase", options={"channel": "art"}, user=owner
        )
        assert "now go to" in await ephemeral_answer(accepted)

        result = await imagine(discord_double, "a fox worth showing", count=1)
        share = next(i for i in custom_ids(result) if i.startswith("nk:share:"))
        stranger = await discord_double.click_button(result, share, user="moderator")
        assert "Only the person" in await ephemeral_answer(stranger)
        assert not discord_double.messages("art")

        first = await discord_double.click_button(result, share)
        assert "Shared #1" in await ephemeral_answer(first)
        [post] = discord_double.messages("art")
        assert post.attachments and "alice" in post.content and "a fox worth showing" in post.content
        assert "Use this prompt" in labels(post)
        again = await discord_double.click_button(result, share)
        assert "already" in await ephemeral_answer(again)
        assert len(discord_double.messages("art")) == 1

        delete = next(i for i in custom_ids(result) if i.startswith("nk:delete:"))
        deleted = await discord_double.click_button(result, delete)
        await deleted.wait_for_followups()
        assert not discord_double.messages("art"), "deleting a job takes its showcase post down too"


async def test_remix_links_parent_and_child_and_credits_the_author(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        original = await imagine(discord_double, "a red fox --cfg 6", count=1)
        use = next(i for i in custom_ids(original) if i.startswith("nk:use:"))
        click = await discord_double.click_button(original, use, user="moderator")
        await click.wait_for_response()
        [field] = [
            c for row in click.modal["components"] for c in row.get("components", [row.get("component")])
        ]
        assert (
            field["value"].startswith("a red fox")
            and "--cfg 6" in field["value"]
            and "--steps 2" in field["value"]
        )
        await discord_double.submit_modal(click, {field["custom_id"]: field["value"].replace("red", "blue")})
        remix = await result_message(discord_double, count=2)
        assert "Remix of #1 by @alice" in remix.content
        assert remix.allowed_mentions == {"parse": []}
        child = bot.app.jobs.get(2)
        assert (child.kind, child.parent_id, child.request.prompt) == ("remix", 1, "a blue fox")
        assert child.request.cfg_scale == 6
        top = await listing(discord_double, "top", period="all")
        assert listed(top)[0] == 1 and "🔁 1" in top.embeds[0]["footer"]["text"]
        info = await discord_double.send_slash_command(name="info", options={"job": 1})
        [answer] = await info.wait_for_followups(1, timeout=TIMEOUT)
        fields = {f["name"]: f["value"] for f in answer.embeds[0]["fields"]}
        assert fields["Children"] == "#2"
        assert "Steps: 2" in fields["Parameters (paste into the WebUI)"]


async def test_show_of_an_old_job_has_working_buttons_after_a_restart(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        await imagine(discord_double, "a fox from before", count=1)

    async with running_nanke(settings, discord_double):
        show = await discord_double.send_slash_command(name="show", options={"job": 1}, user="moderator")
        [posted] = await show.wait_for_followups(1, timeout=TIMEOUT)
        assert posted.attachments and not posted.ephemeral
        click = await discord_double.click_button(posted, like_id(posted), user="moderator")
        await click.wait_for_followups(1, timeout=TIMEOUT)
        assert like_label(discord_double.message(posted.id)) == "1"
        await discord_double.click_button(posted, custom_ids(posted)[0], user="moderator")  # Upscale
        upscaled = await result_message(discord_double, count=3)
        assert "Upscale of #1 image 1" in upscaled.content


async def test_listing_and_settings_commands_exist_only_in_servers(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        synced = {command["name"]: command for command in discord_double.commands.list(None)}
    for name in ("prompts", "settings", "show", "history", "info"):
        command = synced[name]
        assert command.get("contexts") == [0] or command.get("dm_permission") is False, (name, command)
