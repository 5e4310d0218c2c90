"""The crash-and-fault harness, CI-sized: ``main.py run`` killed at every adversarial moment while
Discord fails a share of calls, and not one job lost, duplicated or stuck.

Sizes come from ``NANKE_CRASH_JOBS``, ``NANKE_CRASH_KILLS`` and ``NANKE_CRASH_FAULTS`` (defaults:
12 jobs, 6 kills, 15 % faults); ``python -m tests.crash_harness`` runs the full-size scenario.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.crash_harness import MOMENTS, run_harness
from tests.discord_double import DiscordDouble

pytest_plugins = ["tests.discord_double.fixtures"]


@pytest.mark.slow
async def test_no_job_is_lost_duplicated_or_stuck_under_kills_and_faults(
    discord_double: DiscordDouble, tmp_path: Path, tiny_model_dir: Path
) -> None:
    kills = int(os.environ.get("NANKE_CRASH_KILLS", len(MOMENTS)))
    report = await run_harness(
        discord_double,
        tmp_path / "data",
        tiny_model_dir,
        jobs=int(os.environ.get("NANKE_CRASH_JOBS", "12")),
        kills=kills,
        fault_rate=float(os.environ.get("NANKE_CRASH_FAULTS", "0.15")),
        log_file=tmp_path / "bot.log",
    )
    summary = json.dumps(asdict(report), indent=1)
    assert report.kills == kills and set(report.kills_by_moment) == set(MOMENTS[:kills]), summary
    assert sum(report.faults.values()) > 0, summary
    assert (report.lost, report.duplicated, report.stuck, report.mismatched) == ([], [], [], []), summary
    assert report.jobs >= report.commands - report.unanswered, summary
