"""The names of devices, dtypes and GPU speed-ups a setting may give, without importing torch.

The settings check these at start; :mod:`pipeline.engine.devices` turns them into torch's.
"""

from __future__ import annotations

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "cuda:N", "mps", "cpu")
DTYPE_CHOICES: tuple[str, ...] = ("auto", "fp16", "bf16", "fp32")


def is_device_name(text: str) -> bool:
    """Whether ``text`` (lower case) is one of :data:`DEVICE_CHOICES`, ``cuda:N`` with a number N."""
    base, colon, index = text.partition(":")
    if not colon:
        return base in DEVICE_CHOICES and base != "cuda:N"
    return base == "cuda" and index.isdigit()


TUNING_CHOICES: tuple[str, ...] = ("tf32", "channels_last", "fuse_qkv", "compile", "cuda_graphs")
"""GPU speed-ups NANKE_GPU_TUNING may turn on (CUDA only; see :mod:`pipeline.engine.tuning`)."""
