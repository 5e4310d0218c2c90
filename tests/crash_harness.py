"""The crash-and-fault harness: ``main.py run`` against the Discord double, killed with SIGKILL at
adversarial moments while Discord misbehaves, then checked for lost, duplicated and stuck jobs.

Members send ``/imagine``; a share of the REST calls fail (5xx, 429, connections dropped before
or after Discord applied them); some interaction tokens are refused as expired; the gateway is
cut now and then; and the bot process is killed during generation, just before and just after a
result upload is accepted, and just before and just after an interaction is acknowledged. After
the last kill the faults stop and the bot gets one clean run to catch up. Then, by the database
and by what the double holds:

- **lost**: an interaction the bot acknowledged (the member saw "thinking…") without a job;
- **duplicated**: a job whose result was posted more than once;
- **stuck**: a job not finished, not recorded as delivered, or with no result message;
- **mismatched**: a posted image that is not the stored one, or a delivery that records another
  message than the one posted.

The test suite runs it small (``tests/test_crash_harness.py``); a bigger run::

    python -m tests.crash_harness --jobs 90 --kills 36 --faults 0.15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import random
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.discord_double import DiscordDouble, InteractionRecord
from tests.discord_double.moments import (
    APPLIED,
    RECEIVED,
    RESPONDED,
    is_file_post,
    is_interaction_callback,
)
from tests.helpers_process import start_process, stop_process

log = logging.getLogger(__name__)

PROMPT = "a red fox in snow --steps 12 --size 96x96"
SLOW_PROMPT = "a red fox in deep snow --steps 60 --size 192x192"
MOMENTS: tuple[str, ...] = (
    "generating",
    "before a result upload is accepted",
    "after a result upload is applied",
    "after a result upload is answered",
    "before an interaction is acknowledged",
    "after an interaction is acknowledged",
)
HOLDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "before a result upload is accepted": (RECEIVED, is_file_post),
    "after a result upload is applied": (APPLIED, is_file_post),
    "after a result upload is answered": (RESPONDED, is_file_post),
    "before an interaction is acknowledged": (RECEIVED, is_interaction_callback),
    "after an interaction is acknowledged": (APPLIED, is_interaction_callback),
}
MOMENT_TIMEOUT = 60.0


@dataclass
class Report:
    jobs: int = 0
    commands: int = 0
    kills: int = 0
    kills_by_moment: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    expired_tokens: int = 0
    gateway_cuts: int = 0
    unanswered: int = 0
    """Commands the bot never acknowledged (it was down): Discord tells the member it failed."""
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck or self.mismatched)


class Harness:
    """One run: the double, the bot process and its data folder."""

    def __init__(
        self,
        double: DiscordDouble,
        data_dir: Path,
        model_dir: Path,
        *,
        jobs: int,
        kills: int,
        fault_rate: float,
        seed: int = 0,
        log_file: Path | None = None,
    ) -> None:
        self.double = double
        self.data_dir = data_dir
        self.model_dir = model_dir
        self.jobs = jobs
        self.kills = kills
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.seed = seed
        self.log_file = log_file
        self.report = Report()
        self.commands: list[InteractionRecord] = []
        self.members = [double.user("alice"), double.add_user("bob"), double.add_user("carol")]
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> Report:
        started = time.monotonic()
        await self._start()
        self.double.chaos(self.fault_rate, seed=self.seed)
        try:
            moments = [MOMENTS[n % len(MOMENTS)] for n in range(self.kills)]
            per_round = max(1, self.jobs // max(1, self.kills + 1))
            for round_number, moment in enumerate(moments):
                await self._send(per_round)
                if round_number % 3 == 1:
                    await self._cut_gateway()  # while the bot works
                await self._kill_at(moment)
                await self._disturb()
                await self._start()
            await self._send(self.jobs - len(self.commands))
        finally:
            self.double.stop_chaos()
            self.double.moments.release_all()
        await self._catch_up()
        self.report.seconds = round(time.monotonic() - started, 1)
        self._check()
        return self.report

    # -- driving --------------------------------------------------------------------------------

    async def _start(self) -> None:
        self.process = await start_process(
            self.double,
            self.data_dir,
            self.model_dir,
            extra_env={"NANKE_MAX_QUEUED_PER_USER": "1000", "NANKE_LOG_LEVEL": "INFO"},
            log=self.log_file,
        )

    async def _send(self, count: int, *, prompt: str = PROMPT) -> None:
        for _ in range(max(0, count)):
            member = self.random.choice(self.members)
            command = await self.double.send_slash_command(
                name="imagine", options={"prompt": prompt}, user=member
            )
            self.commands.append(command)
            await asyncio.sleep(self.random.uniform(0.0, 0.3))

    async def _kill_at(self, moment: str) -> None:
        if moment == "generating":
            # Watch first, then ask for a job long enough to be caught while it runs
            running = asyncio.create_task(
                self._until(lambda: self._running_jobs() > 0, timeout=MOMENT_TIMEOUT)
            )
            await self._send(1, prompt=SLOW_PROMPT)
            await running
            await self._kill(moment)
            return
        phase, accepts = HOLDS[moment]
        async with self.double.hold(phase, accepts) as hold:
            if accepts is is_interaction_callback:
                await self._send(1)  # an interaction to catch
            try:
                await hold.wait(timeout=MOMENT_TIMEOUT)
            except TimeoutError:
                log.warning("no call reached the moment %r in time; killing anyway", moment)
            await self._kill(moment)

    async def _kill(self, moment: str) -> None:
        assert self.process is not None
        await stop_process(self.process, signal.SIGKILL)
        self.report.kills += 1
        self.report.kills_by_moment[moment] = self.report.kills_by_moment.get(moment, 0) + 1

    async def _disturb(self) -> None:
        """Between runs: refuse some acknowledged interactions' tokens as expired."""
        acknowledged = [c for c in self.commands if c.response is not None]
        chosen = self.random.sample(acknowledged, k=min(len(acknowledged), 1 + len(acknowledged) // 10))
        for command in chosen:
            self.report.expired_tokens += len(self.double.expire_token(command))

    async def _cut_gateway(self) -> None:
        self.report.gateway_cuts += self.double.drop_gateway()

    async def _catch_up(self) -> None:
        """No more faults: one clean restart, then wait until every job is delivered."""
        assert self.process is not None
        await stop_process(self.process, signal.SIGKILL)
        await self._start()
        await self._cut_gateway()  # a cut with nothing else going on: the bot must resume
        try:
            await self._until(self._settled, timeout=120.0 + 3.0 * self.jobs)
        except TimeoutError:
            log.warning("the bot did not settle in time; reporting what is left")
        await stop_process(self.process)

    async def _until(self, condition: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s")
            await asyncio.sleep(0.02)

    # -- reading the outcome --------------------------------------------------------------------

    def _rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        database = self.data_dir / "nanke.db"
        if not database.exists():
            return []
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
            return connection.execute(query, args).fetchall()

    def _running_jobs(self) -> int:
        return self._rows("SELECT count(*) FROM jobs WHERE status = 'running'")[0][0]

    def _settled(self) -> bool:
        unsettled = self._rows(
            "SELECT count(*) FROM jobs LEFT JOIN deliveries ON deliveries.job_id = jobs.id "
            "WHERE jobs.status IN ('queued', 'running') OR deliveries.status IS NOT 'delivered'"
        )
        return unsettled[0][0] == 0

    def _check(self) -> None:
        report = self.report
        report.commands = len(self.commands)
        report.faults = dict(self.double.fault_counts())
        jobs = {
            job_id: (status, token, delivery_status, message_id)
            for job_id, status, token, delivery_status, message_id in self._rows(
                "SELECT jobs.id, jobs.status, deliveries.interaction_token, deliveries.status, "
                "deliveries.result_message_id FROM jobs JOIN deliveries ON deliveries.job_id = jobs.id"
            )
        }
        report.jobs = len(jobs)
        tokens = {token for _, token, _, _ in jobs.values()}
        for command in self.commands:
            if command.response is None:
                report.unanswered += 1
            elif command.token not in tokens:
                report.lost.append(command.id)
        posted = self._results_by_job()
        for job_id, (status, _, delivery_status, message_id) in sorted(jobs.items()):
            messages = posted.get(job_id, [])
            if len(messages) > 1:
                report.duplicated.append(job_id)
            if status in ("queued", "running") or delivery_status != "delivered" or not messages:
                report.stuck.append(job_id)
            elif message_id != messages[0].id or (
                status == "done" and not self._matches_stored(job_id, messages[0])
            ):
                report.mismatched.append(job_id)

    def _results_by_job(self) -> dict[int, list[Any]]:
        found: dict[int, list[Any]] = {}
        for message in self.double.messages():
            job_id = _result_job(message)
            if job_id is not None:
                found.setdefault(job_id, []).append(message)
        return found

    def _matches_stored(self, job_id: int, message: Any) -> bool:
        rows = self._rows('SELECT path FROM images WHERE job_id = ? ORDER BY "index"', job_id)
        if len(rows) != 1 or not message.attachments:
            return bool(rows) and bool(message.attachments)
        stored = Image.open(self.data_dir / "images" / rows[0][0]).convert("RGB")
        posted = Image.open(io.BytesIO(message.attachments[0].data)).convert("RGB")
        return np.array_equal(np.asarray(stored), np.asarray(posted))


def _result_job(message: Any) -> int | None:
    """The job a posted result belongs to: by its 🗑 button, or a failure's closing tag."""
    for custom_id in message.custom_ids():
        if custom_id.startswith("nk:delete:"):
            return int(custom_id.rsplit(":", 1)[1])
    content = message.content or ""
    if not message.components and " · job #" in content and ("❌ Cancelled" in content or "⚠️" in content):
        return int(content.rsplit("#", 1)[1])
    return None


async def run_harness(double: DiscordDouble, data_dir: Path, model_dir: Path, **options: Any) -> Report:
    return await Harness(double, data_dir, model_dir, **options).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Crash-and-fault run of main.py run against the Discord double."
    )
    parser.add_argument("--jobs", type=int, default=90)
    parser.add_argument("--kills", type=int, default=36)
    parser.add_argument("--faults", type=float, default=0.15, help="share of REST calls that fail")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, help="append the bot's log here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def go() -> Report:
        from pipeline.engine.testmodel import make_test_model

        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            model_dir = make_test_model(root / "tiny")
            async with DiscordDouble() as double:
                return await run_harness(
                    double,
                    root / "data",
                    model_dir,
                    jobs=args.jobs,
                    kills=args.kills,
                    fault_rate=args.faults,
                    seed=args.seed,
                    log_file=args.log,
                )

    report = asyncio.run(go())
    print(json.dumps({**asdict(report), "clean": report.clean}, indent=2))
    raise SystemExit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
