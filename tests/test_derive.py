"""Child requests (reroll, upscale, variation) and the grid."""

from __future__ import annotations

import pytest
from PIL import Image

from pipeline.domain.grid import grid_shape, make_grid
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest
from pipeline.queue import derive

SHA = "ab" * 32
PARENT = GenerationRequest(prompt="a fox", seed=7, count=4, width=768, height=512).validate()


def test_reroll_keeps_everything_but_the_seed() -> None:
    child = derive.reroll(PARENT, seed=99)
    assert child.seed == 99 and child.count == 4
    assert child.prompt == PARENT.prompt and child.width == PARENT.width
    assert derive.reroll(PARENT).seed is not None


def test_upscale_doubles_one_image_with_a_detail_pass() -> None:
    child = derive.upscale(PARENT, image_sha256=SHA, width=768, height=512, seed=5)
    assert (child.mode, child.width, child.height, child.count) == ("upscale", 1536, 1024, 1)
    assert child.init_image == SHA and child.strength == derive.UPSCALE_STRENGTH and child.seed == 5


def test_upscale_past_the_pixel_cap_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="width: 4096"):
        derive.upscale(PARENT, image_sha256=SHA, width=2048, height=2048)
    with pytest.raises(InvalidRequest, match="size: '1536x1024'"):
        derive.upscale(PARENT, image_sha256=SHA, width=768, height=512, max_pixels=1024 * 1024)


@pytest.mark.parametrize(("strength", "value"), [("strong", 0.6), ("subtle", 0.3)])
def test_variation_strengths(strength: str, value: float) -> None:
    child = derive.variation(PARENT, image_sha256=SHA, width=768, height=512, strength=strength)  # type: ignore[arg-type]
    assert (child.mode, child.strength, child.count, child.init_image) == ("img2img", value, 1, SHA)


def test_variation_rejects_unknown_strength() -> None:
    with pytest.raises(ValueError, match="strength"):
        derive.variation(PARENT, image_sha256=SHA, width=8, height=8, strength="wild")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "shape"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2))]
)
def test_grid_shape(count: int, shape: tuple[int, int]) -> None:
    assert grid_shape(count) == shape


def test_grid_places_images_left_to_right_top_to_bottom() -> None:
    colours = ["red", "green", "blue", "white"]
    sheet = make_grid([Image.new("RGB", (8, 4), colour) for colour in colours])
    assert sheet.size == (16, 8)
    assert sheet.getpixel((0, 0)) == (255, 0, 0)
    assert sheet.getpixel((8, 0)) == (0, 128, 0)
    assert sheet.getpixel((0, 4)) == (0, 0, 255)
    assert sheet.getpixel((15, 7)) == (255, 255, 255)


def test_grid_rejects_mixed_sizes_and_empty() -> None:
    with pytest.raises(ValueError, match=r"images\[1\]"):
        make_grid([Image.new("RGB", (8, 8)), Image.new("RGB", (4, 4))])
    with pytest.raises(ValueError, match="images"):
        make_grid([])


def test_children_of_few_step_images_still_denoise_at_least_one_step() -> None:
    parent = GenerationRequest(prompt="a fox", seed=1, steps=2).validate()
    upscaled = derive.upscale(parent, image_sha256=SHA, width=64, height=64)
    assert int(upscaled.steps * upscaled.strength) >= 1
    subtle = derive.variation(parent, image_sha256=SHA, width=64, height=64, strength="subtle")
    assert int(subtle.steps * subtle.strength) == 1 and subtle.steps == 4
    assert derive.variation(PARENT, image_sha256=SHA, width=64, height=64).steps == PARENT.steps
