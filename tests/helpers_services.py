"""Helpers of the job, worker and command-line tests (their fixtures are in ``fixtures_services``)."""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from pipeline.app import App
from pipeline.domain.metadata import read_parameters
from pipeline.domain.request import GenerationRequest
from pipeline.queue.jobs import JobSnapshot, Requester
from pipeline.queue.worker import WorkerEvents
from storage import Database, ImageStore, Job


class Services:
    """An :class:`App` as the tests use it: its parts, one worker (not started), and direct access
    to the rows and files behind the job interface for setting up and checking states."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.jobs = app.jobs
        self.runner = app.runner
        self.scheduler = app.scheduler
        self.engines = app.engines
        self.worker = app.worker()
        self.database = Database(app.settings.database_url)
        self.store = ImageStore(app.settings.image_dir)

    def start_worker(self) -> None:
        self.worker.recover()
        self.worker.start()

    def stop_worker(self) -> None:
        self.worker.stop()

    def close(self) -> None:
        self.worker.stop(timeout=60)
        self.database.dispose()
        self.app.close()


LOCAL = Requester(name="local")
"""The command line's user: no Discord id, so no queue limit."""


BATCH_ROUNDING = 2
"""Levels (of 255) an image may differ from the same request run in a batch of another size.

The engine's matrix products round differently for different batch sizes, so only a replay of
the same batch (``pipeline.queue.reproduce``) is exact.
"""


def has_image(message: Any) -> bool:
    """A message carrying a job's image (a result or a showcase post), not a progress preview."""
    return any(attachment.filename != "preview.jpg" for attachment in message.attachments)


def member(discord_id: int) -> Requester:
    """A Discord member."""
    return Requester(name=f"member-{discord_id}", discord_id=discord_id)


def settings_env(data_dir: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    """The settings environment of a test: its own data folder, the tiny model, the CPU."""
    return {
        "NANKE_DATA_DIR": str(data_dir),
        "NANKE_MODEL": str(model_dir),
        "NANKE_DEVICE": "cpu",
        **extra,
    }


def small_request(prompt: str = "a red fox in snow", **changes: Any) -> GenerationRequest:
    """A request that runs in a fraction of a second on the tiny model."""
    fields: dict[str, Any] = {"width": 64, "height": 64, "steps": 2, "seed": 1234}
    fields.update(changes)
    return GenerationRequest(prompt=prompt, **fields)


def run_job(
    services: Services,
    request: GenerationRequest,
    *,
    requester: Requester = LOCAL,
    events: WorkerEvents | None = None,
) -> JobSnapshot:
    """Submit ``request`` and run it to the end in this thread; the job as stored afterwards."""
    job = services.jobs.submit(request, requester=requester)
    services.runner.run_and_save([job.id], events=events)
    return services.jobs.get(job.id)


def job_count(services: Services) -> int:
    with services.database.session() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def parameters_of(data: bytes) -> str:
    """The A1111 ``parameters`` text of an image file's bytes (it must have one)."""
    text = read_parameters(data)
    assert text is not None, "the image has no parameters text"
    return text


def seed_in(parameters: str) -> int:
    match = re.search(r"\bSeed: (\d+)", parameters)
    assert match is not None, parameters
    return int(match.group(1))


def pixels(data: bytes) -> np.ndarray:
    """An image file's RGB pixels."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class Recorder(WorkerEvents):
    """Remembers every event; tests can wait for a number of finished jobs."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int, int]] = []
        self.finished_ids: list[int] = []
        self._changed = threading.Condition()

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        with self._changed:
            self.steps.append((job_id, step, total))

    def finished(self, job_id: int) -> None:
        with self._changed:
            self.finished_ids.append(job_id)
            self._changed.notify_all()

    def steps_of(self, job_id: int) -> list[int]:
        return [step for job, step, _ in self.steps if job == job_id]

    def finished_counts(self) -> Counter[int]:
        return Counter(self.finished_ids)

    def wait_finished(self, count: int, *, timeout: float = 60.0) -> None:
        with self._changed:
            done = self._changed.wait_for(lambda: len(self.finished_ids) >= count, timeout)
        assert done, f"only {len(self.finished_ids)} of {count} jobs finished in {timeout} s"
