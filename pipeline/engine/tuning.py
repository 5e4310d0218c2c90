"""GPU speed-ups an admin may turn on with NANKE_GPU_TUNING (CUDA only; each is off by default).

None of them changes what is generated, but each may change the last bits of some pixels,
because it changes how the same arithmetic is carried out (so they are off unless asked for,
and a job records which were on: ``reproduce`` is exact only with the same ones):

- ``tf32``: TensorFloat-32 matrix products and convolutions for float32 work (Ampere and newer);
  no effect on a model run in fp16/bf16 beyond the few float32 operations.
- ``channels_last``: the UNet and the VAE in channels-last memory format, which the GPU's
  convolution kernels prefer.
- ``fuse_qkv``: one projection for attention's query, key and value instead of three.
- ``compile``: ``torch.compile`` of the UNet; the first batch of each new shape compiles (a minute
  or more), so the bot warms the common shapes up at start.
- ``cuda_graphs``: every denoising step's UNet pass replayed from a CUDA graph, one launch instead
  of hundreds (see :mod:`pipeline.engine.graphs`); the same kernels run, so the pixels stay the
  same. It pays most for small batches. Not with ``compile`` (which is then kept alone).

On any other device the setting is ignored with a warning; an option that fails is skipped with
a warning, the others stay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.engine.device_names import TUNING_CHOICES
from pipeline.engine.graphs import UnetGraphs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuned:
    """What :func:`apply_tuning` turned on, and the UNet's graphs when ``cuda_graphs`` is on."""

    applied: tuple[str, ...] = ()
    graphs: UnetGraphs | None = None


def apply_tuning(pipe: Any, device: torch.device, tuning: Sequence[str]) -> Tuned:
    """Turn on the options of ``tuning`` for ``pipe`` on ``device``."""
    unknown = [name for name in tuning if name not in TUNING_CHOICES]
    if unknown:
        raise ValueError(f"tuning: {unknown} (allowed: {', '.join(TUNING_CHOICES)})")
    if not tuning:
        return Tuned()
    if device.type != "cuda":
        log.warning("NANKE_GPU_TUNING (%s): ignored on %s, it is for CUDA GPUs", ",".join(tuning), device)
        return Tuned()
    applied: list[str] = []
    graphs = None
    for name in TUNING_CHOICES:
        if name not in tuning:
            continue
        if name == "cuda_graphs" and "compile" in applied:
            log.warning("NANKE_GPU_TUNING cuda_graphs: not with compile (the compiled UNet is kept)")
            continue
        try:
            if name == "cuda_graphs":
                graphs = UnetGraphs.install(pipe.unet, device)
            else:
                _APPLY[name](pipe)
        except Exception as error:
            log.warning("NANKE_GPU_TUNING %s: could not be turned on (%s); going on without it", name, error)
            continue
        applied.append(name)
    log.info("GPU tuning on: %s", ", ".join(applied) or "none")
    return Tuned(tuple(applied), graphs)


def _tf32(pipe: Any) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _channels_last(pipe: Any) -> None:
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)


def _fuse_qkv(pipe: Any) -> None:
    pipe.fuse_qkv_projections()


def _compile(pipe: Any) -> None:
    pipe.unet = torch.compile(pipe.unet, dynamic=False)


_APPLY = {"tf32": _tf32, "channels_last": _channels_last, "fuse_qkv": _fuse_qkv, "compile": _compile}
