"""Cheap previews: 4-channel latents to RGB with a fixed linear map, no VAE.

The matrices are the widely used "latent RGB factors" approximation: each latent channel
contributes a fixed amount of red, green and blue. The result is a blurry, low-resolution
(1/8 size) picture that costs a matrix product per step.
"""

from __future__ import annotations

import torch
from PIL import Image

# Rows: latent channels 1-4; columns: R, G, B.
_SD1_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
_SDXL_FACTORS = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)
LATENT_RGB_FACTORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sd1": _SD1_FACTORS,
    "sd2": _SD1_FACTORS,
    "sdxl": _SDXL_FACTORS,
}


def latents_to_previews(latents: torch.Tensor, architecture: str) -> list[Image.Image] | None:
    """One small RGB image per latent in ``latents`` (``B×4×h×w``), or None for other layouts."""
    factors = LATENT_RGB_FACTORS.get(architecture)
    if factors is None or latents.ndim != 4 or latents.shape[1] != len(factors):
        return None
    matrix = torch.tensor(factors, dtype=torch.float32)
    with torch.no_grad():
        rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float().cpu(), matrix)
        rgb = ((rgb + 1) / 2).nan_to_num(0.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    return [Image.fromarray(array.numpy()) for array in rgb]
