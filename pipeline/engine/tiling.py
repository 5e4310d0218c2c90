"""Seamless tiles (``--tile``): circular padding in every convolution of the UNet and the VAE.

With circular padding a convolution at the left edge reads the right edge's pixels (and the top
reads the bottom), so the denoised image, and the decoded one, continue across their borders:
placed side by side, copies of the image join without a seam. It is the WebUI's "Tiling". The
setting is switched per batch and changes no weights; off, the padding is zeros again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def set_tiling(modules: Iterable[Any], *, on: bool) -> None:
    """Circular (``on``) or zero padding for every padded ``Conv2d`` inside ``modules``."""
    mode = "circular" if on else "zeros"
    for module in modules:
        if module is None:
            continue
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d) and layer.padding_mode != mode and any(layer.padding):
                layer.padding_mode = mode
