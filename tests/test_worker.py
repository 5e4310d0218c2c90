"""The job runner and the GPU worker thread, on the tiny model: results, events, cancellation,
failures, crash recovery, batching, child jobs and reproduction."""

from __future__ import annotations

import hashlib
import inspect
import io
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.domain.prompt.embeddings import chunk_count
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.results import GenerationResult
from pipeline.queue import worker as worker_module
from pipeline.queue.jobs import JobService
from pipeline.queue.jobs import runs as runs_module
from pipeline.queue.local_executor import LocalExecutor
from pipeline.queue.reproduce import reproduce_job
from storage import is_cancel_requested, start_job
from tests.helpers_services import (
    BATCH_ROUNDING,
    LOCAL,
    Recorder,
    Services,
    member,
    parameters_of,
    pixels,
    run_job,
    seed_in,
    small_request,
)

pytest_plugins = ("tests.fixtures_services",)

LONG_PROMPT = "a very long prompt about a red fox walking through deep fresh snow " * 2
"""Over 75 tokens on the tiny model's one-character-per-token vocabulary: two chunks."""


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[GenerationRequest]]:
    """Every ``Engine.generate`` call's requests; the real method still runs."""
    calls: list[list[GenerationRequest]] = []
    real = Engine.generate

    def spy(self: Engine, requests: Sequence[GenerationRequest], **options: Any) -> list[GenerationResult]:
        calls.append(list(requests))
        return real(self, requests, **options)

    monkeypatch.setattr(Engine, "generate", spy)
    return calls


# -- one job --------------------------------------------------------------------------------------


def test_a_job_runs_to_done_with_its_images_stored(services: Services) -> None:
    events = Recorder()
    job = run_job(services, small_request(seed=100, count=4, steps=3), events=events)

    assert job.status == "done", job.error
    assert job.error is None
    assert job.started_at is not None and job.finished_at is not None
    assert job.model_name == "tiny-sd"
    assert job.model_hash and len(job.model_hash) == 10
    assert [image.index for image in job.images] == [0, 1, 2, 3]
    assert [image.seed for image in job.images] == [100, 101, 102, 103]
    for image in job.images:
        data = services.jobs.images.read(image)
        assert hashlib.sha256(data).hexdigest() == image.sha256
        assert image.path.endswith(".png")
        with Image.open(io.BytesIO(data)) as png:
            assert (png.format, png.size) == ("PNG", (64, 64))
        parameters = parameters_of(data)
        assert seed_in(parameters) == image.seed
        assert parameters.startswith("a red fox in snow\n")
        assert "Steps: 3, Sampler: Euler a" in parameters
        assert "Size: 64x64" in parameters
        assert f"Model hash: {job.model_hash}" in parameters
    assert len({image.sha256 for image in job.images}) == 4, "every seed makes its own image"
    # One progress event per step, then one finished event
    assert events.steps_of(job.id) == [1, 2, 3]
    assert {total for _, _, total in events.steps} == {3}
    assert events.finished_ids == [job.id]


def test_a_jobs_grid_is_stored_with_its_images_and_deleted_with_them(services: Services) -> None:
    job = run_job(services, small_request(seed=100, count=4, steps=2))

    assert job.grid_path is not None
    stored = services.store.read(job.grid_path)
    picture = services.jobs.images.picture(job)
    assert picture is not None and picture.grid
    with Image.open(io.BytesIO(stored)) as grid:
        assert grid.size == (128, 128)
        assert np.array_equal(np.asarray(grid.convert("RGB")), np.asarray(picture.image)), "the same pixels"
    assert parameters_of(stored) == picture.parameters, "the first image's parameters, as the WebUI does"
    assert services.jobs.images.posted(job) == stored
    alone = run_job(services, small_request(seed=7, count=1, steps=2))
    assert alone.grid_path is None and services.jobs.images.posted(alone) == services.jobs.images.read(
        alone.images[0]
    )

    services.jobs.delete(job.id)
    with pytest.raises(OSError):
        services.store.read(job.grid_path)


# -- cancellation ---------------------------------------------------------------------------------


def test_a_job_cancelled_while_queued_is_skipped(services: Services) -> None:
    events = Recorder()
    cancelled = services.jobs.submit(small_request(), requester=member(1))
    kept = services.jobs.submit(small_request(), requester=member(2))
    services.jobs.cancel(cancelled.id)

    services.runner.run_and_save([cancelled.id, kept.id], events=events)

    skipped = services.jobs.get(cancelled.id)
    assert (skipped.status, skipped.images, skipped.started_at) == ("cancelled", (), None)
    assert services.jobs.get(kept.id).status == "done"
    assert events.steps_of(cancelled.id) == []
    assert events.finished_ids == [kept.id]


class CancelAtFirstStep(Recorder):
    """Cancels every job at its first step, through the job service as the ❌ button does."""

    def __init__(self, jobs: JobService) -> None:
        super().__init__()
        self.jobs = jobs

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        super().progress(job_id, step, total, elapsed_s)
        if step == 1:
            assert self.jobs.cancel(job_id).status == "running"


@pytest.mark.parametrize(
    "poll_s",
    [
        pytest.param(0.0, id="noticed-while-generating"),
        pytest.param(3600.0, id="noticed-when-saving"),
    ],
)
def test_a_running_job_stops_when_cancelled(
    services: Services, monkeypatch: pytest.MonkeyPatch, poll_s: float
) -> None:
    monkeypatch.setattr(worker_module, "CANCEL_POLL_S", poll_s)
    events = CancelAtFirstStep(services.jobs)
    job = services.jobs.submit(small_request(steps=6), requester=member(1))

    services.runner.run_and_save([job.id], events=events)

    stopped = services.jobs.get(job.id)
    assert (stopped.status, stopped.images, stopped.error) == ("cancelled", (), None)
    assert stopped.finished_at is not None
    assert events.finished_ids == [job.id]
    if poll_s == 0.0:
        assert events.steps_of(job.id) == [1], "the engine stopped after the step that asked"
    with services.database.session() as session:
        assert is_cancel_requested(session, job_id=job.id)


def test_in_a_shared_batch_only_the_cancelled_job_is_dropped(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "CANCEL_POLL_S", 0.0)
    first = services.jobs.submit(small_request(steps=4), requester=member(1))
    second = services.jobs.submit(small_request(steps=4, seed=99), requester=member(2))

    class CancelFirst(Recorder):
        def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
            super().progress(job_id, step, total, elapsed_s)
            if job_id == first.id and step == 1:
                services.jobs.cancel(job_id)

    events = CancelFirst()
    services.runner.run_and_save([first.id, second.id], events=events)

    assert services.jobs.get(first.id).status == "cancelled"
    assert services.jobs.get(second.id).status == "done"
    assert events.steps_of(second.id) == [1, 2, 3, 4]
    assert events.finished_counts() == {first.id: 1, second.id: 1}


# -- failures -------------------------------------------------------------------------------------


def test_a_missing_model_fails_the_job_with_a_clear_error(
    services: Services, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events = Recorder()
    missing = tmp_path / "no-such-model"
    job = run_job(services, small_request(model=str(missing)), events=events)

    assert job.status == "failed"
    # The member sees a short message without the server's paths; the admin's log has the details
    assert job.error == worker_module.MODEL_UNAVAILABLE and str(tmp_path) not in job.error
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "no checkpoint found" in r.message]
    assert str(missing) in warning.message and "\n" not in warning.message
    assert job.images == ()
    assert events.finished_ids == [job.id]
    assert run_job(services, small_request()).status == "done", "the default model still works"


def test_a_variation_whose_source_was_deleted_fails_alone(
    services: Services, generate_calls: list[list[GenerationRequest]]
) -> None:
    gone_parent = run_job(services, small_request(seed=1, steps=4))
    kept_parent = run_job(services, small_request(seed=2, steps=4))
    orphan = services.jobs.submit_child(gone_parent.id, action="variation", requester=member(1))
    healthy = services.jobs.submit_child(kept_parent.id, action="variation", requester=member(2))
    services.jobs.delete(gone_parent.id)
    services.worker.events = events = Recorder()
    generate_calls.clear()

    # The two variations are compatible: the scheduler gives them to the worker as one batch
    assert services.worker.run_once()
    services.worker.stop()

    failed = services.jobs.get(orphan.id)
    assert failed.status == "failed"
    assert failed.error == f"The source image {gone_parent.images[0].sha256[:12]}… no longer exists."
    done = services.jobs.get(healthy.id)
    assert done.status == "done", done.error
    assert [len(call) for call in generate_calls] == [1]
    assert generate_calls[0][0].init_image == kept_parent.images[0].sha256
    assert events.finished_counts() == {orphan.id: 1, healthy.id: 1}


# -- the worker thread ----------------------------------------------------------------------------


def test_recover_requeues_a_job_left_running(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=member(1))
    with services.database.session() as session:
        start_job(session, job_id=job.id)
    assert services.jobs.get(job.id).status == "running"

    assert services.worker.recover() == [job.id]

    requeued = services.jobs.get(job.id)
    assert (requeued.status, requeued.started_at) == ("queued", None)
    assert services.jobs.position(job.id) == 1
    assert services.worker.recover() == []


def test_the_next_batch_is_chosen_while_the_last_one_finishes(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three jobs of three sizes (three batches): the second and third were chosen in the
    planner thread, during the batch before, and the three ran in the fair order."""
    worker = services.worker
    chosen_in: list[str] = []
    real_choose = worker._choose

    def choose() -> Any:
        batch = real_choose()
        if batch:
            chosen_in.append(threading.current_thread().name.split("_")[0])
        return batch

    monkeypatch.setattr(worker, "_choose", choose)
    jobs = [
        services.jobs.submit(small_request(seed=n, width=64 * (n + 1)), requester=member(n + 1))
        for n in range(3)
    ]
    while worker.run_once():
        pass
    worker.stop()  # the last saves finish

    assert [services.jobs.get(job.id).status for job in jobs] == ["done"] * 3
    assert chosen_in == ["MainThread", "nanke-planner", "nanke-planner"]
    started = [services.jobs.get(job.id).started_at for job in jobs]
    assert started == sorted(started)


def test_the_next_batch_s_prompts_are_encoded_while_the_last_one_finishes(services: Services) -> None:
    """With encoding ahead on (CUDA's default), the second and third batches take the embeddings
    the planner made during the batch before, and every image still reproduces exactly."""
    from pipeline.engine.results import EngineOptions

    services.engines.options = EngineOptions(encode_ahead=True)
    prompts = ["a red fox", "a grey wolf at dusk", "(a lighthouse:1.2) in fog"]
    jobs = [
        services.jobs.submit(
            small_request(prompt=prompt, seed=n, width=64 * (n + 1)), requester=member(n + 1)
        )
        for n, prompt in enumerate(prompts)
    ]
    while services.worker.run_once():
        pass
    services.worker.stop()

    assert [services.jobs.get(job.id).status for job in jobs] == ["done"] * 3
    engine = services.engines.engine_for(None)
    assert (engine._ahead.made, engine._ahead.used) == (2, 2)
    for job in jobs:
        assert reproduce_job(services.jobs, services.engines, job.id).identical


def test_the_worker_thread_runs_queued_jobs_until_stopped(services: Services) -> None:
    events = Recorder()
    services.worker.events = events
    interrupted = services.jobs.submit(small_request(seed=1), requester=member(1))
    with services.database.session() as session:
        start_job(session, job_id=interrupted.id)
    queued = services.jobs.submit(small_request(seed=2, width=128), requester=member(2))

    services.start_worker()
    # Submitting wakes the worker at once (the poll interval is seconds)
    late = [services.jobs.submit(small_request(seed=seed), requester=LOCAL) for seed in (3, 4, 5)]
    ids = [interrupted.id, queued.id, *(job.id for job in late)]
    events.wait_finished(len(ids))
    services.stop_worker()

    assert services.worker._thread is None
    assert events.finished_counts() == dict.fromkeys(ids, 1)
    for job_id in ids:
        job = services.jobs.get(job_id)
        assert job.status == "done", job.error
        assert len(job.images) == 1
    assert services.jobs.queued() == []


def test_the_worker_starts_again_after_a_stop(services: Services) -> None:
    events = Recorder()
    services.worker.events = events
    for round_number in (1, 2):
        services.start_worker()
        job = services.jobs.submit(small_request(seed=round_number), requester=LOCAL)
        events.wait_finished(round_number)
        services.stop_worker()
        assert services.jobs.get(job.id).status == "done"


# -- batching -------------------------------------------------------------------------------------


def test_compatible_jobs_of_two_owners_share_one_engine_call(
    services: Services, generate_calls: list[list[GenerationRequest]]
) -> None:
    requests = [
        small_request("a red fox in snow", seed=11, count=2),
        small_request("a blue whale at sea", seed=22, negative_prompt="blurry"),
    ]
    jobs = [services.jobs.submit(request, requester=member(n)) for n, request in enumerate(requests)]

    assert services.worker.run_once()
    services.worker.stop()

    assert [[r.seed for r in call] for call in generate_calls] == [[11, 22]]
    alone = [run_job(services, request) for request in requests]
    assert [len(call) for call in generate_calls] == [2, 1, 1]
    for submitted, single in zip(jobs, alone, strict=True):
        batched = services.jobs.get(submitted.id)
        assert batched.status == single.status == "done"
        assert [image.seed for image in batched.images] == [image.seed for image in single.images]
        for ours, theirs in zip(batched.images, single.images, strict=True):
            a, b = (pixels(services.jobs.images.read(image)).astype(np.int16) for image in (ours, theirs))
            # The same image up to float rounding: matrix products round differently for other
            # batch sizes (the engine's known limit), so exact equality is checked by replaying
            # the recorded batch below.
            assert np.abs(a - b).max() <= BATCH_ROUNDING, f"image {ours.index} of job {batched.id}"
        assert reproduce_job(services.jobs, services.engines, batched.id).identical
        assert reproduce_job(services.jobs, services.engines, single.id).identical


def test_prompts_of_different_chunk_counts_run_in_separate_calls(
    services: Services, generate_calls: list[list[GenerationRequest]]
) -> None:
    short = services.jobs.submit(small_request("a red fox", seed=1), requester=member(1))
    long = services.jobs.submit(small_request(LONG_PROMPT, seed=2), requester=member(2))
    pipe = services.engines.engine_for(None).pipe
    assert (chunk_count(pipe, "a red fox"), chunk_count(pipe, LONG_PROMPT)) == (1, 2)
    assert [job.job_id for job in services.scheduler.next_batch(services.jobs.queued())] == [
        short.id,
        long.id,
    ]

    assert services.worker.run_once()
    services.worker.stop()

    assert sorted(call[0].prompt for call in generate_calls) == sorted(["a red fox", LONG_PROMPT])
    assert [len(call) for call in generate_calls] == [1, 1]
    long_done = services.jobs.get(long.id)
    assert long_done.status == services.jobs.get(short.id).status == "done"
    assert parameters_of(services.jobs.images.read(long_done.images[0])).startswith(LONG_PROMPT + "\n")


# -- child jobs and reproduction ------------------------------------------------------------------


def test_upscale_and_variation_children_have_the_right_sizes(services: Services) -> None:
    parent = run_job(services, small_request(width=64, height=96, count=2, steps=2))
    assert parent.status == "done"
    expected = {"upscale": (128, 192), "variation": (64, 96)}
    for action, size in expected.items():
        child = services.jobs.submit_child(parent.id, action=action, requester=LOCAL, index=1)
        services.runner.run_and_save([child.id])
        child = services.jobs.get(child.id)
        assert child.status == "done", child.error
        [image] = child.images
        assert (image.width, image.height) == size
        with Image.open(io.BytesIO(services.jobs.images.read(image))) as png:
            assert png.size == size
        assert image.sha256 != parent.images[1].sha256
        assert reproduce_job(services.jobs, services.engines, child.id).identical


def test_reproduce_a_fresh_job_and_notice_a_tampered_image(services: Services) -> None:
    job = run_job(services, small_request(seed=42, count=2))

    fresh = reproduce_job(services.jobs, services.engines, job.id)
    assert fresh.identical
    assert [(image.index, image.seed, image.identical) for image in fresh.images] == [
        (0, 42, True),
        (1, 43, True),
    ]

    stored = services.store.path(job.images[1].path)
    with Image.open(stored) as png:
        changed = np.asarray(png.convert("RGB")).copy()
    changed[0, 0] = 255 - changed[0, 0]
    Image.fromarray(changed).save(stored, format="PNG")

    tampered = reproduce_job(services.jobs, services.engines, job.id)
    assert not tampered.identical
    assert [image.identical for image in tampered.images] == [True, False]
    assert tampered.images[1].differing_pixels == 1
    assert tampered.images[1].max_difference > 0


def test_reproduce_refuses_a_job_without_images(services: Services) -> None:
    job = services.jobs.submit(small_request(), requester=LOCAL)
    with pytest.raises(ValueError, match="no stored images"):
        reproduce_job(services.jobs, services.engines, job.id)


# -- no started job is left running (review regressions) ------------------------------------------


def test_an_engine_returning_too_few_results_fails_the_batch(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Engine.generate

    def one_too_few(
        self: Engine, requests: Sequence[GenerationRequest], **options: Any
    ) -> list[GenerationResult]:
        return real(self, requests, **options)[:-1]

    monkeypatch.setattr(Engine, "generate", one_too_few)
    events = Recorder()
    jobs = [services.jobs.submit(small_request(seed=seed), requester=member(seed)) for seed in (1, 2)]

    services.runner.run_and_save([job.id for job in jobs], events=events)

    for job in jobs:
        failed = services.jobs.get(job.id)
        assert (failed.status, failed.error, failed.images) == ("failed", worker_module.INTERNAL_ERROR, ())
    assert events.finished_counts() == {job.id: 1 for job in jobs}


def test_an_error_in_a_later_chunk_group_fails_only_the_jobs_left(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    short = services.jobs.submit(small_request("a red fox", seed=1), requester=member(1))
    long = services.jobs.submit(small_request(LONG_PROMPT, seed=2), requester=member(2))
    real = LocalExecutor._generate

    def database_gone_for_the_long_prompt(self: Any, engine: Any, tasks: Sequence[Any], *args: Any) -> Any:
        if any(task.job_id == long.id for task in tasks):
            raise RuntimeError("database connection lost")
        return real(self, engine, tasks, *args)

    monkeypatch.setattr(LocalExecutor, "_generate", database_gone_for_the_long_prompt)
    events = Recorder()

    services.runner.run_and_save([short.id, long.id], events=events)

    assert services.jobs.get(short.id).status == "done", "the group that ran is still saved"
    failed = services.jobs.get(long.id)
    assert (failed.status, failed.error) == ("failed", worker_module.INTERNAL_ERROR)
    assert events.finished_counts() == {short.id: 1, long.id: 1}
    assert any(record.exc_info and "stopped unexpectedly" in record.message for record in caplog.records)


class FailingListener(Recorder):
    """A listener whose event loop closed: ``finished`` raises for one job."""

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id

    def finished(self, job_id: int) -> None:
        super().finished(job_id)
        if job_id == self.job_id:
            raise RuntimeError("Event loop is closed")


def test_a_failing_listener_does_not_stop_the_rest_of_the_batch_being_saved(services: Services) -> None:
    jobs = [services.jobs.submit(small_request(seed=seed), requester=member(seed)) for seed in (1, 2)]
    events = FailingListener(jobs[0].id)

    services.runner.save(services.runner.run([job.id for job in jobs], events=events), events=events)

    for job in jobs:
        assert services.jobs.get(job.id).status == "done", "the listener cannot undo a saved job"
    assert events.finished_counts() == {job.id: 1 for job in jobs}


def test_a_job_whose_rows_cannot_be_written_does_not_stop_the_rest_of_the_batch(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [services.jobs.submit(small_request(seed=seed), requester=member(seed)) for seed in (1, 2)]
    broken = jobs[0].id
    real_finish, real_fail = runs_module.finish_job, runs_module.fail_job

    def finish_job(session: Any, *, job_id: int, **fields: Any) -> Any:
        if job_id == broken:
            raise RuntimeError("disk I/O error")
        return real_finish(session, job_id=job_id, **fields)

    def fail_job(session: Any, *, job_id: int, error: str) -> Any:
        if job_id == broken:
            raise RuntimeError("disk I/O error")
        return real_fail(session, job_id=job_id, error=error)

    monkeypatch.setattr(runs_module, "finish_job", finish_job)
    monkeypatch.setattr(runs_module, "fail_job", fail_job)
    events = Recorder()
    finished = services.runner.run([job.id for job in jobs], events=events)

    services.runner.save(finished, events=events)

    assert services.jobs.get(jobs[1].id).status == "done"
    assert events.finished_ids == [jobs[1].id]


def test_a_failed_background_save_is_logged(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def save(finished: Any, *, events: Any = None) -> None:
        raise RuntimeError("saver broke")

    monkeypatch.setattr(services.runner, "save", save)
    services.jobs.submit(small_request(), requester=member(1))

    assert services.worker.run_once()
    services.worker.stop()

    [record] = [record for record in caplog.records if record.message == "saving a batch failed"]
    assert record.exc_info is not None and str(record.exc_info[1]) == "saver broke"


def test_a_stop_that_times_out_keeps_the_thread_and_no_second_one_starts(services: Services) -> None:
    entered, release = threading.Event(), threading.Event()

    class HoldFirstStep(Recorder):
        def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
            super().progress(job_id, step, total, elapsed_s)
            entered.set()
            assert release.wait(60)

    services.worker.events = events = HoldFirstStep()
    job = services.jobs.submit(small_request(), requester=LOCAL)
    services.worker.start()
    assert entered.wait(60)

    services.worker.stop(timeout=0.05)
    thread = services.worker._thread
    assert thread is not None and thread.is_alive(), "the thread still finishing is kept"
    services.worker.start()
    assert services.worker._thread is thread
    assert [t.name for t in threading.enumerate()].count("nanke-worker") == 1

    release.set()
    thread.join(60)
    assert services.jobs.get(job.id).status == "done", "saved in the worker thread after the stop"
    assert events.finished_ids == [job.id]
    assert services.worker._saver is None, "no saver left behind that nobody shuts down"
    services.worker.stop()
    assert services.worker._thread is None


def test_wake_takes_the_submitted_job_id_as_on_submit_passes_it(services: Services) -> None:
    assert list(inspect.signature(services.worker.wake).parameters) == ["_job_id"]
    services.worker._wake.clear()
    services.jobs.submit(small_request(), requester=LOCAL)
    assert services.worker._wake.is_set()
