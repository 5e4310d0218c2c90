"""Images per second through nanke's real queue, against plain diffusers, measured in one run.

    python -m bench.throughput --arch sd1 --device cuda --members 32        # the issue's scenario
    python -m bench.throughput --arch tiny --device cpu --members 2 --steps 2 --size 64   # smoke test

Both sides load the same diffusers folder (random weights of the real SD 1.5 or SDXL architecture:
the real compute). nanke's side is its real scheduler, worker, executor and engine (everything but
Discord): ``--members`` members each ask for ``--requests`` 4-image grids, first all at once (a
burst), then arriving at random (Poisson) at about 80 % of the burst's rate; then one grid on an
idle queue. Plain diffusers generates the same images at 1 and at 4 images per call. Printed: a
table, and with ``--json`` the same figures as JSON (images/s, request latency p50/p95, time to
first progress, the idle grid's latency, the share of wall time outside the GPU calls, ratios,
and how far batched images are from the same requests generated alone).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.models import model_folder
from pipeline.app import App
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.devices import pick_device, pick_dtype
from pipeline.queue.jobs import Requester
from pipeline.queue.worker import WorkerEvents
from pipeline.settings import load_settings

GRID = 4
SAMPLER = "DPM++ 2M"


@dataclass
class Clock(WorkerEvents):
    """When each job was submitted, made its first step, and finished; and the GPU calls' time."""

    submitted: dict[int, float] = field(default_factory=dict)
    first_step: dict[int, float] = field(default_factory=dict)
    finished_at: dict[int, float] = field(default_factory=dict)
    gpu_s: float = 0.0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self.first_step.setdefault(job_id, time.perf_counter())

    def finished(self, job_id: int) -> None:
        with self.changed:
            self.finished_at[job_id] = time.perf_counter()
            self.changed.notify_all()

    def wait(self, job_ids: Sequence[int], timeout: float = 3600.0) -> None:
        with self.changed:
            done = self.changed.wait_for(lambda: all(j in self.finished_at for j in job_ids), timeout)
        if not done:
            raise SystemExit(f"only {len(self.finished_at)} of {len(job_ids)} jobs finished in {timeout:g} s")


def grid(prompt: str, *, side: int, steps: int, seed: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, width=side, height=side, steps=steps, sampler=SAMPLER, seed=seed, count=GRID
    )


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run_nanke(app: App, args: argparse.Namespace) -> dict[str, Any]:
    """Burst, Poisson and idle runs through the real queue and worker."""
    clock = Clock()
    original = Engine.generate

    def timed_generate(self: Engine, *a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            _sync(self.device)
            clock.gpu_s += time.perf_counter() - started

    Engine.generate = timed_generate  # type: ignore[method-assign]
    worker = app.worker(events=clock, poll_interval=0.05)
    worker.start()
    try:
        clock.gpu_s = 0.0
        burst = _submit_all(app, clock, args, phase="burst")
        started = min(clock.submitted[j] for j in burst)
        clock.wait(burst)
        wall = max(clock.finished_at[j] for j in burst) - started
        burst_gpu_s = clock.gpu_s
        rate = len(burst) * GRID / wall
        poisson = _submit_poisson(app, clock, args, per_s=0.8 * rate / GRID)
        clock.wait(poisson)
        idle = _submit(app, clock, "an idle queue", member=0, args=args, seed=99_999)
        clock.wait([idle])
    finally:
        worker.stop(timeout=600)
        Engine.generate = original  # type: ignore[method-assign]

    def latencies(ids: Sequence[int]) -> list[float]:
        return [clock.finished_at[j] - clock.submitted[j] for j in ids]

    firsts = [clock.first_step[j] - clock.submitted[j] for j in burst if j in clock.first_step]
    return batch_identity(app, burst) | {
        "images_per_s": rate,
        "burst_latency_p50_s": percentile(latencies(burst), 0.5),
        "burst_latency_p95_s": percentile(latencies(burst), 0.95),
        "poisson_latency_p50_s": percentile(latencies(poisson), 0.5),
        "poisson_latency_p95_s": percentile(latencies(poisson), 0.95),
        "first_progress_p50_s": percentile(firsts, 0.5),
        "idle_grid_s": latencies([idle])[0],
        "outside_gpu_share": max(0.0, (wall - burst_gpu_s) / wall),
    }


def batch_identity(app: App, job_ids: Sequence[int], *, jobs: int = 4) -> dict[str, float]:
    """The stored images of the first ``jobs`` burst jobs (each made in a shared batch) against
    the same requests generated alone: mean and largest absolute difference, in levels of 255."""
    import numpy as np

    engine = app.engines.engine_for(None)
    differences = []
    for job_id in job_ids[:jobs]:
        job = app.jobs.get(job_id)
        [alone] = engine.generate([job.request])
        for stored, made in zip(app.jobs.images.load(job), alone.images, strict=True):
            kept = np.asarray(stored.convert("RGB"), dtype=np.int16)
            differences.append(np.abs(kept - np.asarray(made.image, dtype=np.int16)).ravel())
    every = np.concatenate(differences)
    return {"batched_vs_alone_mean_255": float(every.mean()), "batched_vs_alone_max_255": int(every.max())}


def _submit(app: App, clock: Clock, prompt: str, *, member: int, args: argparse.Namespace, seed: int) -> int:
    request = grid(prompt, side=args.size, steps=args.steps, seed=seed)
    clock.submitted[-1] = time.perf_counter()
    job = app.jobs.submit(request, requester=Requester(name=f"member-{member}", discord_id=member + 1))
    clock.submitted[job.id] = clock.submitted.pop(-1)
    return job.id


def _submit_all(app: App, clock: Clock, args: argparse.Namespace, *, phase: str) -> list[int]:
    return [
        _submit(app, clock, f"{phase} {member}.{n}", member=member, args=args, seed=1000 * member + n)
        for n in range(args.requests)
        for member in range(args.members)
    ]


def _submit_poisson(app: App, clock: Clock, args: argparse.Namespace, *, per_s: float) -> list[int]:
    arrivals = random.Random(7)
    ids = []
    for n in range(args.members * args.requests):
        time.sleep(arrivals.expovariate(per_s))
        ids.append(_submit(app, clock, f"poisson {n}", member=n % args.members, args=args, seed=50_000 + n))
    return ids


def run_diffusers(
    folder: Path, device: torch.device, dtype: torch.dtype, args: argparse.Namespace
) -> dict[str, Any]:
    """Plain diffusers on the same folder and settings, at 1 and 4 images per call."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if args.arch == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(folder, dtype=dtype).to(device)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = max(GRID, args.baseline_images)
    figures = {}
    for per_call in (1, GRID):
        call = {"height": args.size, "width": args.size, "num_inference_steps": args.steps}
        pipe(["warm-up"] * per_call, **call)
        _sync(device)
        started = time.perf_counter()
        for n in range(images // per_call):
            pipe([f"a lighthouse {n}.{i}" for i in range(per_call)], **call)
        _sync(device)
        figures[f"diffusers_{per_call}_per_call_images_per_s"] = (images // per_call * per_call) / (
            time.perf_counter() - started
        )
    return figures


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=("tiny", "sd1", "sdxl"), default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1, help="4-image grids per member in each run")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="square side (default 512, SDXL 1024)")
    parser.add_argument("--baseline-images", type=int, default=32, help="images plain diffusers makes")
    parser.add_argument("--tuning", default="", help="NANKE_GPU_TUNING for nanke's side")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.size = args.size or (1024 if args.arch == "sdxl" else 512)

    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    with tempfile.TemporaryDirectory() as cache:
        folder = model_folder(args.arch, Path(cache), dtype=dtype)
        settings = load_settings(
            {
                "NANKE_DATA_DIR": str(Path(cache) / "data"),
                "NANKE_MODEL": str(folder),
                "NANKE_DEVICE": str(device),
                "NANKE_DTYPE": args.dtype,
                "NANKE_MAX_QUEUED_PER_USER": "1000",
                "NANKE_JOB_TIMEOUT": "0",
                "NANKE_GPU_TUNING": args.tuning,
            },
            dotenv=None,
        )
        app = App(settings).open()
        engine = app.engines.engine_for(None)
        engine.warm_up()
        figures = {"arch": args.arch, "size": args.size, "steps": args.steps, "sampler": SAMPLER}
        figures.update(engine.environment)
        figures.update(run_nanke(app, args))
        app.close()
        figures.update(run_diffusers(folder, device, dtype, args))
    figures["nanke_vs_diffusers_4_per_call"] = (
        figures["images_per_s"] / figures["diffusers_4_per_call_images_per_s"]
    )
    figures["nanke_vs_diffusers_1_per_call"] = (
        figures["images_per_s"] / figures["diffusers_1_per_call_images_per_s"]
    )
    _print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")


def _print_table(figures: dict[str, Any]) -> None:
    print(
        f"{figures['arch']} {figures['size']}x{figures['size']}, {figures['steps']} steps, {SAMPLER}, "
        f"{figures.get('device_name', figures.get('device'))} {figures.get('dtype')}"
    )
    rows = [
        ("nanke images/s (burst)", "images_per_s"),
        ("plain diffusers, 1 per call", "diffusers_1_per_call_images_per_s"),
        ("plain diffusers, 4 per call", "diffusers_4_per_call_images_per_s"),
        ("nanke / diffusers at 4 per call", "nanke_vs_diffusers_4_per_call"),
        ("burst latency p50 / p95 (s)", ("burst_latency_p50_s", "burst_latency_p95_s")),
        ("Poisson latency p50 / p95 (s)", ("poisson_latency_p50_s", "poisson_latency_p95_s")),
        ("first progress p50 (s)", "first_progress_p50_s"),
        ("idle 4-image grid (s)", "idle_grid_s"),
        ("wall time outside GPU calls", "outside_gpu_share"),
        ("batched vs alone |Δ| mean / max", ("batched_vs_alone_mean_255", "batched_vs_alone_max_255")),
    ]
    for label, key in rows:
        value = (
            " / ".join(f"{figures[k]:.3f}" for k in key) if isinstance(key, tuple) else f"{figures[key]:.3f}"
        )
        print(f"  {label:<34} {value}")


if __name__ == "__main__":
    main()
