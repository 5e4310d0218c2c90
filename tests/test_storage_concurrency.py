"""Threads racing on the same rows, on SQLite and on PostgreSQL: jobs through the job interface,
settings, bans and likes.

SQLite serialises writers (every transaction begins ``IMMEDIATE``); PostgreSQL lets them run
side by side and relies on the row lock (``SELECT ... FOR UPDATE``) that every status change of
``storage.jobs`` takes: each job starts once, a finish and a cancel never both win, and a change
that waited for the lock acts on the row as the other transaction left it, not as it read it. Two
transactions adding the same settings row, ban or like, or taking the same like back, both
succeed: the second, which waited for the first, finds its row.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline.domain.request import GenerationRequest
from pipeline.errors import JobBusy, NotCancellable
from pipeline.queue.jobs import ImageFile, JobService, JobStore, Requester
from pipeline.queue.scheduler import FairScheduler
from storage import (
    Database,
    ImageStore,
    ban_member,
    ban_reason,
    finish_job,
    get_job,
    get_or_create_user,
    like_count,
    member_limit,
    member_settings,
    paused_guilds,
    set_member_limit,
    set_member_settings,
    set_paused,
    set_showcase_channel,
    showcase_channel,
    start_job,
    toggle_like,
)

pytest_plugins = ("tests.fixtures_postgres",)

THREADS = 6
JOBS = 12
JOIN_TIMEOUT_S = 60.0
LOCAL = Requester(name="local")
GUILD = 100
WAITING_FOR_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
def service(database: Database, tmp_path: Path) -> Iterator[JobService]:
    store = JobStore(database, ImageStore(tmp_path / "images"))
    yield JobService(
        store=store, scheduler=FairScheduler(max_images=16), max_pixels=512 * 512, max_queued_per_user=99
    )


def submit(service: JobService, count: int) -> list[int]:
    request = GenerationRequest(prompt="a red fox", width=64, height=64, steps=2, seed=1)
    return [service.submit(request, requester=LOCAL).id for _ in range(count)]


def race(*actions: Callable[[], object]) -> list[object]:
    """Run the actions in threads of their own, released together; each one's result or error."""
    barrier = threading.Barrier(len(actions))
    outcomes: list[object] = [None] * len(actions)

    def act(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = actions[index]()
        except Exception as error:  # the outcome to check
            outcomes[index] = error

    threads = [threading.Thread(target=act, args=(index,), daemon=True) for index in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (a deadlock?)"
    return outcomes


def run(database: Database, action: Callable[..., Any], **options: Any) -> Any:
    """``action`` in a unit of work of its own."""
    with database.session() as session:
        return action(session, **options)


def image() -> ImageFile:
    return ImageFile(index=0, seed=1, width=64, height=64, data=b"\x89PNG not really")


def wait_until_waiting_for_a_lock(database: Database) -> None:
    """Until another transaction waits for a row lock (PostgreSQL), or a moment (SQLite, where
    the waiting transaction has not read anything yet)."""
    if database.engine.dialect.name != "postgresql":
        time.sleep(0.2)
        return
    deadline = time.monotonic() + 10
    with database.engine.connect() as connection:
        while time.monotonic() < deadline:
            if connection.execute(WAITING_FOR_A_LOCK).scalar():
                return
            connection.rollback()
            time.sleep(0.01)
    raise AssertionError("no transaction waited for the lock")


def test_threads_starting_the_same_jobs_start_each_once(service: JobService, database: Database) -> None:
    job_ids = submit(service, JOBS)

    def worker() -> list[int]:
        order = random.sample(job_ids, len(job_ids))
        return [job_id for job_id in order if service.runs.start(job_id) is not None]

    outcomes = race(*[worker] * THREADS)

    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    started = Counter(job_id for outcome in outcomes for job_id in outcome)  # type: ignore[attr-defined]
    assert started == Counter(job_ids), "every job started, and none twice"
    with database.session() as session:
        jobs = [get_job(session, job_id=job_id) for job_id in job_ids]
        assert {(job.status, job.attempts) for job in jobs} == {("running", 1)}


def test_finish_and_cancel_of_the_same_job_never_both_win(service: JobService, database: Database) -> None:
    job_ids = submit(service, JOBS)
    for job_id in job_ids:
        service.runs.start(job_id)

    for job_id in job_ids:
        finished, cancelled = race(
            lambda job_id=job_id: service.runs.finish(
                job_id, images=[image()], model_name="tiny", model_hash=None, environment_json=None
            ),
            lambda job_id=job_id: service.runs.cancelled(job_id),
        )
        winners = [outcome for outcome in (finished, cancelled) if not isinstance(outcome, Exception)]
        assert len(winners) == 1, (finished, cancelled)
        assert all(isinstance(o, JobBusy) for o in (finished, cancelled) if isinstance(o, Exception))
        job = service.get(job_id)
        if isinstance(cancelled, Exception):
            assert (job.status, len(job.images)) == ("done", 1)
        else:
            assert (job.status, job.images) == ("cancelled", ())


def while_locked(
    database: Database, change: Callable[[Session], object], contender: Callable[[], object]
) -> object:
    """Make ``change`` in a transaction that holds its locks until ``contender`` (another thread)
    waits for one of them, then commit; the contender's result or error."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with database.session() as session:
            change(session)
            session.flush()
            locked.set()
            release.wait(JOIN_TIMEOUT_S)

    outcome: list[object] = []

    def contend() -> None:
        try:
            outcome.append(contender())
        except Exception as error:  # the outcome to check
            outcome.append(error)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10)
    waiting = threading.Thread(target=contend, daemon=True)
    waiting.start()
    wait_until_waiting_for_a_lock(database)
    release.set()
    for thread in (holder, waiting):
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "a thread is stuck (a deadlock?)"
    [result] = outcome
    return result


def starting(job_id: int) -> Callable[[Session], object]:
    return lambda session: start_job(session, job_id=job_id)


def test_a_cancel_waiting_for_a_start_asks_to_stop(service: JobService, database: Database) -> None:
    """The cancel read the job queued, then waited for the worker's lock: it must not mark
    cancelled the job the worker has just started (it would run anyway), but ask it to stop."""
    [job_id] = submit(service, 1)

    outcome = while_locked(database, starting(job_id), lambda: service.cancel(job_id))

    assert getattr(outcome, "status", outcome) == "running"
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert (job.status, job.cancel_requested, job.attempts) == ("running", True, 1)


def test_a_cancel_waiting_for_a_finish_is_refused(service: JobService, database: Database) -> None:
    [job_id] = submit(service, 1)
    service.runs.start(job_id)

    def finishing(session: Session) -> None:
        finish_job(session, job_id=job_id, images=[], model_name="m", model_hash=None, environment_json=None)

    outcome = while_locked(database, finishing, lambda: service.cancel(job_id))

    assert isinstance(outcome, NotCancellable) and outcome.key == "not_cancellable.done", outcome
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert (job.status, job.cancel_requested) == ("done", False)


def test_a_delete_waiting_for_a_start_is_refused(service: JobService, database: Database) -> None:
    [job_id] = submit(service, 1)

    outcome = while_locked(database, starting(job_id), lambda: service.delete(job_id))

    assert isinstance(outcome, JobBusy)
    assert service.get(job_id).status == "running"


# -- settings and likes ---------------------------------------------------------------------------


def test_two_admins_setting_up_a_new_guild_at_once(database: Database) -> None:
    """Both add the guild's settings row; the second, which waited for the first, uses its row."""
    outcome = while_locked(
        database,
        lambda session: set_paused(session, guild_id=GUILD, paused=True),
        lambda: run(database, set_showcase_channel, guild_id=GUILD, channel_id=55),
    )

    assert not isinstance(outcome, Exception), outcome
    with database.session() as session:
        assert (showcase_channel(session, guild_id=GUILD), paused_guilds(session)) == (55, {GUILD})


def test_two_changes_to_a_new_members_settings_at_once(database: Database) -> None:
    user_id = run(database, lambda session: get_or_create_user(session, discord_id=1, name="m").id)

    outcome = while_locked(
        database,
        lambda session: set_member_settings(session, user_id=user_id, remix=True),
        lambda: run(database, set_member_settings, user_id=user_id, previews=False),
    )

    assert not isinstance(outcome, Exception), outcome
    with database.session() as session:
        settings = member_settings(session, user_id=user_id)
        assert (settings.remix, settings.previews) == (True, False)


def test_a_ban_and_a_member_limit_given_twice_at_once(database: Database) -> None:
    banned = while_locked(
        database,
        lambda session: ban_member(session, guild_id=GUILD, discord_id=1, reason="spam", banned_by=9),
        lambda: run(database, ban_member, guild_id=GUILD, discord_id=1, reason="again", banned_by=8),
    )
    limited = while_locked(
        database,
        lambda session: set_member_limit(session, guild_id=GUILD, discord_id=1, daily_limit=3, set_by=9),
        lambda: run(database, set_member_limit, guild_id=GUILD, discord_id=1, daily_limit=5, set_by=8),
    )

    assert (banned, limited) == (False, None), "the second ban finds the first; the second limit wins"
    with database.session() as session:
        assert ban_reason(session, guild_id=GUILD, discord_id=1) == "spam"
        assert member_limit(session, guild_id=GUILD, discord_id=1) == 5


@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")
def test_a_double_click_taking_a_like_back(service: JobService, database: Database) -> None:
    """The second click waited for the first (SQLite: before it read, so it likes the job again;
    PostgreSQL: after, so it finds the like gone): either way no error (nor SQLAlchemy's warning
    that a DELETE matched no row), and the count agrees."""
    [job_id] = submit(service, 1)
    user_id = run(database, lambda session: get_or_create_user(session, discord_id=1, name="m").id)
    run(database, toggle_like, job_id=job_id, user_id=user_id)

    outcome = while_locked(
        database,
        lambda session: toggle_like(session, job_id=job_id, user_id=user_id),
        lambda: run(database, toggle_like, job_id=job_id, user_id=user_id),
    )

    assert outcome in ((False, 0), (True, 1)), outcome
    assert run(database, like_count, job_id=job_id) == outcome[1]  # type: ignore[index]
