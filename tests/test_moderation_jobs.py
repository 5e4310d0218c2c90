"""Moderation through the job interface, on the tiny model: each guild's content rules applied
wherever a prompt enters, adult jobs kept out of listings and the showcase, daily limits, and the
audit log of every decision and admin action."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from pipeline.domain.moderation import with_terms
from pipeline.errors import Banned, ContentRefused, DailyLimitReached
from pipeline.queue.jobs import Destination, Viewer
from pipeline.queue.jobs.moderation import start_of_day
from storage import Job
from tests.helpers_services import LOCAL, Services, member, small_request

pytest_plugins = ("tests.fixtures_services",)

GUILD, OTHER = 100, 200
ADMIN = 9
NORMAL = Destination(channel_id=101, guild_id=GUILD)
ADULT = Destination(channel_id=102, guild_id=GUILD, age_restricted=True)


def submit(
    services: Services, prompt: str, *, who: int = 1, where: Destination = NORMAL, **changes: Any
) -> Any:
    return services.jobs.submit(small_request(prompt, **changes), requester=member(who), destination=where)


def finish(services: Services, job: Any) -> Any:
    services.runner.run_and_save([job.id])
    return services.jobs.get(job.id)


def ban_terms(services: Services, *terms: str, guild: int = GUILD) -> None:
    services.jobs.moderation.change_policy(
        guild_id=guild,
        actor_discord_id=ADMIN,
        change=lambda policy: replace(policy, banned_terms=with_terms(policy.banned_terms, added=terms)),
    )


def actions(services: Services, guild: int = GUILD) -> list[str]:
    return [entry.action for entry in reversed(services.jobs.moderation.log(guild_id=guild, limit=100))]


def test_a_banned_term_is_refused_in_that_guild_and_logged(services: Services) -> None:
    ban_terms(services, "gore", "blood bath")
    with pytest.raises(ContentRefused, match="gore") as refused:
        submit(services, "a castle, (((G.O.R.E))) everywhere")
    assert refused.value.key == "prompt_banned" and refused.value.params == {"term": "gore"}
    with pytest.raises(ContentRefused):
        submit(services, "a bloodbath", where=ADULT)  # age-restricted channels too
    submit(services, "a castle, gore", where=Destination(channel_id=201, guild_id=OTHER))  # not there
    submit(services, "a castle", negative_prompt="gore")  # the negative prompt is not judged

    [*_, last] = services.jobs.moderation.log(guild_id=GUILD, limit=100)[::-1]
    assert (last.action, last.actor_discord_id, last.detail["rule"], last.detail["term"]) == (
        "prompt_refused",
        1,
        "banned",
        "blood bath",
    )
    assert actions(services) == ["policy", "prompt_refused", "prompt_refused"]
    assert actions(services, OTHER) == []


def test_adult_prompts_go_only_to_age_restricted_channels_and_never_into_listings(services: Services) -> None:
    with pytest.raises(ContentRefused) as refused:
        submit(services, "a nude figure study")
    assert refused.value.key == "prompt_adult_channel"
    adult = finish(services, submit(services, "a nude figure study", where=ADULT))
    plain = finish(services, submit(services, "a figure study", where=ADULT))

    assert adult.flagged and all(image.flagged for image in adult.images)
    assert not plain.flagged
    for kind, options in (("recent", {}), ("search", {"text": "figure"}), ("by", {"discord_id": 1})):
        listed = services.jobs.community.listing(kind, guild_id=GUILD, limit=10, offset=0, **options)
        assert [entry.job_id for entry in listed] == [plain.id], kind
    with pytest.raises(ContentRefused, match="showcase") as showcase:
        services.jobs.community.claim_showcase(adult.id, channel_id=555)
    assert showcase.value.key == "showcase_adult"
    assert services.jobs.community.claim_showcase(plain.id, channel_id=555)
    [entry] = [e for e in services.jobs.moderation.log(guild_id=GUILD) if e.action == "prompt_adult"]
    assert (entry.job_id, entry.detail["term"]) == (adult.id, "nude")


def test_a_guild_may_refuse_adult_prompts_everywhere(services: Services) -> None:
    services.jobs.moderation.change_policy(
        guild_id=GUILD, actor_discord_id=ADMIN, change=lambda policy: replace(policy, nsfw_action="refuse")
    )
    with pytest.raises(ContentRefused) as refused:
        submit(services, "nsfw", where=ADULT)
    assert refused.value.key == "prompt_adult_nowhere"


def test_minors_with_adult_content_are_refused_even_where_adult_content_is_allowed(
    services: Services,
) -> None:
    with pytest.raises(ContentRefused) as refused:
        submit(services, "nsfw schoolgirl", where=ADULT)
    assert refused.value.key == "prompt_minors" and "schoolgirl" not in str(refused.value)


def test_child_jobs_are_judged_too(services: Services) -> None:
    parent = finish(services, submit(services, "a red fox"))
    ban_terms(services, "fox")
    with pytest.raises(ContentRefused):  # a reroll of a prompt banned since
        services.jobs.submit_child(parent.id, action="reroll", requester=member(1), destination=NORMAL)
    services.jobs.moderation.change_policy(
        guild_id=GUILD, actor_discord_id=ADMIN, change=lambda policy: replace(policy, banned_terms=("gore",))
    )
    # A remix of an allowed prompt with a banned term added
    with pytest.raises(ContentRefused):
        services.jobs.submit(
            small_request("a red fox, gore"),
            requester=member(2),
            kind="remix",
            destination=NORMAL,
            parent_id=parent.id,
        )
    services.jobs.submit_child(parent.id, action="variation", requester=member(2), destination=NORMAL)


def test_work_from_an_adult_image_stays_in_age_restricted_channels(services: Services) -> None:
    adult = finish(services, submit(services, "a nude figure study", where=ADULT))
    with pytest.raises(ContentRefused) as refused:
        services.jobs.submit_child(adult.id, action="upscale", requester=member(1), destination=NORMAL)
    assert refused.value.key == "image_adult"
    child = services.jobs.submit_child(adult.id, action="upscale", requester=member(1), destination=ADULT)
    assert child.flagged, "an upscale of an adult image is adult content too"
    assert "image_refused" in actions(services)


def test_the_command_line_is_not_judged(services: Services) -> None:
    ban_terms(services, "fox")
    assert services.jobs.submit(small_request("a fox"), requester=LOCAL).status == "queued"


def test_daily_limits_per_guild_and_per_member(services: Services) -> None:
    moderation = services.jobs.moderation

    def ask(count: int = 1, where: Destination = NORMAL) -> None:
        # Cancelled at once (a cancelled job's images still count): the queue limit stays out of it
        services.jobs.cancel(submit(services, "a fox", count=count, where=where).id)

    moderation.change_policy(
        guild_id=GUILD, actor_discord_id=ADMIN, change=lambda policy: replace(policy, daily_limit=3)
    )
    ask(2)
    with pytest.raises(DailyLimitReached) as refused:
        ask(2)
    assert refused.value.params == {"limit": 3, "left": 1}
    ask(1)
    with pytest.raises(DailyLimitReached):
        ask()
    ask(where=Destination(channel_id=201, guild_id=OTHER))  # per guild

    # Yesterday's images no longer count
    with services.database.session() as session:
        for job in session.query(Job).where(Job.guild_id == GUILD):
            job.created_at = start_of_day(job.created_at) - timedelta(minutes=1)
    ask(3)

    moderation.set_daily_limit(guild_id=GUILD, discord_id=1, images=0, actor_discord_id=ADMIN)
    assert moderation.daily_limit(guild_id=GUILD, discord_id=1) == (0, True)
    ask(4)  # no limit for this member
    moderation.set_daily_limit(guild_id=GUILD, discord_id=1, images=None, actor_discord_id=ADMIN)
    assert moderation.daily_limit(guild_id=GUILD, discord_id=1) == (3, False)
    with pytest.raises(DailyLimitReached):
        ask()
    assert actions(services).count("daily_limit") == 3
    assert actions(services).count("limit") == 2


def test_admin_actions_are_logged_with_who_did_what(services: Services) -> None:
    moderation = services.jobs.moderation
    moderation.ban(guild_id=GUILD, discord_id=1, reason="spam", banned_by=ADMIN)
    with pytest.raises(Banned):
        moderation.refuse_banned(guild_id=GUILD, discord_id=1)
    moderation.unban(guild_id=GUILD, discord_id=1, actor_discord_id=ADMIN)
    moderation.pause(guild_id=GUILD, actor_discord_id=ADMIN)
    moderation.resume(guild_id=GUILD, actor_discord_id=ADMIN)
    job = finish(services, submit(services, "a fox", who=2))
    services.jobs.delete(job.id, viewer=Viewer(ADMIN, GUILD, moderator=True))
    own = submit(services, "a fox", who=3)
    services.jobs.cancel(own.id, viewer=Viewer(3, GUILD))  # the owner's own: not an admin action

    assert actions(services) == ["ban", "banned_refused", "unban", "pause", "resume", "delete"]
    entries = moderation.log(guild_id=GUILD)
    deleted = entries[0]
    assert (deleted.actor_discord_id, deleted.target_discord_id, deleted.job_id) == (ADMIN, 2, job.id)
    assert deleted.detail["prompt"] == "a fox"
    assert [e.action for e in moderation.log(guild_id=GUILD, discord_id=1)] == [
        "unban",
        "banned_refused",
        "ban",
    ]
    assert [e.action for e in moderation.log(guild_id=GUILD, limit=2, offset=1)] == ["resume", "pause"]


def test_a_change_of_the_rules_is_checked_and_logged_as_what_changed(services: Services) -> None:
    moderation = services.jobs.moderation
    policy = moderation.change_policy(
        guild_id=GUILD,
        actor_discord_id=ADMIN,
        change=lambda p: replace(
            p,
            banned_terms=("gore", "GORE", "  "),
            nsfw_terms=with_terms(p.nsfw_terms, removed=["nude"]),
            flagged_images="spoiler",
        ),
    )
    assert policy.banned_terms == ("gore",) and "nude" not in policy.nsfw_terms
    assert moderation.policy(guild_id=GUILD) == policy
    [entry] = moderation.log(guild_id=GUILD)
    assert entry.detail["changes"] == {
        "banned_terms": {"added": ["gore"], "removed": []},
        "nsfw_terms": {"added": [], "removed": ["nude"]},
        "flagged_images": "spoiler",
    }
    moderation.change_policy(guild_id=GUILD, actor_discord_id=ADMIN, change=lambda p: p)
    assert len(moderation.log(guild_id=GUILD)) == 1, "a change that changes nothing is not logged"
    for bad in ({"nsfw_action": "sometimes"}, {"flagged_images": "blur"}, {"daily_limit": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            moderation.change_policy(
                guild_id=GUILD, actor_discord_id=ADMIN, change=lambda p, bad=bad: replace(p, **bad)
            )
    assert moderation.policy(guild_id=OTHER).banned_terms == ()
