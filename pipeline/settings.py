"""nanke's settings: one typed object, read from the environment and ``.env``, validated at start.

These are the settings every part of nanke shares (model, device, limits, data folder,
database); the Discord front door adds its own (``bot.settings``) with the same
:class:`SettingsReader`. Every problem is reported as one line naming the setting, so an admin
sees all of them at once instead of a traceback. The object is passed down explicitly; nothing
reads ``os.environ`` after start-up.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.domain.models.resources import Kind, ResourceFolder, default_folder
from pipeline.engine.device_names import DEVICE_CHOICES, DTYPE_CHOICES, TUNING_CHOICES, is_device_name

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXAMPLE_DATABASE_URLS = "sqlite:///data/nanke.db or postgresql+psycopg://user:password@host/nanke"


class SettingsError(Exception):
    """One or more settings are missing or wrong; ``problems`` holds one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Settings:
    """nanke's configuration. Field docs name the environment variable that sets each one."""

    data_dir: Path
    """NANKE_DATA_DIR: the SQLite database and the image store (default ``./data``)."""
    database_url: str
    """DATABASE_URL: any SQLAlchemy URL (default ``sqlite:///<data_dir>/nanke.db``)."""
    model: str = DEFAULT_MODEL
    """NANKE_MODEL: a diffusers folder, a .safetensors/.ckpt file, a name in the models folder or a Hub id."""
    models_dir: Path | None = None
    """NANKE_MODELS_DIR: a folder scanned for more models (default ``<data_dir>/models`` if it exists)."""
    device: str = "auto"
    """NANKE_DEVICE: auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu."""
    dtype: str = "auto"
    """NANKE_DTYPE: auto (fp16 on CUDA, fp32 elsewhere), fp16, bf16 or fp32."""
    max_pixels: int = 1024 * 1024
    """NANKE_MAX_PIXELS: the largest width x height a member may ask for (upscales may be 4x this)."""
    max_batch: int | None = None
    """NANKE_MAX_BATCH: the most images one GPU batch may hold; ``None`` (``auto``, the default):
    as many as the GPU's memory allows at the batch's size, up to 16."""
    max_queued_per_user: int = 3
    """NANKE_MAX_QUEUED_PER_USER: how many unfinished jobs one member may have."""
    upscaler_model: str | None = None
    """NANKE_UPSCALER: a dedicated upscaler (diffusers folder or Hub id of an SD x4 or x2 latent upscaler)."""
    safety_checker: str | None = None
    """NANKE_SAFETY_CHECKER: an image safety classifier (folder or Hub id) run on every finished image;
    off when empty."""
    low_vram: bool = False
    """NANKE_LOW_VRAM: trade speed for memory (attention and VAE slicing, tiled VAE, model CPU offload)."""
    gpu_tuning: tuple[str, ...] = ()
    """NANKE_GPU_TUNING: comma-separated GPU speed-ups to turn on (tf32, channels_last, fuse_qkv,
    compile, cuda_graphs); each may change the last bits of some pixels, so none is on by default."""
    job_timeout_s: int = 1800
    """NANKE_JOB_TIMEOUT: seconds a job may generate before it is stopped and failed (0: no limit)."""
    api_port: int = 0
    """NANKE_API_PORT: the HTTP API's port beside the bot (0: no API; ``main.py serve`` uses 7860)."""
    api_host: str = "127.0.0.1"
    """NANKE_API_HOST: the address the HTTP API listens on (``0.0.0.0``: every interface)."""
    api_rate: int = 120
    """NANKE_API_RATE: requests one API key may make per minute."""
    api_max_body_mb: int = 32
    """NANKE_API_MAX_BODY_MB: the largest request body the HTTP API reads, in MiB."""
    lora_dir: Path | None = None
    """NANKE_LORA_DIR: the LoRA files (default: a ``Lora`` folder in or beside the models folder)."""
    embeddings_dir: Path | None = None
    """NANKE_EMBEDDINGS_DIR: textual-inversion embeddings (default: an ``embeddings`` folder there)."""
    vae_dir: Path | None = None
    """NANKE_VAE_DIR: VAE files and folders (default: a ``VAE`` folder there)."""
    vae: str | None = None
    """NANKE_VAE: the VAE every model uses unless a request names one (a name in the VAE folder or a
    path); unset: each model's own, or the ``<checkpoint>.vae.safetensors`` beside it."""
    previews: bool = True
    """NANKE_PREVIEWS: show running jobs' previews (0: never, for every member; each preview costs
    the GPU a small copy of the latents, about five times a job)."""
    describe_model: str | None = None
    """NANKE_DESCRIBE_MODEL: an image-captioning model (folder or Hub id) for /describe; off when empty."""
    styles_file: Path | None = None
    """NANKE_STYLES_FILE: a WebUI ``styles.csv`` for ``--style`` (default ``<data_dir>/styles.csv``)."""
    broker_url: str | None = None
    """NANKE_BROKER_URL: a Redis URL (``redis://host:6379/0``): batches go to GPU workers started
    with ``main.py worker``; unset, the embedded worker runs them in this process."""
    worker_name: str = ""
    """NANKE_WORKER_NAME: this GPU worker's name, unique among the workers (default: the host name)."""
    worker_timeout_s: int = 30
    """NANKE_WORKER_TIMEOUT: seconds a GPU worker may stay silent before its batch goes to another."""
    log_level: str = "INFO"
    """NANKE_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."""
    log_file: Path | None = None
    """NANKE_LOG_FILE: also write the log to this file (rotated at 10 MB, five kept)."""

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> Settings:
    """Read settings from ``environ`` (default: the process environment, after loading ``dotenv``).

    Values already in the environment win over ``.env``. Raises :class:`SettingsError` listing
    every bad value.
    """
    reader = SettingsReader(environment(environ, dotenv=dotenv))
    data_dir = Path(reader.text("NANKE_DATA_DIR", "./data")).expanduser()
    models_dir_text = reader.text("NANKE_MODELS_DIR", "")
    if models_dir_text:
        models_dir: Path | None = Path(models_dir_text).expanduser()
        if not models_dir.is_dir():
            reader.problem("NANKE_MODELS_DIR", models_dir_text, "is not a folder")
    else:
        models_dir = data_dir / "models" if (data_dir / "models").is_dir() else None
    if data_dir.exists() and not data_dir.is_dir():
        reader.problem("NANKE_DATA_DIR", str(data_dir), "is a file, not a folder")
    vae_dir = _resource_dir(reader, "NANKE_VAE_DIR", "vae", models_dir, data_dir)
    settings = Settings(
        data_dir=data_dir,
        database_url=reader.database_url("DATABASE_URL", f"sqlite:///{(data_dir / 'nanke.db').as_posix()}"),
        model=reader.text("NANKE_MODEL", DEFAULT_MODEL),
        models_dir=models_dir,
        device=reader.device("NANKE_DEVICE"),
        dtype=reader.choice("NANKE_DTYPE", "auto", DTYPE_CHOICES),
        max_pixels=reader.integer("NANKE_MAX_PIXELS", 1024 * 1024, low=64 * 64, high=2048 * 2048),
        max_batch=reader.integer_or_auto("NANKE_MAX_BATCH", low=1, high=64),
        max_queued_per_user=reader.integer("NANKE_MAX_QUEUED_PER_USER", 3, low=1, high=1000),
        upscaler_model=reader.text("NANKE_UPSCALER", "") or None,
        safety_checker=reader.text("NANKE_SAFETY_CHECKER", "") or None,
        low_vram=reader.flag("NANKE_LOW_VRAM"),
        gpu_tuning=reader.names("NANKE_GPU_TUNING", TUNING_CHOICES),
        job_timeout_s=reader.integer("NANKE_JOB_TIMEOUT", 1800, low=0, high=7 * 24 * 3600),
        api_port=reader.integer("NANKE_API_PORT", 0, low=0, high=65535),
        api_host=reader.text("NANKE_API_HOST", "127.0.0.1"),
        api_rate=reader.integer("NANKE_API_RATE", 120, low=1, high=100_000),
        api_max_body_mb=reader.integer("NANKE_API_MAX_BODY_MB", 32, low=1, high=1024),
        broker_url=reader.url("NANKE_BROKER_URL", "", ("redis://", "rediss://"), optional=True) or None,
        worker_name=reader.name("NANKE_WORKER_NAME", _host_name()),
        worker_timeout_s=reader.integer("NANKE_WORKER_TIMEOUT", 30, low=3, high=3600),
        log_level=reader.choice("NANKE_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        log_file=reader.path("NANKE_LOG_FILE"),
        lora_dir=_resource_dir(reader, "NANKE_LORA_DIR", "lora", models_dir, data_dir),
        embeddings_dir=_resource_dir(reader, "NANKE_EMBEDDINGS_DIR", "embedding", models_dir, data_dir),
        vae_dir=vae_dir,
        vae=_vae(reader, vae_dir),
        styles_file=reader.path("NANKE_STYLES_FILE") or data_dir / "styles.csv",
        describe_model=reader.text("NANKE_DESCRIBE_MODEL", "") or None,
        previews=reader.flag("NANKE_PREVIEWS", default=True),
    )
    reader.check()
    return settings


def _host_name() -> str:
    """This machine's name, as a worker name (what a worker name may not hold made ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64] or "worker"


def _resource_dir(
    reader: SettingsReader, name: str, kind: Kind, models_dir: Path | None, data_dir: Path
) -> Path | None:
    """The folder setting ``name`` names (it must exist), else the WebUI's place for ``kind``."""
    text = reader.text(name, "")
    if not text:
        return default_folder(kind, models_dir=models_dir, data_dir=data_dir)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        reader.problem(name, text, "is not a folder")
    return folder


def _vae(reader: SettingsReader, vae_dir: Path | None) -> str | None:
    """``NANKE_VAE``: a name in the VAE folder or a path to a VAE file or folder."""
    text = reader.text("NANKE_VAE", "")
    if not text:
        return None
    if not Path(text).expanduser().exists() and ResourceFolder("vae", vae_dir).find(text) is None:
        where = f"a VAE in {vae_dir}" if vae_dir is not None else "a VAE in the VAE folder (none is set)"
        reader.problem("NANKE_VAE", text, f"is neither a VAE file or folder nor {where}")
    return text


def environment(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> Mapping[str, str]:
    """``environ``, or the process environment after loading ``dotenv`` into it (values already
    set win over the file)."""
    if environ is not None:
        return environ
    if dotenv is not None and dotenv.is_file():
        from dotenv import load_dotenv

        load_dotenv(dotenv, override=False)
    return os.environ


class SettingsReader:
    """Reads typed values and collects one problem line per bad setting."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, name: str, value: str, why: str) -> None:
        self.problems.append(f"{name}: {value!r} {why}")

    def check(self) -> None:
        """Raise :class:`SettingsError` with every problem found so far."""
        if self.problems:
            raise SettingsError(self.problems)

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name, "").strip() or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
        value = self.text(name, default)
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            self.problem(name, value, f"is not one of {', '.join(allowed)}")
            return default
        return value

    def device(self, name: str) -> str:
        value = self.text(name, "auto").lower()
        if not is_device_name(value):
            self.problem(name, value, f"is not one of {', '.join(DEVICE_CHOICES)}")
            return "auto"
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name, str(default)).replace("_", "")
        try:
            value = int(raw)
        except ValueError:
            self.problem(name, raw, "is not a whole number")
            return default
        if not low <= value <= high:
            self.problem(name, raw, f"is out of range ({low} to {high})")
            return default
        return value

    def integer_or_auto(self, name: str, *, low: int, high: int) -> int | None:
        """A whole number, or ``None`` for ``auto`` (and when unset)."""
        if self.text(name, "auto").lower() == "auto":
            return None
        return self.integer(name, low, low=low, high=high)

    def names(self, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        """A comma-separated list of some of ``allowed`` (empty when unset)."""
        chosen = tuple(part.strip().lower() for part in self.text(name, "").split(",") if part.strip())
        wrong = [part for part in chosen if part not in allowed]
        if wrong:
            self.problem(name, ",".join(wrong), f"is not one of {', '.join(allowed)}")
            return ()
        return chosen

    def flag(self, name: str, *, default: bool = False) -> bool:
        value = self.text(name, "1" if default else "0").lower()
        if value not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            self.problem(name, value, "is not a yes/no value (1, 0, true, false, yes, no, on, off)")
            return default
        return value in ("1", "true", "yes", "on")

    def path(self, name: str) -> Path | None:
        value = self.text(name, "")
        return Path(value).expanduser() if value else None

    def database_url(self, name: str, default: str) -> str:
        """A SQLAlchemy URL (whether its driver is installed is checked where it is opened)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        value = self.text(name, default)
        try:
            make_url(value)
        except ArgumentError:
            self.problem(name, value, f"is not a database URL (for example {EXAMPLE_DATABASE_URLS})")
            return default
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...], *, optional: bool = False) -> str:
        value = self.text(name, default)
        if optional and not value:
            return value
        if not value.startswith(schemes):
            self.problem(name, value, f"must start with {' or '.join(schemes)}")
            return default
        return value

    def name(self, name: str, default: str) -> str:
        """A name for keys and queues: letters, digits, ``.``, ``_`` and ``-``, at most 64."""
        value = self.text(name, default)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
            self.problem(name, value, "must be 1 to 64 letters, digits, '.', '_' or '-'")
            return "worker"
        return value

    def id_list(self, name: str) -> tuple[int, ...]:
        raw = self.text(name, "")
        ids: list[int] = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            if not part.isdigit():
                self.problem(name, part, "is not a Discord id (digits only)")
                continue
            ids.append(int(part))
        return tuple(ids)
