"""What ``main.py doctor`` checks: one :class:`Check` per part of the set-up, each with its fix.

Python, the PyTorch build against the GPU and its driver, free GPU memory, the data folder, the
database, every configured model (read far enough to tell it can load) and disk space. The
Discord token is the bot's to check (``bot.token_check``).
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Settings, SettingsError

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 10)
MIN_VRAM_GB = 4.0
"""About what SD 1.5 needs in fp16; SDXL wants 8."""
MIN_DISK_GB = 5.0
"""Room for a model download and a while of images."""
GB = 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``✓ name: detail`` or ``✗ name: detail → fix``."""
        mark = "✓" if self.ok else "✗"
        fix = f" → {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


def run_checks(settings: Settings) -> Iterator[Check]:
    """Every check, in order; each is independent of the others' outcome (one that breaks is a ✗)."""
    yield check_python()
    for name, checks in (
        ("PyTorch", lambda: check_torch(settings)),
        ("data folder", lambda: [check_data_dir(settings)]),
        ("database", lambda: [check_database(settings)]),
        ("GPU workers", lambda: [check_broker(settings)]),
        ("models", lambda: check_models(settings)),
        ("safety check", lambda: check_safety(settings)),
        ("disk", lambda: [check_disk(settings)]),
    ):
        try:
            yield from list(checks())
        except Exception as error:
            log.debug("the %s check broke", name, exc_info=True)
            yield Check(name, False, _first_line(str(error)) or type(error).__name__, "see main.py -v doctor")


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("Python", False, version, "install Python 3.10 or newer")
    return Check("Python", True, version)


def check_torch(settings: Settings) -> Iterator[Check]:
    """The PyTorch build, whether it sees the GPU the settings ask for, and the GPU's free memory."""
    try:
        import torch
    except ImportError as error:
        yield Check("PyTorch", False, f"not importable ({error})", "pip install -e . (see README: Hardware)")
        return
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
    driver = _nvidia_driver()
    if torch.version.cuda and not torch.cuda.is_available():
        if driver is not None:
            yield Check(
                "PyTorch",
                False,
                f"{torch.__version__} ({build}) cannot use the GPU with NVIDIA driver {driver}",
                "install an NVIDIA driver of version 580 or newer, or the PyTorch build for your driver "
                "(README: Hardware)",
            )
        else:
            yield Check(
                "PyTorch", True, f"{torch.__version__} ({build}); no NVIDIA GPU here: runs on the CPU"
            )
    elif not torch.version.cuda and driver is not None:
        yield Check(
            "PyTorch",
            False,
            f"{torch.__version__} ({build}) on a machine with an NVIDIA GPU (driver {driver})",
            "install the CUDA build of PyTorch (README: Hardware)",
        )
    else:
        yield Check("PyTorch", True, f"{torch.__version__} ({build})")
    yield _device_check(settings)
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        yield Check(
            "GPU memory",
            free / GB >= MIN_VRAM_GB,
            f"{free / GB:.1f} GB free of {total / GB:.1f} GB on {torch.cuda.get_device_name()}",
            "close other programs using the GPU (nvidia-smi), or set NANKE_LOW_VRAM=1",
        )


def _device_check(settings: Settings) -> Check:
    from pipeline.engine.devices import pick_device, pick_dtype
    from pipeline.errors import DeviceError

    try:
        device = pick_device(settings.device)
        dtype = pick_dtype(device, settings.dtype)
    except DeviceError as error:
        return Check("device", False, str(error), "set NANKE_DEVICE=auto")
    return Check(
        "device", True, f"{device} in {str(dtype).removeprefix('torch.')} (NANKE_DEVICE={settings.device})"
    )


def _nvidia_driver() -> str | None:
    """The NVIDIA driver's version, from ``nvidia-smi``, or ``None`` without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def check_data_dir(settings: Settings) -> Check:
    from pipeline.app import ensure_writable

    try:
        ensure_writable(settings.data_dir, setting="NANKE_DATA_DIR")
    except SettingsError as error:
        return Check(
            "data folder", False, error.problems[0], "set NANKE_DATA_DIR to a folder nanke may write"
        )
    return Check("data folder", True, f"{settings.data_dir.resolve()} is writable")


def check_database(settings: Settings) -> Check:
    from pipeline.queue.jobs import JobStore

    try:
        store = JobStore.open(database_url=settings.database_url, image_dir=settings.image_dir)
    except Exception as error:  # the folder of a SQLite file cannot be made
        return Check("database", False, _first_line(str(error)), "check DATABASE_URL and NANKE_DATA_DIR")
    try:
        current, head = store.revision(), store.head_revision()
    except Exception as error:  # a server down, a wrong password, a file that is not a database
        first = _first_line(str(error)) or type(error).__name__
        return Check(
            "database", False, f"{store.label}: {first}", "check DATABASE_URL and that the server runs"
        )
    finally:
        store.dispose()
    if current == head:
        return Check("database", True, f"{store.label} at revision {head}")
    state = "empty" if current is None else f"at revision {current}"
    return Check("database", True, f"{store.label} is {state}; `main.py run` upgrades it to {head} at start")


def check_broker(settings: Settings) -> Check:
    """With NANKE_BROKER_URL: whether its Redis answers, and which GPU workers announce themselves."""
    if not settings.broker_url:
        return Check("GPU workers", True, "embedded (NANKE_BROKER_URL is empty: batches run in this process)")
    from pipeline.queue.remote.fleet import Fleet

    fleet = Fleet(settings.broker_url, ttl_s=settings.worker_timeout_s)
    shown = _redacted(settings.broker_url)
    try:
        workers = fleet.workers()
    except Exception as error:
        first = _first_line(str(error)) or type(error).__name__
        return Check("GPU workers", False, f"{shown}: {first}", "start Redis, or fix NANKE_BROKER_URL")
    finally:
        fleet.close()
    if not workers:
        return Check(
            "GPU workers",
            True,
            f"{shown} answers; no worker is running yet (start `main.py worker` on a GPU box)",
        )
    names = ", ".join(f"{worker.name} ({worker.gpu})" for worker in workers)
    return Check("GPU workers", True, f"{shown} answers; {len(workers)} running: {names}")


def _redacted(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def check_models(settings: Settings) -> Iterator[Check]:
    """The default model, the upscaler and every model in the models folder."""
    from pipeline.domain.models.catalog import ModelCatalog
    from pipeline.domain.models.inspection import inspect_model
    from pipeline.errors import ModelNotFound

    catalog = ModelCatalog(default=settings.model, models_dir=settings.models_dir)
    named = [("default model", settings.model, "NANKE_MODEL")]
    if settings.upscaler_model:
        named.append(("upscaler", settings.upscaler_model, "NANKE_UPSCALER"))
    for label, value, setting in named:
        try:
            spec = catalog.resolve(value)
        except ModelNotFound as error:
            yield Check(label, False, _first_line(str(error)), f"set {setting} (README: Models)")
            continue
        state = inspect_model(spec)
        yield Check(label, state.usable, f"{spec.name}: {state.detail}", f"check {setting} (README: Models)")
    try:
        default = catalog.resolve(None).name
    except ModelNotFound:
        default = None
    for name in catalog.names():
        if name == default:
            continue
        state = inspect_model(catalog.resolve(name))
        yield Check(f"model {name}", state.usable, state.detail, "replace or remove the file")


def check_safety(settings: Settings) -> Iterator[Check]:
    """Where NANKE_SAFETY_CHECKER points (loading it is left to the start, which fails if it cannot)."""
    if not settings.safety_checker:
        yield Check("image safety check", True, "off (NANKE_SAFETY_CHECKER is empty)")
        return
    from pipeline.engine.safety import locate
    from pipeline.errors import ModelNotFound

    try:
        where = locate(settings.safety_checker)
    except ModelNotFound as error:
        yield Check("image safety check", False, _first_line(str(error)), "check NANKE_SAFETY_CHECKER")
        return
    source = "a folder" if where.local else "a Hub id, downloaded at the first start"
    yield Check("image safety check", True, f"{settings.safety_checker} ({source})")


def check_disk(settings: Settings) -> Check:
    folder = _existing(settings.data_dir)
    free = shutil.disk_usage(folder).free / GB
    return Check(
        "disk",
        free >= MIN_DISK_GB,
        f"{free:.1f} GB free at {folder}",
        "free some disk space (models are GBs)",
    )


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
