"""The job service: submitting, child jobs, queue limits, positions, cancelling and deleting."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.errors import InvalidRequest, JobBusy, JobNotFound, NotCancellable, PipelineError, QueueFull
from storage import get_job, is_cancel_requested, start_job
from tests.helpers_services import LOCAL, Services, job_count, member, run_job, small_request

pytest_plugins = ("tests.fixtures_services", "tests.fixtures_postgres")


@pytest.fixture
def services_database_url(database_url: str) -> str:
    """The job interface on SQLite and on PostgreSQL."""
    return database_url


# -- submitting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"width": 65}, "width"),
        ({"steps": 999}, "steps"),
        ({"cfg_scale": 0.5}, "cfg_scale"),
        ({"sampler": "Euler z"}, "sampler"),
        ({"count": 5}, "count"),
        ({"width": 2048, "height": 2048}, "size"),
    ],
)
def test_submit_rejects_a_bad_request_and_stores_nothing(
    services: Services, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        services.jobs.submit(small_request(**changes), requester=member(1))
    assert caught.value.field == field
    assert job_count(services) == 0


def test_submit_assigns_a_seed_and_stores_canonical_json(services: Services) -> None:
    job = services.jobs.submit(small_request(seed=None, sampler="euler_a"), requester=member(1))

    assert job.status == "queued"
    assert job.kind == "imagine"
    assert job.owner_discord_id == 1
    assert isinstance(job.request.seed, int)
    assert job.request.sampler == "Euler a"
    with services.database.session() as session:
        stored = get_job(session, job_id=job.id).request_json
    canonical = json.dumps(json.loads(stored), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert stored == canonical == job.request.to_json()
    assert json.loads(stored)["seed"] == job.request.seed
    assert services.jobs.get(job.id).request == job.request


def test_submit_keeps_a_given_seed(services: Services) -> None:
    assert services.jobs.submit(small_request(seed=7), requester=LOCAL).request.seed == 7


def test_queue_limit_applies_to_discord_members_only(services: Services) -> None:
    limit = services.settings.max_queued_per_user
    first = [services.jobs.submit(small_request(), requester=member(1)) for _ in range(limit)]

    with pytest.raises(QueueFull, match=f"the limit is {limit}"):
        services.jobs.submit(small_request(), requester=member(1))
    assert job_count(services) == limit
    # Another member, and the local user however many jobs it has, are not limited by member 1
    services.jobs.submit(small_request(), requester=member(2))
    for _ in range(limit + 2):
        services.jobs.submit(small_request(), requester=LOCAL)
    # A finished (here: cancelled) job frees a place
    services.jobs.cancel(first[0].id)
    services.jobs.submit(small_request(), requester=member(1))


# -- child jobs -----------------------------------------------------------------------------------


def test_children_of_a_finished_job(services: Services) -> None:
    parent = run_job(services, small_request(count=2, steps=4))
    assert parent.status == "done"

    reroll = services.jobs.submit_child(parent.id, action="reroll", requester=member(2))
    assert (reroll.kind, reroll.parent_id, reroll.parent_image_index) == ("reroll", parent.id, None)
    assert reroll.owner_discord_id == 2
    assert reroll.request.mode == "txt2img"
    assert reroll.request.seed != parent.request.seed
    assert reroll.request.prompt == parent.request.prompt
    assert reroll.request.count == parent.request.count

    upscale = services.jobs.submit_child(parent.id, action="upscale", requester=member(2), index=1)
    assert (upscale.kind, upscale.parent_id, upscale.parent_image_index) == ("upscale", parent.id, 1)
    assert upscale.request.mode == "upscale"
    assert upscale.request.init_image == parent.images[1].sha256
    assert (upscale.request.width, upscale.request.height) == (128, 128)
    assert upscale.request.count == 1

    for strength, value in (("strong", 0.6), ("subtle", 0.3)):
        variation = services.jobs.submit_child(
            parent.id, action="variation", requester=LOCAL, index=0, strength=strength
        )
        assert (variation.kind, variation.parent_id, variation.parent_image_index) == (
            "variation",
            parent.id,
            0,
        )
        assert variation.request.mode == "img2img"
        assert variation.request.init_image == parent.images[0].sha256
        assert variation.request.strength == value
        assert (variation.request.width, variation.request.height) == (64, 64)
        assert variation.request.steps == parent.request.steps


def test_children_of_a_few_step_job_still_denoise(services: Services) -> None:
    """``--steps 2`` x strength 0.35 is 0 img2img steps: the child gets just enough to run one."""
    parent = run_job(services, small_request(steps=2))
    upscale = services.jobs.submit_child(parent.id, action="upscale", requester=LOCAL)
    subtle = services.jobs.submit_child(parent.id, action="variation", requester=LOCAL, strength="subtle")
    for child in (upscale, subtle):
        assert child.request.strength is not None
        assert int(child.request.steps * child.request.strength) == 1


def test_a_reroll_of_an_upscale_may_exceed_max_pixels(services: Services) -> None:
    services.jobs.max_pixels = 64 * 64
    parent = run_job(services, small_request())
    upscale = services.jobs.submit_child(parent.id, action="upscale", requester=LOCAL)
    assert upscale.request.width * upscale.request.height > services.jobs.max_pixels

    reroll = services.jobs.submit_child(upscale.id, action="reroll", requester=LOCAL)
    assert (reroll.request.width, reroll.request.height) == (128, 128)
    assert (reroll.request.mode, reroll.request.init_image) == ("upscale", parent.images[0].sha256)
    with pytest.raises(InvalidRequest, match="size"):
        services.jobs.submit(small_request(width=128, height=128), requester=LOCAL)


def test_image_children_need_a_finished_parent_with_that_image(services: Services) -> None:
    queued = services.jobs.submit(small_request(), requester=LOCAL)
    for action in ("upscale", "variation"):
        with pytest.raises(PipelineError, match="no image 1"):
            services.jobs.submit_child(queued.id, action=action, requester=LOCAL)
    done = run_job(services, small_request())
    for index in (1, -1):
        with pytest.raises(PipelineError, match="no image"):
            services.jobs.submit_child(done.id, action="upscale", requester=LOCAL, index=index)
    with pytest.raises(ValueError, match="action"):
        services.jobs.submit_child(done.id, action="remaster", requester=LOCAL)
    with pytest.raises(JobNotFound):
        services.jobs.submit_child(999, action="reroll", requester=LOCAL)
    assert job_count(services) == 2


# -- cancelling -----------------------------------------------------------------------------------


def test_cancel_a_queued_job(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=member(1))
    cancelled = services.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert services.jobs.get(job.id).finished_at is not None
    assert services.jobs.position(job.id) is None
    with pytest.raises(NotCancellable, match="cancelled"):
        services.jobs.cancel(job.id)


def test_cancel_a_running_job_asks_the_worker(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=member(1))
    with services.database.session() as session:
        start_job(session, job_id=job.id)

    asked = services.jobs.cancel(job.id)

    assert asked.status == "running"
    with services.database.session() as session:
        assert is_cancel_requested(session, job_id=job.id)


def test_a_finished_job_is_not_cancellable(services: Services) -> None:
    job = run_job(services, small_request())
    with pytest.raises(NotCancellable, match="finished"):
        services.jobs.cancel(job.id)
    assert services.jobs.get(job.id).status == "done"


# -- deleting -------------------------------------------------------------------------------------


def test_delete_removes_rows_and_unshared_files(services: Services) -> None:
    # The same request and seed make the same PNG: both jobs' images share one stored file
    first = run_job(services, small_request(seed=5))
    second = run_job(services, small_request(seed=5))
    own = run_job(services, small_request(seed=6))
    assert first.images[0].path == second.images[0].path != own.images[0].path
    shared = services.store.path(first.images[0].path)

    services.jobs.delete(first.id)
    with pytest.raises(JobNotFound):
        services.jobs.get(first.id)
    assert shared.is_file(), "the file is still used by the second job"
    assert services.jobs.images.read(second.images[0]) == shared.read_bytes()

    services.jobs.delete(second.id)
    assert not shared.exists()

    services.jobs.delete(own.id)
    assert not services.store.exists(own.images[0].path)
    assert job_count(services) == 0


def test_delete_refuses_a_running_job(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=LOCAL)
    with services.database.session() as session:
        start_job(session, job_id=job.id)
    with pytest.raises(JobBusy):
        services.jobs.delete(job.id)
    assert services.jobs.get(job.id).status == "running"


# -- queue positions ------------------------------------------------------------------------------


def test_position_follows_the_fair_scheduler(services: Services) -> None:
    a1, a2, a3 = (services.jobs.submit(small_request(), requester=member(1)) for _ in range(3))
    b1 = services.jobs.submit(small_request(), requester=member(2))

    # Everyone's first job before anyone's second
    assert [services.jobs.position(job.id) for job in (a1, b1, a2, a3)] == [1, 2, 3, 4]
    assert services.jobs.position(999) is None

    # Member 1 was just served: member 2 goes first, then member 1's remaining jobs
    [head] = [job for job in services.jobs.queued() if job.job_id == a1.id]
    services.scheduler.served([head])
    services.jobs.cancel(a1.id)
    assert services.jobs.position(a1.id) is None
    assert [services.jobs.position(job.id) for job in (b1, a2, a3)] == [1, 2, 3]
