"""Real Redis servers and ``main.py worker`` processes on loopback, for the scale-out tests.

Each test starts its own ``redis-server`` (Debian's package; skipped with the reason where it is
not installed) with no persistence, so a restart loses everything in it, the worst case. Worker
processes run the tiny model on the CPU with one thread each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_MISSING = "redis-server is not installed (Debian: apt-get install redis-server)"
WORKER_TIMEOUT_S = 4
"""NANKE_WORKER_TIMEOUT of the tests: a killed worker's batch goes elsewhere after this."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 90.0, what: str = "a condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class RedisServer:
    """A ``redis-server`` of the test's own on 127.0.0.1, stopped and started at will (same port)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(REDIS_MISSING)
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_until(self._answers, timeout=20, what="redis-server to answer")
        return self

    def stop(self) -> None:
        """Stop it hard: everything it held is lost (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=5)


def worker_env(redis_url: str, model_dir: Path, data_dir: Path, name: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NANKE_BROKER_URL": redis_url,
        "NANKE_MODEL": str(model_dir),
        "NANKE_DATA_DIR": str(data_dir),
        "NANKE_DEVICE": "cpu",
        "NANKE_WORKER_NAME": name,
        "NANKE_WORKER_TIMEOUT": str(WORKER_TIMEOUT_S),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WorkerProcess:
    """``python main.py worker`` named ``name``, its output in ``<folder>/<name>.log``."""

    def __init__(self, name: str, *, redis: RedisServer, model_dir: Path, folder: Path) -> None:
        self.name = name
        self.redis = redis
        self.model_dir = model_dir
        self.folder = folder
        self.log = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        output = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "worker"],
            cwd=self.folder,
            env=worker_env(self.redis.url, self.model_dir, self.folder / f"{self.name}-data", self.name),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        output.close()
        return self

    def announced(self) -> dict | None:
        """Its announcement in Redis, once this process made it."""
        try:
            raw = self.redis.client().get(f"nanke:worker:{self.name}")
        except Exception:
            return None
        status = json.loads(raw) if raw else None
        if status and self.process is not None and status["pid"] == self.process.pid:
            return status
        return None

    def wait_ready(self, timeout: float = 90.0) -> WorkerProcess:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited: {self.log.read_text()[-2000:]}")
            return self.announced() is not None

        wait_until(ready, timeout, f"worker {self.name} to announce itself")
        return self

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """``kill -9``: no clean shutdown, the batch it runs is never acknowledged."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
