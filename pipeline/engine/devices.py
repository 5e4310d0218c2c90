"""Choosing the torch device and dtype, and describing the environment for reproducibility.

``auto`` picks CUDA, then Apple MPS, then the CPU. The dtype follows the device:

- CUDA: float16 by default (every CUDA GPU that runs SD has fast fp16); bfloat16 when asked
  and supported (it does not overflow, so the SDXL VAE needs no fp32 retry).
- MPS: float32 by default. fp16 on MPS is faster but gives black or NaN images with several
  models and torch versions (attention and the SDXL VAE overflow), so it is opt-in.
- CPU: always float32. CPU kernels for half precision are slow or missing (some convolutions
  and normalisations are not implemented for fp16), so asking for fp16/bf16 on the CPU falls
  back to float32 with a warning instead of failing later, mid-generation.
"""

from __future__ import annotations

import logging
import platform
from importlib import metadata

import torch

from pipeline.engine.device_names import DEVICE_CHOICES, DTYPE_CHOICES
from pipeline.errors import DeviceError

log = logging.getLogger(__name__)

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "full": torch.float32,
}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preference: str = "auto") -> torch.device:
    """Return the device to run on: ``auto`` (CUDA → MPS → CPU), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.

    Raises :class:`DeviceError` when an explicit device is not available on this machine.
    """
    text = (preference or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device: {preference!r} is not a device name (allowed: {', '.join(DEVICE_CHOICES)})"
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            raise DeviceError(
                f"device: {preference!r} asked for, but CUDA is not available: torch {torch.__version__} "
                f"was built {build} "
                "or no NVIDIA driver/GPU is visible. Install the CUDA build of torch or use device auto/cpu."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"device: {preference!r} asked for, but this machine has {count} CUDA device(s) "
                f"(allowed: cuda:0 to cuda:{count - 1})"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device: {preference!r} asked for, but Apple MPS is not available "
                "(it needs an Apple Silicon Mac, macOS 12.3+ and a torch build with MPS)"
            )
        return torch.device("mps")
    raise DeviceError(f"device: {preference!r} is not supported (allowed: {', '.join(DEVICE_CHOICES)})")


def pick_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """Return the dtype to run in on ``device`` for ``preference`` (``auto``, ``fp16``, ``bf16``, ``fp32``).

    Never returns a half dtype on the CPU: fp16/bf16 asked for there falls back to float32 with
    a warning. bf16 on a CUDA GPU without bf16 support falls back to fp16 with a warning.
    """
    text = (preference or "auto").strip().lower()
    if text != "auto" and text not in _DTYPE_NAMES:
        raise DeviceError(f"dtype: {preference!r} is not a dtype (allowed: {', '.join(DTYPE_CHOICES)})")
    if device.type == "cuda":
        if text == "auto":
            return torch.float16
        dtype = _DTYPE_NAMES[text]
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            log.warning("dtype bf16: this GPU does not support bfloat16; using fp16 instead")
            return torch.float16
        return dtype
    if device.type == "mps":
        return torch.float32 if text == "auto" else _DTYPE_NAMES[text]
    # CPU (and anything else): float32 only.
    if text != "auto" and _DTYPE_NAMES[text] != torch.float32:
        log.warning(
            "dtype %s: half precision is not supported for Stable Diffusion on the %s "
            "(slow or missing kernels); using fp32 instead",
            preference,
            device.type,
        )
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` → ``"float16"``."""
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """A human name for ``device``: the GPU model for CUDA, the processor otherwise."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return platform.processor() or platform.machine() or "cpu"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_environment(device: torch.device, dtype: torch.dtype) -> dict[str, str]:
    """Library versions, device and dtype: what a stored image needs to be reproduced."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "device": str(device),
        "device_name": device_name(device),
        "dtype": dtype_name(dtype),
    }
    if device.type == "cuda":
        env["cuda"] = str(torch.version.cuda)
    return env


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device out-of-memory error (CUDA, MPS or a backend's RuntimeError)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    """Return cached blocks to the device after an out-of-memory error."""
    import gc

    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and _mps_available():
        torch.mps.empty_cache()


BATCH_IMAGES_BY_MEMORY: tuple[tuple[float, int], ...] = ((40.0, 16), (20.0, 8), (10.0, 4), (0.0, 2))
"""(GB of GPU memory, 512x512 images per batch): what fits beside an SD 1.5 model in fp16."""
CPU_BATCH_IMAGES = 4


def batch_pixel_budget(device: torch.device) -> int:
    """How many pixels one batch may hold on ``device``: 512x512 images by the GPU's memory
    (an SDXL image of 1024x1024 counts as four)."""
    images = CPU_BATCH_IMAGES
    if device.type == "cuda" and torch.cuda.is_available():
        total_gb = torch.cuda.get_device_properties(device).total_memory / 1024**3
        images = next(count for floor, count in BATCH_IMAGES_BY_MEMORY if total_gb >= floor)
    return images * 512 * 512
