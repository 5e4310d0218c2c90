"""Contact-sheet grids of a job's images (a 2x2 grid for four images, like Midjourney), and a
job's whole picture: its one image or its grid, with the parameters it carries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image


def grid_shape(count: int) -> tuple[int, int]:
    """Columns and rows for ``count`` images: 1 → 1x1, 2 → 2x1, 3 and 4 → 2x2, then near-square."""
    if count < 1:
        raise ValueError(f"count: {count} images cannot make a grid (allowed: 1 or more)")
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    return columns, rows


def make_grid(images: Sequence[Image.Image], *, gap: int = 0, background: str = "black") -> Image.Image:
    """Paste ``images`` (all the same size) left to right, top to bottom into one RGB image."""
    if not images:
        raise ValueError("images: an empty list cannot make a grid (allowed: 1 or more images)")
    width, height = images[0].size
    for index, image in enumerate(images):
        if image.size != (width, height):
            raise ValueError(
                f"images[{index}]: size {image.size[0]}x{image.size[1]} differs from the first "
                f"image's {width}x{height} (allowed: images of one size)"
            )
    columns, rows = grid_shape(len(images))
    sheet = Image.new(
        "RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), background
    )
    for index, image in enumerate(images):
        column, row = index % columns, index // columns
        sheet.paste(image.convert("RGB"), (column * (width + gap), row * (height + gap)))
    return sheet


@dataclass(frozen=True)
class Picture:
    """A job as one picture: its image, or a grid of its images, and the A1111 ``parameters`` it
    carries (the first image's, for a grid, as the WebUI does)."""

    image: Image.Image
    parameters: str
    grid: bool

    @classmethod
    def of(cls, images: Sequence[Image.Image], parameters: str) -> Picture:
        if len(images) > 1:
            return cls(make_grid(images), parameters, grid=True)
        if not images:
            raise ValueError("images: none (allowed: 1 or more images)")
        return cls(images[0], parameters, grid=False)


PREVIEW_SIDE = 256
"""A preview's longer side in pixels: large enough to judge, small enough to upload often."""


def preview_jpeg(images: Sequence[Image.Image], *, side: int = PREVIEW_SIDE, quality: int = 80) -> bytes:
    """A job's approximate in-progress images as one small JPEG (a grid for several), its longer
    side ``side`` pixels. Encoding takes a few milliseconds: call it off the GPU's thread."""
    import io

    sheet = make_grid(images)
    scale = side / max(sheet.size)
    size = (max(1, round(sheet.width * scale)), max(1, round(sheet.height * scale)))
    buffer = io.BytesIO()
    sheet.resize(size, Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
