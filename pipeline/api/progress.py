"""What the worker tells the HTTP API: the latest step of each running job, and when a job ends.

The worker calls from its own threads; everything is handed to the API's event loop, where
requests wait for a job to change (``/sdapi/v1/txt2img`` until it ends, ``/api/v1/jobs/{id}/events``
at every step). Waiting always has a timeout after which the caller reads the job again from the
database, so news lost on the way (a worker in another process, say) only delays an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from pipeline.queue.worker import WorkerEvents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """Where a running job is: step ``step`` of ``total``, ``elapsed_s`` seconds in."""

    step: int
    total: int
    elapsed_s: float
    at: float
    """``time.monotonic()`` when the step was reported."""

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def eta_s(self) -> float:
        """Seconds left at the pace so far."""
        if not self.step:
            return 0.0
        return self.elapsed_s / self.step * (self.total - self.step)


class ProgressHub(WorkerEvents):
    """The worker's events, for the coroutines of one event loop (call :meth:`attach` first)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._steps: dict[int, Step] = {}
        self._previews: dict[int, list[Image.Image]] = {}
        self._changed: dict[int, asyncio.Event] = {}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- from the worker's threads --------------------------------------------------------------

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self._hand_over(self._record, job_id, Step(step, total, elapsed_s, time.monotonic()))

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        self._hand_over(self._previews.__setitem__, job_id, list(images))

    def finished(self, job_id: int) -> None:
        self._hand_over(self._record, job_id, None)

    def _hand_over(self, *call: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(*call)  # type: ignore[arg-type]

    # -- on the loop ----------------------------------------------------------------------------

    def _record(self, job_id: int, step: Step | None) -> None:
        if step is None:
            self._steps.pop(job_id, None)
            self._previews.pop(job_id, None)
        else:
            self._steps[job_id] = step
        event = self._changed.pop(job_id, None)
        if event is not None:
            event.set()

    def preview_of(self, job_id: int) -> list[Image.Image] | None:
        """The latest preview images of a running job, if it made any yet."""
        return self._previews.get(job_id)

    def step_of(self, job_id: int) -> Step | None:
        """The latest step of a running job (``None`` before its first step, or once it ended)."""
        return self._steps.get(job_id)

    async def wait_for_change(self, job_id: int, *, timeout: float) -> bool:
        """Wait until the job reports a step or ends, at most ``timeout`` seconds; ``True`` if it did."""
        event = self._changed.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
