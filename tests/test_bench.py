"""The benchmarks run (a smoke test on the tiny model: their figures are only printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "images_per_s",
    "diffusers_1_per_call_images_per_s",
    "diffusers_4_per_call_images_per_s",
    "nanke_vs_diffusers_4_per_call",
    "burst_latency_p95_s",
    "poisson_latency_p95_s",
    "first_progress_p50_s",
    "idle_grid_s",
    "outside_gpu_share",
    "batched_vs_alone_mean_255",
    "batched_vs_alone_max_255",
)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_throughput_measures_nanke_and_plain_diffusers_in_one_run(tmp_path: Path) -> None:
    figures_file = tmp_path / "throughput.json"
    done = bench(
        "bench.throughput", "--arch", "tiny", "--device", "cpu", "--members", "2", "--steps", "2",
        "--size", "64", "--baseline-images", "4", "--json", str(figures_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures_file.read_text())
    assert all(figures[name] >= 0 for name in FIGURES), figures
    assert "nanke / diffusers at 4 per call" in done.stdout


@pytest.mark.slow
def test_batching_benchmark_prints_its_ratio() -> None:
    done = bench("bench.batching", "--arch", "tiny", "--device", "cpu", "--requests", "4", "--steps", "2",
                 "--size", "64", "--repeats", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "speed-up from batching:" in done.stdout
