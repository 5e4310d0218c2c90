"""The queue policy: fairness across owners, priorities, compatible batching."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.domain.request import GenerationRequest
from pipeline.queue.scheduler import FairScheduler, QueuedJob

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job(job_id: int, owner: int, *, minute: int | None = None, priority: int = 0, **fields) -> QueuedJob:
    request = GenerationRequest(prompt=f"job {job_id}", seed=job_id, **fields)
    created = T0 + timedelta(minutes=job_id if minute is None else minute)
    return QueuedJob(job_id=job_id, owner_id=owner, request=request, created_at=created, priority=priority)


def ids(jobs) -> list[int]:
    return [j.job_id for j in jobs]


def test_round_robin_across_owners() -> None:
    queued = [job(1, owner=10), job(2, owner=10), job(3, owner=10), job(4, owner=20), job(5, owner=30)]
    assert ids(FairScheduler().order(queued)) == [1, 4, 5, 2, 3]


def test_owner_served_most_recently_goes_last() -> None:
    scheduler = FairScheduler()
    scheduler.served([job(0, owner=10)])
    queued = [job(1, owner=10), job(2, owner=20)]
    assert ids(scheduler.order(queued)) == [2, 1]


def test_priority_before_fairness() -> None:
    queued = [job(1, owner=10), job(2, owner=20, priority=5)]
    assert ids(FairScheduler().order(queued)) == [2, 1]


def test_batch_groups_compatible_jobs_within_image_budget() -> None:
    queued = [
        job(1, owner=10, count=2),
        job(2, owner=20, steps=30),  # incompatible: different steps
        job(3, owner=30, count=1),
        job(4, owner=40, count=2),  # compatible but would exceed 4 images
        job(5, owner=50, count=1),
    ]
    batch = FairScheduler(max_images=4).next_batch(queued)
    assert ids(batch) == [1, 3, 5]
    assert sum(j.request.count for j in batch) == 4


def test_batch_never_mixes_models_sizes_or_samplers() -> None:
    base = GenerationRequest(prompt="x")
    assert (
        base.batch_key() == GenerationRequest(prompt="other prompt", seed=9, negative_prompt="n").batch_key()
    )
    for change in ({"model": "m"}, {"width": 768}, {"sampler": "DDIM"}, {"cfg_scale": 5.0}, {"clip_skip": 2}):
        assert base.batch_key() != GenerationRequest(prompt="x", **change).batch_key()


def test_position_and_empty_queue() -> None:
    scheduler = FairScheduler()
    queued = [job(1, owner=10), job(2, owner=10), job(3, owner=20)]
    assert scheduler.position(2, queued) == 3
    assert scheduler.position(99, queued) is None
    assert scheduler.next_batch([]) == []


def test_max_images_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_images"):
        FairScheduler(max_images=0)


def test_a_pixel_budget_keeps_a_batch_within_the_gpus_memory() -> None:
    def job(n: int, size: int) -> QueuedJob:
        request = GenerationRequest(prompt=f"p{n}", width=size, height=size, count=4, seed=n)
        return QueuedJob(job_id=n, owner_id=n, request=request, created_at=T0 + timedelta(seconds=n))

    scheduler = FairScheduler(max_images=16)
    grids = [job(n, 512) for n in range(1, 6)]  # five 4-image grids at 512x512

    assert [j.job_id for j in scheduler.next_batch(grids)] == [1, 2, 3, 4], "16 images at most"
    budget = 8 * 512 * 512
    assert [j.job_id for j in scheduler.next_batch(grids, max_pixels=budget)] == [1, 2]
    big = [job(9, 1024)]  # 4 x 1024x1024 = 16 512-units: over the budget, but it runs alone
    assert [j.job_id for j in scheduler.next_batch(big, max_pixels=budget)] == [9]
