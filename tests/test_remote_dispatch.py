"""The pieces of scale-out that need no GPU worker: what travels, which worker a batch goes to,
late results, and a worker that announces itself but never takes its batch (a real Redis)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from PIL import Image

from pipeline.app import App
from pipeline.domain.request import GenerationRequest
from pipeline.engine.results import StepProgress
from pipeline.errors import InvalidRequest, ModelNotFound, PipelineError
from pipeline.queue.executor import Encoded, Failed, Stopped, Task
from pipeline.queue.jobs import ImageFile, Requester
from pipeline.queue.remote import wire
from pipeline.queue.remote.dispatch import LOST_GRACE_S, pick_worker
from pipeline.queue.remote.fleet import Fleet
from pipeline.queue.worker_status import WorkerStatus
from pipeline.settings import SettingsError, load_settings
from tests.helpers_remote import RedisServer, wait_until

FOX = GenerationRequest(prompt="fox", width=64, height=64)


def _status(
    name: str, *, models: tuple[str, ...] = (), available: tuple[str, ...] = (), vram: int = 0, **more
):
    return WorkerStatus(
        name=name, host="box", instance=name, pid=1, gpu="GPU", device="cuda", default_model="sd15",
        models=models, available=available, free_vram_mb=vram, **more,
    )  # fmt: skip


# -- what travels ---------------------------------------------------------------------------------


def test_a_batch_travels_with_its_requests_and_sources_unchanged() -> None:
    request = GenerationRequest(prompt="a fox (in snow:1.2) 狐狸", width=512, height=768, steps=20, seed=7)
    source = Image.new("RGB", (8, 8), (10, 200, 30))
    tasks, sources = wire.read_batch(wire.batch_message([Task(3, request)], {"ab" * 32: source}))
    assert tasks == [Task(3, request)]
    assert sources["ab" * 32].tobytes() == source.tobytes()


def test_outcomes_travel_with_their_images_and_errors_keep_their_kind() -> None:
    image = ImageFile(index=0, seed=5, width=8, height=8, data=b"\x89PNG...", flagged=True)
    refused = InvalidRequest("steps", 900, "1 to 150", key="out_of_range", params={"low": 1, "high": 150})
    sent = [
        Encoded(1, (image,), "sd15", "abcdef0123", '{"worker": "gpu-a"}', grid=b"\x89PNG grid"),
        Failed((2,), ModelNotFound("no checkpoint at /secret/path")),
        Failed((3,), refused),
        Failed((4,), RuntimeError("CUDA error: an illegal memory access")),
        Stopped((5, 6)),
    ]
    got = wire.read_outcomes(wire.outcomes_message(sent))
    assert got[0] == sent[0] and got[4] == sent[4]
    assert type(got[1].error).__name__ == "ModelError"  # logged, never shown: "model unavailable"
    assert isinstance(got[2].error, PipelineError) and str(got[2].error) == str(refused)
    assert got[2].error.key == "out_of_range" and got[2].error.params == {"low": 1, "high": 150}
    assert isinstance(got[3].error, wire.WorkerFailure) and not isinstance(got[3].error, PipelineError)


def test_progress_travels_with_the_latest_previews() -> None:
    preview = Image.new("RGB", (16, 16), (255, 0, 0))
    progress = StepProgress(step=3, total_steps=20, elapsed_s=1.5, previews={(0, 1): preview})
    meta = wire.progress_meta(
        [7, 8], progress, previews=wire.preview_payload(progress.previews), preview_step=2
    )
    ids, read = wire.read_progress(meta, with_previews=True)
    assert ids == (7, 8) and (read.step, read.total_steps) == (3, 20)
    assert read.previews is not None and read.previews[(0, 1)].size == (16, 16)


@pytest.mark.parametrize(
    "message",
    [{}, {"version": 99, "tasks": []}, {"version": 1, "tasks": [{"job_id": "x"}], "sources": {}}, "text"],
)
def test_a_message_of_another_version_or_shape_is_refused(message: object) -> None:
    with pytest.raises(wire.WireError):
        wire.read_batch(message)  # type: ignore[arg-type]
    with pytest.raises(wire.WireError):
        wire.read_outcomes(message)  # type: ignore[arg-type]


# -- which worker ---------------------------------------------------------------------------------


def test_a_batch_goes_to_a_worker_holding_its_model_else_one_that_can_load_it() -> None:
    holds = _status("holds", models=("anime",), vram=1000)
    roomy = _status("roomy", models=("sd15",), available=("anime",), vram=9000)
    assert pick_worker([holds, roomy], [holds, roomy], "anime") is holds
    assert pick_worker([holds, roomy], [holds, roomy], None) is roomy  # the default model, loaded
    assert pick_worker([roomy], [holds, roomy], "anime") is roomy


def test_a_batch_waits_for_the_busy_worker_that_has_its_model() -> None:
    busy = _status("busy", models=("rare",), task="d1")
    idle = _status("idle", models=("sd15",))
    assert pick_worker([idle], [busy, idle], "rare") is None
    assert pick_worker([idle], [idle], "rare") is idle, "no one has it: a worker says so"


# -- settings -------------------------------------------------------------------------------------


def test_the_broker_and_worker_settings_are_checked(tmp_path: Path) -> None:
    base = {"NANKE_DATA_DIR": str(tmp_path)}
    settings = load_settings({**base, "NANKE_BROKER_URL": "redis://gpu-hub:6379/0"}, dotenv=None)
    assert settings.broker_url == "redis://gpu-hub:6379/0" and settings.worker_name
    assert load_settings(base, dotenv=None).broker_url is None
    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                **base,
                "NANKE_BROKER_URL": "amqp://x",
                "NANKE_WORKER_NAME": "a b/c",
                "NANKE_WORKER_TIMEOUT": "1",
            },
            dotenv=None,
        )
    problems = refused.value.problems
    assert [line.split(":")[0] for line in problems] == [
        "NANKE_BROKER_URL", "NANKE_WORKER_NAME", "NANKE_WORKER_TIMEOUT",
    ]  # fmt: skip


# -- late results ---------------------------------------------------------------------------------


def test_a_result_from_a_stale_dispatch_is_discarded(tmp_path: Path, tiny_model_dir: Path) -> None:
    app = App(
        load_settings({"NANKE_DATA_DIR": str(tmp_path), "NANKE_MODEL": str(tiny_model_dir)}, dotenv=None)
    )
    job = app.jobs.submit(GenerationRequest(prompt="fox", width=64, height=64), requester=Requester(name="m"))
    runs = app.jobs.runs
    assert runs.start(job.id, dispatch_id="first", worker="gpu-a") is not None
    assert runs.requeue_dispatch("first", counted=True) == [job.id]
    assert runs.start(job.id, dispatch_id="second", worker="gpu-b") is not None
    image = ImageFile(index=0, seed=1, width=64, height=64, data=b"late")
    assert not runs.finish(job.id, images=[image], model_name="m", model_hash=None, environment_json=None,
                           dispatch_id="first")  # fmt: skip
    assert not runs.fail(job.id, error="late", dispatch_id="first")
    assert not runs.cancelled(job.id, dispatch_id="first")
    assert app.jobs.get(job.id).status == "running"
    assert runs.finish(job.id, images=[image], model_name="m", model_hash=None, environment_json=None,
                       dispatch_id="second")  # fmt: skip
    done = app.jobs.get(job.id)
    assert done.status == "done" and len(done.images) == 1 and done.worker == "gpu-b"
    app.close()


# -- a worker that never takes its batch ----------------------------------------------------------


@pytest.mark.slow
def test_a_batch_an_idle_worker_never_takes_goes_back_without_costing_an_attempt(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        ghost = _status("ghost", models=("tiny-sd",))
        Fleet(redis.url, ttl_s=120).announce(ghost)
        environ = {
            "NANKE_DATA_DIR": str(tmp_path / "bot"),
            "NANKE_MODEL": str(tiny_model_dir),
            "NANKE_BROKER_URL": redis.url,
        }
        app = App(load_settings(environ, dotenv=None)).open()
        job = app.jobs.submit(
            GenerationRequest(prompt="fox", width=64, height=64), requester=Requester(name="m")
        )
        dispatcher = app.worker(poll_interval=0.2)
        dispatcher.recover()
        caplog.set_level(logging.INFO)
        began = time.monotonic()
        dispatcher.start()
        try:
            wait_until(lambda: "never took the batch" in caplog.text, timeout=30, what="the batch given back")
            assert time.monotonic() - began >= LOST_GRACE_S
            wait_until(lambda: app.jobs.get(job.id).status == "queued", timeout=5, what="the job requeued")
            assert "gets none for" in caplog.text, "the ghost is not sent the job again at once"
        finally:
            dispatcher.stop()
        with app.store.session() as session:
            from storage import Job

            assert session.get(Job, job.id).attempts == 0
        app.close()
    finally:
        redis.stop()


def test_with_workers_the_bot_leaves_lora_checks_to_them(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The bot box may have no LoRA folder: a prompt's LoRA is checked by the worker that runs it."""
    environ = {"NANKE_DATA_DIR": str(tmp_path), "NANKE_MODEL": str(tiny_model_dir)}
    request = GenerationRequest(prompt="fox <lora:only-on-the-gpu-box:0.8>", width=64, height=64)
    embedded = App(load_settings(environ, dotenv=None))
    with pytest.raises(PipelineError, match="no LoRA called"):
        embedded.jobs.submit(request, requester=Requester(name="m"))
    embedded.close()
    remote = App(load_settings({**environ, "NANKE_BROKER_URL": "redis://127.0.0.1:1/0"}, dotenv=None))
    assert remote.jobs.submit(request, requester=Requester(name="m")).status == "queued"
    remote.close()
