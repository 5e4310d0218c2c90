"""Users, the job life cycle, images, deliveries and datetimes in the database, on SQLite and on
PostgreSQL (``tests.fixtures_postgres``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from storage import (
    JOB_STATUSES,
    TRANSITIONS,
    Database,
    Delivery,
    DeliveryNotFound,
    Image,
    InvalidTransition,
    Job,
    JobNotFound,
    NewImage,
    User,
    cancel_job,
    children_of,
    count_unfinished_jobs,
    create_delivery,
    create_job,
    delete_job,
    fail_job,
    finish_job,
    get_delivery_for_job,
    get_job,
    get_or_create_user,
    is_cancel_requested,
    mark_cancelled,
    mark_delivered,
    pending_deliveries,
    queued_jobs,
    record_delivery_failure,
    record_progress_message,
    requeue_interrupted_jobs,
    start_job,
)
from storage.transitions import move

if TYPE_CHECKING:
    from tests.fixtures_postgres import PostgresServer

pytest_plugins = ("tests.fixtures_postgres",)

UTC = timezone.utc


def new_job(
    database: Database, *, kind: str = "imagine", priority: int = 0, user: str = "alice", **kw: object
) -> int:
    with database.session() as session:
        owner = get_or_create_user(session, discord_id=None, name=user)
        job = create_job(
            session,
            kind=kind,
            owner=owner,
            request_json='{"prompt": "a cat"}',
            prompt="a cat",
            priority=priority,
            **kw,  # type: ignore[arg-type]
        )
        return job.id


def image(index: int, *, sha: str | None = None) -> NewImage:
    digest = sha or f"{index:02x}" * 32
    return NewImage(
        index=index,
        seed=1000 + index,
        width=64,
        height=64,
        sha256=digest,
        path=f"{digest[:2]}/{digest[2:4]}/{digest}.png",
        size_bytes=123,
    )


def run(database: Database, action: Callable[..., object], **kw: object) -> object:
    with database.session() as session:
        return action(session, **kw)


def status_of(database: Database, job_id: int) -> str:
    with database.session() as session:
        return get_job(session, job_id=job_id).status


def force_status(database: Database, job_id: int, status: str) -> None:
    with database.session() as session:
        session.get_one(Job, job_id).status = status


def finish(database: Database, job_id: int, images: list[NewImage] | None = None) -> None:
    run(
        database,
        finish_job,
        job_id=job_id,
        images=images if images is not None else [image(0)],
        model_name="tiny",
        model_hash="0123456789",
        environment_json='{"torch": "2"}',
    )


# -- the engine -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_pragmas(database: Database) -> None:
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 15_000


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_pooled_connection_the_server_ended_is_replaced(
    database: Database, postgres_server: PostgresServer
) -> None:
    """A restart of the PostgreSQL server (here: it ends the connections) must not fail the next
    unit of work on a connection the pool kept."""
    with database.session() as session:
        get_or_create_user(session, discord_id=1, name="before")
    postgres_server.end_connections(str(database.url.database))
    with database.session() as session:
        assert get_or_create_user(session, discord_id=1, name="after").id == 1


def test_session_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        get_or_create_user(session, discord_id=1, name="bob")
        raise RuntimeError
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


def test_nested_savepoint_rolls_back_alone(database: Database) -> None:
    with database.session() as session:
        get_or_create_user(session, discord_id=1, name="kept")
        with pytest.raises(IntegrityError), session.begin_nested():
            session.add(User(discord_id=1, name="duplicate", created_at=datetime.now(UTC)))
    with database.session() as session:
        assert [u.name for u in session.scalars(select(User))] == ["kept"]


# -- users ----------------------------------------------------------------------------------------


def test_discord_users_are_found_by_id_and_renamed(database: Database) -> None:
    with database.session() as session:
        first = get_or_create_user(session, discord_id=42, name="old name")
    with database.session() as session:
        again = get_or_create_user(session, discord_id=42, name="new name")
        assert again.id == first.id
        assert again.name == "new name"
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_local_users_are_found_by_name(database: Database) -> None:
    with database.session() as session:
        alice = get_or_create_user(session, discord_id=None, name="alice")
        assert get_or_create_user(session, discord_id=None, name="alice").id == alice.id
        bob = get_or_create_user(session, discord_id=None, name="bob")
        member = get_or_create_user(session, discord_id=7, name="alice")
        assert len({alice.id, bob.id, member.id}) == 3
        assert alice.discord_id is None


# -- the job life cycle ---------------------------------------------------------------------------


def test_create_job(database: Database) -> None:
    job_id = new_job(database, guild_id=1, channel_id=2)
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert (job.kind, job.status, job.attempts, job.priority) == ("imagine", "queued", 0, 0)
        assert job.cancel_requested is False
        assert job.owner.name == "alice"
        assert (job.guild_id, job.channel_id) == (1, 2)
        assert job.created_at.tzinfo == UTC
        assert job.started_at is None and job.finished_at is None
        assert job.images == []


def test_create_job_refuses_an_unknown_kind(database: Database) -> None:
    with pytest.raises(ValueError, match="kind"):
        new_job(database, kind="outpaint")


def test_database_checks_kind_and_status(database: Database) -> None:
    job_id = new_job(database)
    for column, value in (("kind", "outpaint"), ("status", "paused")):
        with pytest.raises(IntegrityError, match="ck_jobs"), database.engine.begin() as connection:
            connection.execute(
                text(f"UPDATE jobs SET {column} = :value WHERE id = :id"), {"value": value, "id": job_id}
            )


def test_happy_path(database: Database) -> None:
    job_id = new_job(database)
    with database.session() as session:
        job = start_job(session, job_id=job_id)
        assert job is not None
        assert job.status == "running" and job.attempts == 1 and job.started_at is not None
    finish(database, job_id, [image(1), image(0)])
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert job.status == "done"
        assert job.finished_at is not None and job.finished_at >= job.started_at  # type: ignore[operator]
        assert (job.model_name, job.model_hash, job.environment_json) == (
            "tiny",
            "0123456789",
            '{"torch": "2"}',
        )
        assert [(i.index, i.seed) for i in job.images] == [(0, 1000), (1, 1001)]
        assert job.images[0].path.endswith(".png") and job.images[0].created_at.tzinfo == UTC


def test_failure(database: Database) -> None:
    job_id = new_job(database)
    run(database, start_job, job_id=job_id)
    run(database, fail_job, job_id=job_id, error="out of memory")
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert (job.status, job.error) == ("failed", "out of memory")
        assert job.finished_at is not None


def test_a_queued_job_may_fail_before_it_starts(database: Database) -> None:
    job_id = new_job(database)
    run(database, fail_job, job_id=job_id, error="no such model")
    assert status_of(database, job_id) == "failed"


def test_cancel_a_queued_job_at_once(database: Database) -> None:
    job_id = new_job(database)
    run(database, cancel_job, job_id=job_id)
    assert status_of(database, job_id) == "cancelled"
    assert run(database, is_cancel_requested, job_id=job_id) is True
    assert run(database, start_job, job_id=job_id) is None  # the worker skips it


def test_cancel_a_running_job_asks_the_worker(database: Database) -> None:
    job_id = new_job(database)
    run(database, start_job, job_id=job_id)
    assert run(database, is_cancel_requested, job_id=job_id) is False
    run(database, cancel_job, job_id=job_id)
    run(database, cancel_job, job_id=job_id)  # asking twice is harmless
    assert status_of(database, job_id) == "running"
    assert run(database, is_cancel_requested, job_id=job_id) is True
    run(database, mark_cancelled, job_id=job_id)
    with database.session() as session:
        job = get_job(session, job_id=job_id)
        assert job.status == "cancelled" and job.finished_at is not None


@pytest.mark.parametrize("status", ["done", "failed", "cancelled"])
def test_cancel_a_finished_job(database: Database, status: str) -> None:
    job_id = new_job(database)
    force_status(database, job_id, status)
    with pytest.raises(InvalidTransition) as caught:
        run(database, cancel_job, job_id=job_id)
    assert (caught.value.job_id, caught.value.from_status, caught.value.to_status) == (
        job_id,
        status,
        "cancelled",
    )


def test_start_job_of_a_deleted_job_is_none(database: Database) -> None:
    job_id = new_job(database)
    run(database, delete_job, job_id=job_id)
    assert run(database, start_job, job_id=job_id) is None


ACTIONS: dict[str, Callable[[Database, int], object]] = {
    "running": lambda db, job_id: run(db, start_job, job_id=job_id),
    "done": lambda db, job_id: finish(db, job_id),
    "failed": lambda db, job_id: run(db, fail_job, job_id=job_id, error="x"),
    "cancelled": lambda db, job_id: run(db, mark_cancelled, job_id=job_id),
}
ILLEGAL = [
    (old, new)
    for old in JOB_STATUSES
    for new in ACTIONS
    if new not in TRANSITIONS[old]
    and (old, new) != ("cancelled", "running")  # that one is skipped, not refused
]


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_illegal_transitions_are_refused(database: Database, old: str, new: str) -> None:
    job_id = new_job(database)
    force_status(database, job_id, old)
    with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
        ACTIONS[new](database, job_id)
    assert status_of(database, job_id) == old
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 0


def test_transition_table() -> None:
    assert set(TRANSITIONS) == set(JOB_STATUSES)
    for old in JOB_STATUSES:
        for new in JOB_STATUSES:
            job = Job(id=1, status=old, attempts=0)
            if new in TRANSITIONS[old]:
                move(job, new)
                assert job.status == new
            else:
                with pytest.raises(InvalidTransition):
                    move(job, new)
                assert job.status == old
    assert all(not TRANSITIONS[status] for status in ("done", "failed", "cancelled"))


@pytest.mark.parametrize(
    ("action", "extra"),
    [
        (get_job, {}),
        (cancel_job, {}),
        (mark_cancelled, {}),
        (is_cancel_requested, {}),
        (delete_job, {}),
        (fail_job, {"error": "x"}),
    ],
)
def test_missing_job(database: Database, action: Callable[..., object], extra: dict[str, object]) -> None:
    with pytest.raises(JobNotFound, match="Job 99 no longer exists"):
        run(database, action, job_id=99, **extra)


def test_two_workers_cannot_start_the_same_job(database: Database) -> None:
    job_id = new_job(database)
    started = threading.Event()
    outcome: list[object] = []

    def first() -> None:
        with database.session() as session:
            start_job(session, job_id=job_id)
            session.flush()
            started.set()
            threading.Event().wait(0.3)  # hold the transaction open

    def second() -> None:
        started.wait(5)
        try:
            with database.session() as session:
                outcome.append(start_job(session, job_id=job_id))
        except InvalidTransition as error:
            outcome.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], InvalidTransition)
    with database.session() as session:
        assert get_job(session, job_id=job_id).attempts == 1


# -- the queue ------------------------------------------------------------------------------------


def test_queued_jobs_by_priority_then_age(database: Database) -> None:
    low = new_job(database)
    high = new_job(database, priority=5)
    low_later = new_job(database)
    running = new_job(database, priority=9)
    run(database, start_job, job_id=running)
    with database.session() as session:
        assert [j.id for j in queued_jobs(session)] == [high, low, low_later]
        assert [j.id for j in queued_jobs(session, limit=2)] == [high, low]


def test_count_unfinished_jobs(database: Database) -> None:
    queued, running, done = new_job(database), new_job(database), new_job(database)
    new_job(database, user="bob")
    run(database, start_job, job_id=running)
    run(database, start_job, job_id=done)
    finish(database, done)
    with database.session() as session:
        owner = get_job(session, job_id=queued).owner_id
        assert count_unfinished_jobs(session, owner_id=owner) == 2


def test_requeue_interrupted_jobs(database: Database) -> None:
    interrupted, being_cancelled, waiting = new_job(database), new_job(database), new_job(database)
    run(database, start_job, job_id=interrupted)
    run(database, start_job, job_id=being_cancelled)
    run(database, cancel_job, job_id=being_cancelled)
    with database.session() as session:
        assert requeue_interrupted_jobs(session) == [interrupted]
    with database.session() as session:
        job = get_job(session, job_id=interrupted)
        assert (job.status, job.attempts, job.started_at) == ("queued", 1, None)
        assert get_job(session, job_id=being_cancelled).status == "cancelled"
        assert get_job(session, job_id=waiting).status == "queued"
        assert requeue_interrupted_jobs(session) == []
    with database.session() as session:
        assert start_job(session, job_id=interrupted).attempts == 2  # type: ignore[union-attr]


# -- parents, children, deleting -----------------------------------------------------------------


def test_children_and_parent(database: Database) -> None:
    parent = new_job(database)
    upscale = new_job(database, kind="upscale", parent_id=parent, parent_image_index=1)
    reroll = new_job(database, kind="reroll", parent_id=parent)
    with database.session() as session:
        assert [j.id for j in children_of(session, job_id=parent)] == [upscale, reroll]
        child = get_job(session, job_id=upscale)
        assert child.parent is not None and child.parent.id == parent
        assert child.parent_image_index == 1
        assert [j.id for j in get_job(session, job_id=parent).children] == [upscale, reroll]


def test_delete_job_cascades_and_returns_orphaned_files(database: Database) -> None:
    shared = "ab" * 32
    parent, child, other = new_job(database), new_job(database), new_job(database)
    with database.session() as session:
        session.get_one(Job, child).parent_id = parent
        create_delivery(session, job_id=parent, channel_id=5)
    for job_id, images in ((parent, [image(0), image(1, sha=shared)]), (other, [image(0, sha=shared)])):
        run(database, start_job, job_id=job_id)
        finish(database, job_id, images)
    with database.session() as session:
        orphaned = delete_job(session, job_id=parent)
    assert orphaned == [image(0).path]  # the shared file is still used by the other job
    with database.session() as session:
        assert session.get(Job, parent) is None
        assert session.scalar(select(func.count()).select_from(Image).where(Image.job_id == parent)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert get_job(session, job_id=child).parent_id is None
        assert len(get_job(session, job_id=other).images) == 1
    with pytest.raises(JobNotFound):
        run(database, delete_job, job_id=parent)


def test_database_cascades_image_rows(database: Database) -> None:
    job_id = new_job(database)
    run(database, start_job, job_id=job_id)
    finish(database, job_id, [image(0), image(1)])
    with database.session() as session:
        session.execute(delete(Job).where(Job.id == job_id))
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 0


def test_a_running_job_cannot_be_deleted(database: Database) -> None:
    job_id = new_job(database)
    run(database, start_job, job_id=job_id)
    with pytest.raises(InvalidTransition):
        run(database, delete_job, job_id=job_id)


def test_image_index_is_unique_per_job(database: Database) -> None:
    job_id = new_job(database)
    run(database, start_job, job_id=job_id)
    with pytest.raises(IntegrityError):
        finish(database, job_id, [image(0), image(0, sha="cd" * 32)])
    assert status_of(database, job_id) == "running"  # rolled back as a whole


# -- deliveries -----------------------------------------------------------------------------------


def delivered_job(database: Database, *, finished: bool = True) -> int:
    job_id = new_job(database)
    with database.session() as session:
        create_delivery(
            session,
            job_id=job_id,
            channel_id=10,
            guild_id=20,
            application_id=30,
            interaction_token="tok",
            token_expires_at=datetime.now(UTC) + timedelta(minutes=15),
        )
    if finished:
        run(database, start_job, job_id=job_id)
        finish(database, job_id)
    return job_id


def pending_ids(database: Database, now: datetime | None = None) -> list[int]:
    with database.session() as session:
        return [d.job_id for d in pending_deliveries(session, now=now or datetime.now(UTC))]


def test_delivery_rows(database: Database) -> None:
    job_id = delivered_job(database, finished=False)
    with database.session() as session:
        record_progress_message(session, job_id=job_id, message_id=111)
    with database.session() as session:
        delivery = get_delivery_for_job(session, job_id=job_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.progress_message_id) == ("pending", 0, 111)
        assert (delivery.channel_id, delivery.guild_id, delivery.application_id) == (10, 20, 30)
        assert get_job(session, job_id=job_id).delivery is not None
        assert get_delivery_for_job(session, job_id=999) is None
    with pytest.raises(IntegrityError), database.session() as session:
        create_delivery(session, job_id=job_id, channel_id=11)  # one delivery per job


def test_only_finished_jobs_are_pending(database: Database) -> None:
    unfinished = delivered_job(database, finished=False)
    done = delivered_job(database)
    failed = delivered_job(database, finished=False)
    run(database, fail_job, job_id=failed, error="x")
    cancelled = delivered_job(database, finished=False)
    run(database, cancel_job, job_id=cancelled)
    assert unfinished not in pending_ids(database)
    assert pending_ids(database) == [done, failed, cancelled]


def test_delivered_is_no_longer_pending(database: Database) -> None:
    job_id = delivered_job(database)
    with database.session() as session:
        mark_delivered(session, job_id=job_id, message_id=222)
    with database.session() as session:
        delivery = get_delivery_for_job(session, job_id=job_id)
        assert delivery is not None
        assert (delivery.status, delivery.result_message_id) == ("delivered", 222)
        assert delivery.delivered_at is not None and delivery.delivered_at.tzinfo == UTC
    assert pending_ids(database) == []


def test_failed_delivery_is_retried_when_due_then_given_up(database: Database) -> None:
    job_id = delivered_job(database)
    now = datetime.now(UTC)
    with database.session() as session:
        record_delivery_failure(session, job_id=job_id, error="503", retry_at=now + timedelta(seconds=60))
    assert pending_ids(database, now) == []
    assert pending_ids(database, now + timedelta(seconds=61)) == [job_id]
    with database.session() as session:
        delivery = record_delivery_failure(session, job_id=job_id, error="403", retry_at=None)
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 2, "403")
    assert pending_ids(database, now + timedelta(days=1)) == []


def test_missing_delivery(database: Database) -> None:
    job_id = new_job(database)
    with pytest.raises(DeliveryNotFound):
        run(database, mark_delivered, job_id=job_id, message_id=1)


# -- datetimes ------------------------------------------------------------------------------------


def test_datetimes_round_trip_as_aware_utc(database: Database) -> None:
    job_id = delivered_job(database, finished=False)
    paris = timezone(timedelta(hours=2))
    moment = datetime(2030, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    with database.session() as session:
        get_delivery_for_job(session, job_id=job_id).token_expires_at = moment  # type: ignore[union-attr]
    with database.session() as session:
        stored = get_delivery_for_job(session, job_id=job_id).token_expires_at  # type: ignore[union-attr]
        assert stored == moment
        assert stored is not None and stored.tzinfo == UTC and stored.hour == 12
        raw = session.execute(text("SELECT token_expires_at FROM deliveries")).scalar()
        if database.engine.dialect.name == "sqlite":
            assert raw == "2030-06-01 12:30:15.123456"  # stored naive, in UTC
        else:
            assert raw == moment and raw.utcoffset() is not None  # timestamptz: the instant itself


def test_naive_datetimes_are_refused(database: Database) -> None:
    job_id = delivered_job(database, finished=False)
    with pytest.raises(StatementError, match="naive datetime"), database.session() as session:
        get_delivery_for_job(session, job_id=job_id).token_expires_at = datetime(2030, 1, 1)  # type: ignore[union-attr]
        session.flush()


def test_server_default_timestamps_read_back_as_utc(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO users (name) VALUES ('raw')"))
    with database.session() as session:
        user = session.scalars(select(User)).one()
        assert user.created_at.tzinfo == UTC
        assert abs(user.created_at - datetime.now(UTC)) < timedelta(minutes=1)
