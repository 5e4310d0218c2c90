"""Reliability of the job interface and the worker, on the tiny model: ids never reused, guild
isolation as one rule, bans and paused queues, poison jobs, the time limit, queue estimates, and
the migration that brings an existing database there."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from pipeline.errors import Banned, JobNotFound, NotPermitted
from pipeline.queue import worker as worker_module
from pipeline.queue.jobs import Destination, Viewer
from pipeline.queue.jobs.overview import seconds_per_image
from pipeline.queue.jobs.runs import MAX_ATTEMPTS, POISON_ERROR
from storage import Database, downgrade_to, start_job, upgrade_to_head
from tests.helpers_services import LOCAL, Recorder, Services, member, run_job, small_request

pytest_plugins = ("tests.fixtures_services", "tests.fixtures_postgres")


@pytest.fixture
def services_database_url(database_url: str) -> str:
    """The job interface on SQLite and on PostgreSQL."""
    return database_url


GUILD_A, GUILD_B = 100, 200


def in_guild(guild_id: int) -> Destination:
    return Destination(channel_id=guild_id + 1, guild_id=guild_id)


def submit_in(services: Services, guild_id: int, discord_id: int, **changes: Any) -> Any:
    return services.jobs.submit(
        small_request(**changes), requester=member(discord_id), destination=in_guild(guild_id)
    )


def finished_in(services: Services, guild_id: int, discord_id: int) -> Any:
    job = submit_in(services, guild_id, discord_id)
    services.runner.run_and_save([job.id])
    return services.jobs.get(job.id)


# -- job ids --------------------------------------------------------------------------------------


def test_a_deleted_newest_job_never_lends_its_id_to_the_next(services: Services) -> None:
    first = services.jobs.submit(small_request(), requester=LOCAL)
    newest = services.jobs.submit(small_request(), requester=LOCAL)
    services.jobs.delete(newest.id)

    after = services.jobs.submit(small_request(), requester=LOCAL)

    assert after.id > newest.id > first.id


def test_the_migration_keeps_rows_and_search_and_stops_id_reuse(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_to_head(url)
    downgrade_to(url, "0003")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute("INSERT INTO users (id, discord_id, name) VALUES (1, 7, 'alice')")
        for job_id, prompt in ((1, "a red fox"), (2, "a blue whale")):
            connection.execute(
                "INSERT INTO jobs (id, kind, owner_id, request_json, prompt, status, priority, attempts, "
                "cancel_requested, private, guild_id) "
                "VALUES (?, 'imagine', 1, '{}', ?, 'done', 0, 1, 0, 0, 5)",
                (job_id, prompt),
            )
        connection.execute(
            'INSERT INTO images (job_id, "index", seed, width, height, sha256, path, size_bytes) '
            "VALUES (2, 0, 1, 64, 64, 'ab', 'ab/x.png', 10)"
        )

    upgrade_to_head(url)

    database = Database(url)
    with database.session() as session:
        assert session.execute(text("SELECT count(*) FROM images WHERE job_id = 2")).scalar() == 1
        found = session.execute(text("SELECT rowid FROM job_search WHERE job_search MATCH 'whale'")).all()
        assert [row[0] for row in found] == [2]
        session.execute(text("DELETE FROM jobs WHERE id = 2"))
        session.execute(
            text(
                "INSERT INTO jobs (kind, owner_id, request_json, prompt, status, priority, attempts, "
                "cancel_requested, private) VALUES ('imagine', 1, '{}', 'a green owl', 'queued', 0, 0, 0, 0)"
            )
        )
        newest = session.execute(text("SELECT max(id) FROM jobs")).scalar()
        owls = session.execute(text("SELECT rowid FROM job_search WHERE job_search MATCH 'owl'")).all()
    database.dispose()
    assert newest == 3, "the deleted job's id 2 is not given again"
    assert [row[0] for row in owls] == [3], "the search index follows new jobs after the migration"


# -- guild isolation ------------------------------------------------------------------------------


def test_a_job_is_visible_only_in_its_guild_and_private_only_to_its_owner(services: Services) -> None:
    public = submit_in(services, GUILD_A, 1)
    private = services.jobs.submit(
        small_request(), requester=member(1), destination=in_guild(GUILD_A), private=True
    )

    assert services.jobs.visible(public.id, Viewer(2, GUILD_A)).id == public.id
    assert services.jobs.visible(private.id, Viewer(1, GUILD_A)).id == private.id
    for job, viewer in (
        (public, Viewer(2, GUILD_B)),
        (private, Viewer(2, GUILD_A)),
        (public, Viewer(1, None)),
    ):
        with pytest.raises(JobNotFound):
            services.jobs.visible(job.id, viewer)
    assert services.jobs.visible(public.id, None).id == public.id, "the command line sees everything"


def test_actions_on_another_guilds_job_do_nothing(services: Services) -> None:
    parent = finished_in(services, GUILD_A, 1)
    stranger = Viewer(2, GUILD_B, moderator=True)

    for action in ("upscale", "variation", "reroll"):
        with pytest.raises(JobNotFound):
            services.jobs.submit_child(
                parent.id, action=action, requester=member(2), destination=in_guild(GUILD_B), viewer=stranger
            )
    with pytest.raises(JobNotFound):
        services.jobs.delete(parent.id, viewer=stranger)
    queued = submit_in(services, GUILD_A, 1)
    with pytest.raises(JobNotFound):
        services.jobs.cancel(queued.id, viewer=stranger)

    assert services.jobs.get(parent.id).status == "done"
    assert services.jobs.get(queued.id).status == "queued"
    assert [job.job_id for job in services.jobs.queued()] == [queued.id], "no child was queued"


def test_cancel_and_delete_need_the_owner_or_a_moderator_of_that_guild(services: Services) -> None:
    job = submit_in(services, GUILD_A, 1)
    with pytest.raises(NotPermitted, match="Only the person who asked"):
        services.jobs.cancel(job.id, viewer=Viewer(2, GUILD_A))
    assert services.jobs.cancel(job.id, viewer=Viewer(3, GUILD_A, moderator=True)).status == "cancelled"
    done = finished_in(services, GUILD_A, 1)
    with pytest.raises(NotPermitted):
        services.jobs.delete(done.id, viewer=Viewer(2, GUILD_A))
    services.jobs.delete(done.id, viewer=Viewer(1, GUILD_A))
    with pytest.raises(JobNotFound):
        services.jobs.get(done.id)


# -- bans and paused queues -----------------------------------------------------------------------


def test_a_banned_member_cannot_queue_in_that_guild_only(services: Services) -> None:
    parent = finished_in(services, GUILD_A, 1)
    assert services.jobs.moderation.ban(guild_id=GUILD_A, discord_id=1, reason="spam", banned_by=9)
    assert not services.jobs.moderation.ban(guild_id=GUILD_A, discord_id=1, reason="again", banned_by=9)

    with pytest.raises(Banned, match="spam"):
        submit_in(services, GUILD_A, 1)
    with pytest.raises(Banned):
        services.jobs.submit_child(
            parent.id, action="reroll", requester=member(1), destination=in_guild(GUILD_A)
        )
    submit_in(services, GUILD_B, 1)  # another guild is not affected

    assert services.jobs.moderation.unban(guild_id=GUILD_A, discord_id=1)
    submit_in(services, GUILD_A, 1)


def test_a_paused_guild_keeps_its_jobs_queued_until_resumed(services: Services) -> None:
    paused = submit_in(services, GUILD_A, 1)
    other = submit_in(services, GUILD_B, 2)
    services.jobs.moderation.pause(guild_id=GUILD_A)

    assert services.worker.run_once()
    assert not services.worker.run_once(), "only the paused guild's job is left, and it waits"
    services.worker.stop()
    assert services.jobs.get(other.id).status == "done"
    assert services.jobs.get(paused.id).status == "queued"
    [entry] = [e for e in services.jobs.overview().entries if e.job_id == paused.id]
    assert entry.paused and entry.eta_s is None

    services.jobs.moderation.resume(guild_id=GUILD_A)
    assert services.worker.run_once()
    services.worker.stop()
    assert services.jobs.get(paused.id).status == "done"


# -- crashes and time limits ----------------------------------------------------------------------


def test_a_job_that_stopped_the_worker_twice_is_failed_not_retried(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=member(1))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with services.database.session() as session:
            start_job(session, job_id=job.id)  # the worker took it ... and the process died
        requeued = services.worker.recover()
        if attempt < MAX_ATTEMPTS:
            assert requeued == [job.id]
    assert requeued == []
    failed = services.jobs.get(job.id)
    assert (failed.status, failed.error) == ("failed", POISON_ERROR)


def test_a_job_over_the_time_limit_is_stopped_and_failed(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "CANCEL_POLL_S", 0.0)
    services.runner.time_limit_s = 0.05

    class SlowSteps(Recorder):
        def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
            super().progress(job_id, step, total, elapsed_s)
            time.sleep(0.1)

    events = SlowSteps()
    job = services.jobs.submit(small_request(steps=6), requester=member(1))
    services.runner.run_and_save([job.id], events=events)

    failed = services.jobs.get(job.id)
    assert failed.status == "failed" and failed.error is not None
    assert "longer than this server's limit of 0.05 s" in failed.error
    assert len(events.steps_of(job.id)) < 6, "it stopped before the end"
    assert events.finished_ids == [job.id]


# -- the queue as people see it -------------------------------------------------------------------


def test_seconds_per_image_counts_a_shared_batch_once() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    batch = [(at(0), at(8), 2), (at(0.01), at(8), 2)]  # one 8 s call made 4 images
    alone = [(at(20), at(22), 1)]  # then 2 s for one image, after an idle gap
    assert seconds_per_image(batch) == pytest.approx(8 / 4, rel=0.01)
    assert seconds_per_image([*batch, *alone]) == pytest.approx(10 / 5, rel=0.01)
    assert seconds_per_image([]) is None


def test_the_overview_lists_running_then_queued_jobs_with_estimates(services: Services) -> None:
    run_job(services, small_request(count=2))  # a measured throughput
    running = services.jobs.submit(small_request(), requester=member(1))
    with services.database.session() as session:
        start_job(session, job_id=running.id)
    first = services.jobs.submit(small_request(count=3), requester=member(2))
    second = services.jobs.submit(small_request(), requester=member(1))

    overview = services.jobs.overview()

    assert overview.seconds_per_image is not None and overview.seconds_per_image > 0
    assert [(e.job_id, e.status, e.position) for e in overview.entries] == [
        (running.id, "running", None),
        (first.id, "queued", 1),
        (second.id, "queued", 2),
    ]
    etas = [entry.eta_s for entry in overview.entries]
    assert all(eta is not None for eta in etas)
    assert etas == sorted(etas)
    assert etas[2] == pytest.approx(5 * overview.seconds_per_image)  # 1 running + 3 + its own 1
