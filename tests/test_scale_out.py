"""Scale-out on real servers: the bot's scheduler, two ``main.py worker`` processes and Redis.

Everything runs as an admin would run it, on loopback: ``main.py run`` against the Discord
double with NANKE_BROKER_URL, two GPU workers (the tiny model, on the CPU) and a Redis of the
test's own with no persistence. A worker is killed with SIGKILL mid-batch, another is frozen
with SIGSTOP, Redis is killed and started again empty, the bot is stopped while workers are busy:
every job still completes exactly once. The run through Discord is made on PostgreSQL (a server
of the tests' own, see ``fixtures_postgres``; the same run on SQLite is two lines away: the
``backend`` parameter), the faults in this process on SQLite.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from pipeline.app import App
from pipeline.domain.request import GenerationRequest
from pipeline.queue.jobs import Requester
from pipeline.queue.worker import WorkerEvents
from pipeline.settings import load_settings
from tests.discord_double import DiscordDouble
from tests.helpers_process import start_process, stop_process, until
from tests.helpers_remote import WORKER_TIMEOUT_S, RedisServer, WorkerProcess, wait_until
from tests.helpers_services import has_image

pytest_plugins = ["tests.discord_double.fixtures", "tests.fixtures_postgres"]

MEMBERS = 4
JOBS_EACH = 5
SENT = re.compile(r"dispatch \w+: jobs \[([\d, ]+)\] sent to worker")


class _Rows:
    """The bot's database, read from outside the process (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)

    def __call__(self, query: str, **values: object) -> list[tuple]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query), values)]

    def count(self, status: str) -> int:
        return self("SELECT count(*) FROM jobs WHERE status = :status", status=status)[0][0]

    def on(self, worker: str, status: str) -> int:
        query = "SELECT count(*) FROM jobs WHERE worker = :worker AND status = :status"
        return self(query, worker=worker, status=status)[0][0]


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def workers(redis_server: RedisServer, tiny_model_dir: Path, tmp_path: Path):
    made = [
        WorkerProcess(name, redis=redis_server, model_dir=tiny_model_dir, folder=tmp_path)
        for name in ("gpu-a", "gpu-b")
    ]
    yield made
    for worker in made:
        worker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite: the test below
async def test_twenty_jobs_of_four_members_complete_once_through_a_worker_kill_and_a_redis_restart(
    discord_double: DiscordDouble,
    redis_server: RedisServer,
    workers: list[WorkerProcess],
    database_url: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    bot_log = tmp_path / "bot.log"
    rows = _Rows(database_url)
    settings = {
        "DATABASE_URL": database_url,
        "NANKE_BROKER_URL": redis_server.url,
        "NANKE_WORKER_TIMEOUT": str(WORKER_TIMEOUT_S),
        "NANKE_MAX_BATCH": "2",
        "NANKE_MAX_QUEUED_PER_USER": str(JOBS_EACH),
    }
    bot = await start_process(discord_double, data_dir, tiny_model_dir, extra_env=settings, log=bot_log)
    try:
        # 1. Four members queue five jobs each, one member after another, before any worker is up
        members = [discord_double.add_user(f"member{number}") for number in range(MEMBERS)]
        for member in members:
            for number in range(JOBS_EACH):
                prompt = f"{member.username} fox {number} --steps 30 --size 192x192 --seed {number}"
                command = await discord_double.send_slash_command(
                    user=member, name="imagine", options={"prompt": prompt}
                )
                assert (await command.wait_for_response()).type == 5
        await until(lambda: rows.count("queued") == MEMBERS * JOBS_EACH)

        # 2. Two workers start; the first batches are fair: one job of each member
        first = workers[0]
        for worker in workers:
            worker.start()
        for worker in workers:
            await asyncio.to_thread(worker.wait_ready)
        await until(lambda: len(SENT.findall(bot_log.read_text())) >= 2)
        opened = [int(job) for match in SENT.findall(bot_log.read_text())[:2] for job in match.split(", ")]
        assert sorted((job - 1) // JOBS_EACH for job in opened) == [0, 1, 2, 3], opened

        # 3. kill -9 a worker that has finished a batch, in the middle of its next one
        await until(lambda: rows.on("gpu-a", "done") > 0 and rows.on("gpu-a", "running") > 0)
        first.kill()

        # 4. Redis is killed (losing all it held) while the other worker runs, then started again
        await until(lambda: rows.on("gpu-b", "running") > 0 and rows.count("queued") > 0)
        redis_server.stop()
        await asyncio.sleep(2)
        redis_server.start()

        # 5. Every job is done exactly once, and delivered once
        await until(lambda: rows.count("done") == MEMBERS * JOBS_EACH, timeout=240)
    finally:
        await stop_process(bot)

    images = rows("SELECT job_id, count(*) FROM images GROUP BY job_id")
    assert sorted(images) == [(job, 1) for job in range(1, MEMBERS * JOBS_EACH + 1)]
    makers = Counter(worker for (worker,) in rows("SELECT worker FROM jobs"))
    assert set(makers) == {"gpu-a", "gpu-b"}, makers
    delivered = [message for message in discord_double.messages() if has_image(message)]
    prompts = Counter(
        match.group(0)
        for message in delivered
        for match in [re.search(r"member\d fox \d", message.content)]
        if match
    )
    assert len(delivered) == MEMBERS * JOBS_EACH and set(prompts.values()) == {1}, prompts
    assert "back to the queue" in bot_log.read_text(), "the killed worker's batch was given to another"


def _app(redis_server: RedisServer, model_dir: Path, data_dir: Path) -> App:
    """The bot's side (database, scheduler, dispatcher) in this process, as ``main.py run`` builds it."""
    environ = {
        "NANKE_BROKER_URL": redis_server.url,
        "NANKE_MODEL": str(model_dir),
        "NANKE_DATA_DIR": str(data_dir),
        "NANKE_WORKER_TIMEOUT": str(WORKER_TIMEOUT_S),
        "NANKE_MAX_BATCH": "1",
    }
    return App(load_settings(environ, dotenv=None)).open()


def _submit(app: App, count: int, *, long: bool = False, first_seed: int = 0) -> list[int]:
    """``count`` jobs of the members in turn; ``long`` ones run for several seconds on a worker."""
    size, steps = (192, 100) if long else (128, 4)
    return [
        app.jobs.submit(
            GenerationRequest(prompt=f"fox {seed}", width=size, height=size, steps=steps, seed=seed),
            requester=Requester(name=f"member{seed % MEMBERS}"),
        ).id
        for seed in range(first_seed, first_seed + count)
    ]


def _all_done(app: App, job_ids: list[int]) -> bool:
    return all(app.jobs.get(job_id).status == "done" for job_id in job_ids)


def _once_each(app: App, job_ids: list[int]) -> None:
    for job_id in job_ids:
        job = app.jobs.get(job_id)
        assert job.status == "done" and len(job.images) == 1, job


class _Heard(WorkerEvents):
    """What the bot's side hears of the workers' progress."""

    def __init__(self) -> None:
        self.steps: set[int] = set()
        self.previews: set[int] = set()

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self.steps.add(job_id)

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        assert images and all(image.width > 0 for image in images)
        self.previews.add(job_id)


@pytest.mark.slow
def test_jobs_wait_out_redis_a_bot_restart_and_a_frozen_worker(
    redis_server: RedisServer, workers: list[WorkerProcess], tiny_model_dir: Path, tmp_path: Path
) -> None:
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    app = _app(redis_server, tiny_model_dir, tmp_path / "bot")
    dispatcher = app.worker()
    dispatcher.recover()
    dispatcher.start()
    try:
        # 1. Redis down: jobs are queued in the database and wait; when it is back they run
        redis_server.stop()
        waiting = _submit(app, 4)
        time.sleep(3)
        assert {app.jobs.get(job_id).status for job_id in waiting} == {"queued"}
        redis_server.start()
        wait_until(lambda: _all_done(app, waiting), what="the jobs queued while Redis was down")
        _once_each(app, waiting)

        # 2. The bot stops while both workers are busy; started again, it stores their results
        busy = _submit(app, 2, long=True, first_seed=10)
        wait_until(
            lambda: sum(app.jobs.get(job_id).status == "running" for job_id in busy) == 2,
            what="both workers to be busy",
        )
        dispatcher.stop()
        assert sum(app.jobs.get(job_id).status == "running" for job_id in busy) == 2
        app.close()
        app = _app(redis_server, tiny_model_dir, tmp_path / "bot")
        heard = _Heard()
        dispatcher = app.worker(events=heard)
        dispatcher.recover()
        dispatcher.start()
        wait_until(lambda: _all_done(app, busy), what="the jobs that ran while the bot was down")
        _once_each(app, busy)
        assert heard.steps == set(busy) and heard.previews == set(busy), "progress and previews come back"

        # 3. A worker freezes (SIGSTOP) mid-batch: its batch goes to the other; thawed, its late
        #    result is not stored again, and it takes batches again
        frozen = _submit(app, 2, long=True, first_seed=20)
        running_on_a = lambda: next(  # noqa: E731
            (job for job in map(app.jobs.get, frozen) if job.status == "running" and job.worker == "gpu-a"),
            None,
        )
        victim = wait_until(running_on_a, what="a job running on gpu-a")
        workers[0].signal(signal.SIGSTOP)
        wait_until(lambda: _all_done(app, frozen), timeout=120, what="the frozen worker's batch elsewhere")
        assert app.jobs.get(victim.id).worker == "gpu-b"
        workers[0].signal(signal.SIGCONT)
        wait_until(
            lambda: (status := workers[0].announced()) and status["task"] is None,
            what="the thawed worker to finish its stale batch",
        )
        _once_each(app, frozen)
        later = _submit(app, 2, first_seed=30)
        wait_until(lambda: _all_done(app, later), what="jobs after the thaw")
        _once_each(app, [*waiting, *busy, *frozen, *later])
    finally:
        dispatcher.stop()
        app.close()
