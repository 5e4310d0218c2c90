"""Community storage: the FTS5 prompt index kept in sync by triggers, search ranking, visibility
(guild and private), likes, top by period, the showcase claim and per-member settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from storage import (
    Database,
    Job,
    Like,
    ListedJob,
    NewImage,
    ShowcasePost,
    claim_showcase_post,
    create_job,
    delete_job,
    finish_job,
    get_or_create_user,
    jobs_by_member,
    like_count,
    member_history,
    private_by_default,
    recent_jobs,
    record_showcase_post,
    release_showcase_post,
    search_jobs,
    set_private_by_default,
    set_showcase_channel,
    showcase_channel,
    start_job,
    toggle_like,
    top_jobs,
    utcnow,
)

GUILD = 100
OTHER_GUILD = 200


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'nanke.db'}")
    database.upgrade()
    yield database
    database.dispose()


def user_id(database: Database, discord_id: int) -> int:
    with database.session() as session:
        return get_or_create_user(session, discord_id=discord_id, name=f"member-{discord_id}").id


def add_job(
    database: Database,
    prompt: str,
    *,
    owner: int = 1,
    guild: int | None = GUILD,
    private: bool = False,
    done: bool = True,
    kind: str = "imagine",
    parent_id: int | None = None,
) -> int:
    with database.session() as session:
        user = get_or_create_user(session, discord_id=owner, name=f"member-{owner}")
        job = create_job(
            session,
            kind=kind,
            owner=user,
            request_json="{}",
            prompt=prompt,
            guild_id=guild,
            private=private,
            parent_id=parent_id,
        )
        if done:
            start_job(session, job_id=job.id)
            image = NewImage(0, 1, 64, 64, f"{job.id:064x}", f"ab/{job.id}.png", 10)
            finish_job(
                session, job_id=job.id, images=[image], model_name="m", model_hash=None, environment_json=None
            )
        return job.id


def indexed(database: Database, words: str) -> list[int]:
    """What the FTS5 index itself returns for ``words`` (no filters)."""
    with database.session() as session:
        rows = session.execute(
            text("SELECT rowid FROM job_search WHERE job_search MATCH :q ORDER BY rowid"), {"q": words}
        )
        return [row[0] for row in rows]


def ids(entries: list[ListedJob]) -> list[int]:
    return [entry.job_id for entry in entries]


def listed(database: Database, listing: Callable[..., list[ListedJob]], **options: Any) -> list[int]:
    """The job ids ``listing`` returns, read in a session of its own."""
    with database.session() as session:
        return ids(listing(session, **options))


# -- the index stays in sync ----------------------------------------------------------------------


def test_index_follows_insert_update_and_delete(database: Database) -> None:
    fox = add_job(database, "a red fox in snow")
    cat = add_job(database, "a black cat", done=False)
    assert indexed(database, "fox") == [fox]
    assert indexed(database, "cat") == [cat]

    with database.session() as session:
        session.execute(update(Job).where(Job.id == fox).values(prompt="a grey wolf in snow"))
    assert indexed(database, "fox") == []
    assert indexed(database, "wolf") == [fox]
    assert indexed(database, "snow") == [fox]

    with database.session() as session:
        delete_job(session, job_id=cat)
    assert indexed(database, "cat") == []
    with database.session() as session:
        integrity = session.execute(text("INSERT INTO job_search(job_search) VALUES ('integrity-check')"))
        assert integrity is not None  # raises if the index and jobs disagree


def test_migration_indexes_jobs_that_existed_before_it(tmp_path: Path) -> None:
    from storage import downgrade_to, upgrade_to_head

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_to_head(url)
    downgrade_to(url, "0002")
    database = Database(url)
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO users (name) VALUES ('old')"))
        connection.execute(
            text(
                "INSERT INTO jobs (kind, owner_id, request_json, prompt) "
                "VALUES ('imagine', 1, '{}', 'an old lighthouse')"
            )
        )
    database.upgrade()
    assert indexed(database, "lighthouse") == [1]
    database.dispose()


# -- search ---------------------------------------------------------------------------------------


def test_search_finds_by_words_and_ranks_the_better_match_first(database: Database) -> None:
    weak = add_job(database, "a fox, a river, mountains, trees, clouds, birds and a long list of things")
    strong = add_job(database, "fox fox fox portrait")
    add_job(database, "a cat on a sofa")
    assert listed(database, search_jobs, guild_id=GUILD, text="fox") == [strong, weak]
    assert listed(database, search_jobs, guild_id=GUILD, text="FOX river") == [weak]
    assert listed(database, search_jobs, guild_id=GUILD, text="dog") == []
    assert listed(database, search_jobs, guild_id=GUILD, text='" OR * (') == []
    assert listed(database, search_jobs, guild_id=GUILD, text='fox" OR "cat') == []


def test_listings_hide_private_unfinished_and_other_guilds(database: Database) -> None:
    public = add_job(database, "a fox", owner=1)
    add_job(database, "a fox, private", owner=1, private=True)
    add_job(database, "a fox, queued", owner=1, done=False)
    add_job(database, "a fox elsewhere", owner=1, guild=OTHER_GUILD)
    assert listed(database, search_jobs, guild_id=GUILD, text="fox") == [public]
    assert listed(database, recent_jobs, guild_id=GUILD) == [public]
    assert listed(database, jobs_by_member, guild_id=GUILD, discord_id=1) == [public]
    assert listed(database, top_jobs, guild_id=GUILD, period="all") == [public]
    assert len(listed(database, search_jobs, guild_id=OTHER_GUILD, text="fox")) == 1
    # The owner's own history has their private and unfinished jobs, in this guild only.
    assert listed(database, member_history, discord_id=1, guild_id=GUILD) == [3, 2, 1]


@pytest.mark.parametrize("listing", [search_jobs, recent_jobs, jobs_by_member, top_jobs])
def test_a_public_listing_without_a_guild_is_refused(database: Database, listing: Callable[..., Any]) -> None:
    add_job(database, "a fox", owner=1)
    arguments = {
        "search_jobs": {"text": "fox"},
        "jobs_by_member": {"discord_id": 1},
        "top_jobs": {"period": "all"},
    }
    with database.session() as session, pytest.raises(ValueError, match="guild_id: None"):
        listing(session, guild_id=None, **arguments.get(listing.__name__, {}))


def test_listing_entries_carry_author_counts_and_thumbnail(database: Database) -> None:
    job = add_job(database, "a fox", owner=7)
    with database.session() as session:
        toggle_like(session, job_id=job, user_id=user_id(database, 8))
        [entry] = recent_jobs(session, guild_id=GUILD)
    assert (entry.owner_name, entry.owner_discord_id, entry.likes, entry.remixes) == ("member-7", 7, 1, 0)
    assert entry.image_path == f"ab/{job}.png"


def test_pages(database: Database) -> None:
    made = [add_job(database, f"fox {i}") for i in range(5)]
    assert listed(database, recent_jobs, guild_id=GUILD, limit=2) == made[::-1][:2]
    assert listed(database, recent_jobs, guild_id=GUILD, limit=2, offset=4) == [made[0]]


# -- likes and top --------------------------------------------------------------------------------


def test_like_toggles_and_counts(database: Database) -> None:
    job = add_job(database, "a fox")
    alice, bob = user_id(database, 11), user_id(database, 12)
    with database.session() as session:
        assert toggle_like(session, job_id=job, user_id=alice) == (True, 1)
        assert toggle_like(session, job_id=job, user_id=bob) == (True, 2)
        assert toggle_like(session, job_id=job, user_id=alice) == (False, 1)
        assert like_count(session, job_id=job) == 1


def test_top_orders_by_likes_plus_remixes_within_the_period(database: Database) -> None:
    liked = add_job(database, "liked twice")
    remixed = add_job(database, "remixed three times")
    plain = add_job(database, "nobody cares")
    old = add_job(database, "old but loved")
    for owner in (21, 22):
        with database.session() as session:
            toggle_like(session, job_id=liked, user_id=user_id(database, owner))
    for _ in range(3):
        add_job(database, "a remix", kind="remix", parent_id=remixed, private=True)
    for owner in (21, 22, 23, 24):
        with database.session() as session:
            toggle_like(session, job_id=old, user_id=user_id(database, owner))
    with database.session() as session:
        session.execute(update(Job).where(Job.id == old).values(created_at=utcnow() - timedelta(days=40)))

    week = listed(database, top_jobs, guild_id=GUILD, period="week")
    assert week[:3] == [remixed, liked, plain]
    assert old not in week
    assert listed(database, top_jobs, guild_id=GUILD, period="all")[:3] == [old, remixed, liked]
    assert old not in listed(database, top_jobs, guild_id=GUILD, period="month")
    with pytest.raises(ValueError, match="period"):
        listed(database, top_jobs, guild_id=GUILD, period="year")


def test_deleting_a_job_removes_its_likes_showcase_post_and_index_entry(database: Database) -> None:
    job = add_job(database, "a fox")
    with database.session() as session:
        toggle_like(session, job_id=job, user_id=user_id(database, 5))
        assert claim_showcase_post(session, job_id=job, channel_id=9)
    with database.session() as session:
        assert delete_job(session, job_id=job) == [f"ab/{job}.png"]
    with database.session() as session:
        assert session.scalars(select(Like)).all() == []
        assert session.scalars(select(ShowcasePost)).all() == []
    assert indexed(database, "fox") == []
    assert listed(database, recent_jobs, guild_id=GUILD) == []


# -- showcase and settings ------------------------------------------------------------------------


def test_showcase_channel_and_one_post_per_job(database: Database) -> None:
    job = add_job(database, "a fox")
    with database.session() as session:
        assert showcase_channel(session, guild_id=GUILD) is None
        set_showcase_channel(session, guild_id=GUILD, channel_id=55)
        set_showcase_channel(session, guild_id=GUILD, channel_id=56)
    with database.session() as session:
        assert showcase_channel(session, guild_id=GUILD) == 56
        assert showcase_channel(session, guild_id=OTHER_GUILD) is None
        assert claim_showcase_post(session, job_id=job, channel_id=56)
        assert not claim_showcase_post(session, job_id=job, channel_id=56)
        release_showcase_post(session, job_id=job)
        assert claim_showcase_post(session, job_id=job, channel_id=56)
        record_showcase_post(session, job_id=job, message_id=77)
    with database.session() as session:
        assert not claim_showcase_post(session, job_id=job, channel_id=56)
        assert session.scalars(select(ShowcasePost.message_id)).one() == 77


def test_private_by_default_per_member(database: Database) -> None:
    alice = user_id(database, 31)
    with database.session() as session:
        assert private_by_default(session, user_id=alice) is False
        set_private_by_default(session, user_id=alice, private=True)
    with database.session() as session:
        assert private_by_default(session, user_id=alice) is True
        set_private_by_default(session, user_id=alice, private=False)
        assert private_by_default(session, user_id=alice) is False
