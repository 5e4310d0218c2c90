"""Running ``python main.py run`` as a separate process against the Discord double, and reading
its database from outside (the process tests and the crash harness share these)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from tests.discord_double import DiscordDouble
from tests.discord_double.client import DEFAULT_TOKEN

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90.0


async def start_process(
    double: DiscordDouble,
    data_dir: Path,
    model_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start ``main.py run`` and wait until it is connected and has synced its commands; with
    ``log``, its output is appended to that file."""
    env = {
        **os.environ,
        "DISCORD_TOKEN": DEFAULT_TOKEN,
        "DISCORD_API_BASE": double.api_base,
        "DISCORD_GATEWAY_URL": double.gateway_url,
        "NANKE_MODEL": str(model_dir),
        "NANKE_DATA_DIR": str(data_dir),
        "NANKE_DEVICE": "cpu",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    connected = len(double.gateway.sessions)
    output = log.open("ab") if log is not None else None
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "main.py"),
            "run",
            cwd=data_dir.parent,
            env=env,
            stdout=output if output is not None else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if output is not None else asyncio.subprocess.DEVNULL,
        )
    finally:
        if output is not None:
            output.close()
    await double.wait_for(
        lambda: (len(double.gateway.sessions) > connected and double.commands.list(None)) or None,
        timeout=TIMEOUT,
    )
    return process


async def stop_process(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if process.returncode is None:
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


def delivered(data_dir: Path, job_id: int) -> bool:
    """Whether the process has recorded job ``job_id`` as delivered (read from its database)."""
    with sqlite3.connect(data_dir / "nanke.db") as connection:
        row = connection.execute("SELECT status FROM deliveries WHERE job_id = ?", (job_id,)).fetchone()
    return row is not None and row[0] == "delivered"


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` (state outside the double, such as the process's database)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s")
        await asyncio.sleep(0.1)
