"""Zoom Out, Pan, Make Square and Vary (Region): an image on a canvas, and what to paint anew.

A *canvas* names how a child job starts from its parent's image, as a short text stored in the
request (``GenerationRequest.canvas``), so a job reproduces from its row:

- ``zoom:2`` / ``zoom:1.5``: the canvas is the image's size times the factor, the image in its
  centre; the border around it is painted (outpainting).
- ``pan:left`` / ``pan:right`` / ``pan:up`` / ``pan:down``: the canvas grows by half the image's
  width (or height) on that side, which is painted.
- ``square``: the canvas is a square of the image's longer side, the image in its centre.
- ``cells:048``: the canvas is the image; the chosen cells of its 3×3 grid (0 top left … 8
  bottom right) are painted again, the rest kept (Vary (Region)).

A canvas larger than the pixel limit is scaled down as a whole (the image shrinks with it), each
side a multiple of 8. The engine paints the masked area with the inpainting pipeline (a 4-channel
model blends the known area back at every step) and then puts the kept pixels back exactly: only
a :data:`SEAM` pixels wide band where old and new meet is blended, so the original is unchanged
outside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from pipeline.errors import InvalidRequest

SEAM = 16
"""Pixels on each side of an edge between kept and painted area that are painted and blended."""
PAN_GROWTH = 0.5
ZOOM_FACTORS = (1.5, 2.0)
DIRECTIONS = ("left", "right", "up", "down")
GRID = 3
MIN_SIDE, MAX_SIDE, MULTIPLE = 64, 2048, 8
OUTPAINT_STRENGTH = 1.0
"""Outpainting starts the new area from noise (the kept area is blended back at each step)."""
REGION_STRENGTH = 0.9
"""Vary (Region) keeps a little of the region's old layout."""

Kind = Literal["zoom", "pan", "square", "cells"]
_SPEC = re.compile(r"(zoom):(1\.5|2)|(pan):(left|right|up|down)|(square)|(cells):([0-8]{1,9})")


@dataclass(frozen=True)
class Canvas:
    """A parsed canvas text (see the module docstring)."""

    kind: Kind
    factor: float = 1.0
    direction: str = ""
    cells: tuple[int, ...] = ()

    @property
    def strength(self) -> float:
        """The denoising strength of the painted area."""
        return REGION_STRENGTH if self.kind == "cells" else OUTPAINT_STRENGTH

    def text(self) -> str:
        """The canvas as stored (``parse_canvas(c.text()) == c``)."""
        if self.kind == "zoom":
            return f"zoom:{self.factor:g}"
        if self.kind == "pan":
            return f"pan:{self.direction}"
        if self.kind == "cells":
            return "cells:" + "".join(str(cell) for cell in self.cells)
        return "square"


def parse_canvas(text: object) -> Canvas:
    """The canvas ``text`` names; :class:`InvalidRequest` naming ``canvas`` otherwise."""
    allowed = "zoom:1.5, zoom:2, pan:left/right/up/down, square or cells:<digits 0-8>"
    match = _SPEC.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequest("canvas", text, allowed)
    if match[1]:
        return Canvas("zoom", factor=float(match[2]))
    if match[3]:
        return Canvas("pan", direction=match[4])
    if match[5]:
        return Canvas("square")
    cells = tuple(sorted(set(int(digit) for digit in match[7])))
    return Canvas("cells", cells=cells)


def canvas_size(canvas: Canvas, width: int, height: int, *, max_pixels: int) -> tuple[int, int]:
    """The size of the child image made on ``canvas`` from a ``width`` x ``height`` image."""
    if canvas.kind == "zoom":
        wide, tall = width * canvas.factor, height * canvas.factor
    elif canvas.kind == "pan":
        grow_x = canvas.direction in ("left", "right")
        wide = width * (1 + PAN_GROWTH) if grow_x else width
        tall = height if grow_x else height * (1 + PAN_GROWTH)
    elif canvas.kind == "square":
        wide = tall = max(width, height)
    else:
        wide, tall = width, height
    scale = min(1.0, math.sqrt(max_pixels / (wide * tall)), MAX_SIDE / max(wide, tall))
    return _side(wide * scale), _side(tall * scale)


def _side(value: float) -> int:
    return min(MAX_SIDE, max(MIN_SIDE, int(value) // MULTIPLE * MULTIPLE))


@dataclass(frozen=True)
class Prepared:
    """What the engine paints on: the canvas, the mask of what to paint (white), and the mask of
    what to keep exactly afterwards (white: the original; grey: the blended seam)."""

    image: Image.Image
    paint: Image.Image
    keep: Image.Image


def prepare(canvas: Canvas, source: Image.Image, size: tuple[int, int]) -> Prepared:
    """``source`` laid out on ``canvas`` at ``size``, with its masks (see :class:`Prepared`)."""
    width, height = size
    source = source.convert("RGB")
    if canvas.kind == "cells":
        image = source.resize(size, Image.Resampling.LANCZOS) if source.size != size else source
        region = Image.new("L", size, 0)
        draw = ImageDraw.Draw(region)
        for cell in canvas.cells:
            column, row = cell % GRID, cell // GRID
            box = (
                column * width // GRID,
                row * height // GRID,
                (column + 1) * width // GRID - 1,
                (row + 1) * height // GRID - 1,
            )
            draw.rectangle(box, fill=255)
        return _masks(image, kept=_invert(region))
    box = _placement(canvas, source.size, size)
    placed = source.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS)
    image = Image.new("RGB", size, _mean_colour(source))
    image.paste(placed, box[:2])
    kept = Image.new("L", size, 0)
    kept.paste(255, box)
    return _masks(image, kept=kept)


def _placement(canvas: Canvas, source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where the source goes on the canvas: ``(left, top, right, bottom)``."""
    width, height = size
    if canvas.kind == "pan":
        grow_x = canvas.direction in ("left", "right")
        scale = (width / (1 + PAN_GROWTH)) / source[0] if grow_x else (height / (1 + PAN_GROWTH)) / source[1]
    elif canvas.kind == "zoom":
        scale = width / (source[0] * canvas.factor)
    else:
        scale = min(width / source[0], height / source[1])
    placed_w, placed_h = min(width, round(source[0] * scale)), min(height, round(source[1] * scale))
    left, top = (width - placed_w) // 2, (height - placed_h) // 2
    if canvas.direction == "left":
        left = width - placed_w
    elif canvas.direction == "right":
        left = 0
    elif canvas.direction == "up":
        top = height - placed_h
    elif canvas.direction == "down":
        top = 0
    return left, top, left + placed_w, top + placed_h


def _masks(image: Image.Image, *, kept: Image.Image) -> Prepared:
    """The paint mask (everything not kept, grown by the seam) and the blended keep mask.

    The kept area shrinks by the seam only where it meets painted area, not at the canvas's edge
    (the mask is padded with "kept" before it is eroded).
    """
    grow = SEAM * 2 + 1
    padded = ImageOps.expand(kept, border=grow, fill=255)
    core = padded.filter(ImageFilter.MinFilter(grow))
    paint = _invert(core.crop((grow, grow, grow + kept.width, grow + kept.height)))
    # The feather reaches out of the kept core into the seam only: inside it every pixel is kept
    feather = ImageChops.lighter(
        core, core.filter(ImageFilter.MaxFilter(grow)).filter(ImageFilter.GaussianBlur(SEAM / 2))
    )
    keep = ImageChops.multiply(feather, padded).crop((grow, grow, grow + kept.width, grow + kept.height))
    return Prepared(image=image, paint=paint, keep=keep)


def _invert(mask: Image.Image) -> Image.Image:
    return mask.point(lambda value: 255 - value)


def _mean_colour(image: Image.Image) -> tuple[int, int, int]:
    small = image.resize((1, 1), Image.Resampling.BOX)
    return small.getpixel((0, 0))  # type: ignore[return-value]


def finish(prepared: Prepared, painted: Image.Image) -> Image.Image:
    """The painted image with the kept pixels of the canvas put back (blended along the seam)."""
    if painted.size != prepared.image.size:
        painted = painted.resize(prepared.image.size, Image.Resampling.LANCZOS)
    return Image.composite(prepared.image, painted.convert("RGB"), prepared.keep)
