"""Community storage: the prompt index (SQLite: FTS5 kept in sync by triggers; PostgreSQL: a GIN
index), search ranking, visibility (guild and private), likes, top by period, the showcase claim
and per-member settings, on both backends (``tests.fixtures_postgres``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

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

pytest_plugins = ("tests.fixtures_postgres",)

GUILD = 100
OTHER_GUILD = 200
INDEX_QUERIES = {
    "sqlite": "SELECT rowid FROM job_search WHERE job_search MATCH :q ORDER BY rowid",
    "postgresql": (
        "SELECT id FROM jobs WHERE to_tsvector('simple', prompt) @@ plainto_tsquery('simple', :q) ORDER BY id"
    ),
}
"""What the prompt index returns for some words: the FTS5 table's rows, or the jobs PostgreSQL's
GIN index on ``to_tsvector('simple', prompt)`` finds (migration 0003)."""


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
    """What the prompt index itself returns for ``words`` (no filters)."""
    with database.session() as session:
        rows = session.execute(text(INDEX_QUERIES[database.engine.dialect.name]), {"q": words})
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
    if database.engine.dialect.name == "sqlite":
        with database.session() as session:
            integrity = session.execute(text("INSERT INTO job_search(job_search) VALUES ('integrity-check')"))
            assert integrity is not None  # raises if the index and jobs disagree


def test_migration_indexes_jobs_that_existed_before_it(database_url: str) -> None:
    from storage import downgrade_to, upgrade_to_head

    url = database_url
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


def test_search_in_chinese_and_other_scripts(database: Database) -> None:
    """Both backends split words at spaces and punctuation, the full-width kind of Chinese prompts
    too, and fold case beyond ASCII; a run of Chinese characters is one word (neither finds 狐狸
    inside 红狐狸)."""
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            ctype = connection.execute(
                text("SELECT datctype FROM pg_database WHERE datname = current_database()")
            )
            if ctype.scalar() in ("C", "POSIX"):
                pytest.skip(
                    "the PostgreSQL database's LC_CTYPE is C: its text search takes every non-ASCII "
                    "character for a letter"
                )
    painting = add_job(database, "雪中的红狐狸，油画")
    fox = add_job(database, "狐狸 在雪中")
    cat = add_job(database, "Кошка на диване、水彩")
    assert listed(database, search_jobs, guild_id=GUILD, text="油画") == [painting]
    assert listed(database, search_jobs, guild_id=GUILD, text="雪中的红狐狸 油画") == [painting]
    assert listed(database, search_jobs, guild_id=GUILD, text="狐狸") == [fox]
    assert listed(database, search_jobs, guild_id=GUILD, text="红狐狸") == []
    assert listed(database, search_jobs, guild_id=GUILD, text="水彩 КОШКА") == [cat]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_search_uses_the_prompt_index_in_a_generic_plan(database: Database) -> None:
    """A prepared search may get a plan made for any words (psycopg prepares a query after five
    runs): that plan too must find the jobs through the GIN index, not by reading every job."""
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO users (name) VALUES ('many')"))
        connection.execute(
            text(
                "INSERT INTO jobs (kind, owner_id, request_json, prompt, status, guild_id) "
                "SELECT 'imagine', 1, '{}', 'a cat number ' || n, 'done', :guild "
                "FROM generate_series(1, 3000) AS n"
            ),
            {"guild": GUILD},
        )
        connection.execute(text("ANALYZE jobs"))
    plans: list[str] = []
    with database.engine.connect() as connection:
        connection.connection.driver_connection.add_notice_handler(  # type: ignore[union-attr]
            lambda diagnostic: plans.append(diagnostic.message_primary or "")
        )
        try:
            connection.exec_driver_sql("LOAD 'auto_explain'")
        except DBAPIError:
            pytest.skip("auto_explain cannot be loaded on this PostgreSQL server (it needs a superuser)")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_level = notice",
            "plan_cache_mode = force_generic_plan",
        ):
            connection.exec_driver_sql(f"SET {setting}")
        with Session(bind=connection) as session:
            assert len(search_jobs(session, guild_id=GUILD, text="cat 1234")) == 1
        connection.exec_driver_sql("SELECT 1")  # the search's plan comes with the next reply
    [plan] = [plan for plan in plans if "plainto_tsquery" in plan]
    assert "Bitmap Index Scan on job_search_prompt" in plan, plan


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
