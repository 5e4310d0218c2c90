"""The bot's messages: embed fields, button layout and custom ids, and uploads that fit."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from bot import render
from bot.cogs import actions, community, listings
from bot.cogs.actions import CancelButton, queued_view, result_view
from pipeline.domain.metadata import read_parameters
from pipeline.domain.request import GenerationRequest
from pipeline.queue.jobs import ImageSnapshot, JobSnapshot

DYNAMIC_ITEMS = (*actions.BUTTONS, *community.BUTTONS, *listings.BUTTONS)
"""Every button class the bot registers."""


def job(count: int = 4, **fields) -> JobSnapshot:
    request = GenerationRequest(
        prompt="a red fox @everyone", negative_prompt="blurry", seed=5, count=count, steps=2
    ).validate()
    images = tuple(
        ImageSnapshot(index=i, seed=5 + i, width=64, height=64, sha256="0" * 64, path="x")
        for i in range(count)
    )
    base = {
        "id": 12,
        "kind": "imagine",
        "status": "done",
        "request": request,
        "owner_name": "alice",
        "owner_discord_id": 1001,
        "parent_id": None,
        "parent_image_index": None,
        "guild_id": 1,
        "channel_id": 2,
        "model_name": "tiny",
        "model_hash": "0123456789",
        "error": None,
        "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "started_at": None,
        "finished_at": None,
        "images": images,
    }
    return JobSnapshot(**{**base, **fields})


def test_embed_names_every_setting() -> None:
    embed = render.result_embed(job())
    fields = {field.name: field.value for field in embed.fields}
    assert embed.description == "a red fox @everyone"
    assert fields["Negative prompt"] == "blurry"
    assert fields["Seeds"] == "5, 6, 7, 8"
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"]) == ("2", "Euler a", "7")
    assert fields["Size"] == "64×64"
    assert fields["Model"] == "tiny [0123456789]"
    assert "Job #12" in embed.footer.text and "alice" in embed.footer.text


def test_child_headline_names_its_parent() -> None:
    child = job(count=1, kind="upscale", parent_id=7, parent_image_index=1)
    assert "Upscale of #7 image 2" in render.headline(child)


def test_grid_buttons_follow_midjourneys_layout() -> None:
    view = result_view(12, 4)
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.row, []).append(item.item.label or str(item.item.emoji))
    assert rows[0] == ["U1", "U2", "U3", "U4", "🔄"]
    assert rows[1] == ["V1", "V2", "V3", "V4", "🗑️"]


def test_single_image_buttons() -> None:
    labels = [item.item.label or str(item.item.emoji) for item in result_view(12, 1).children]
    assert labels == [
        *("Upscale (2x)", "Vary (Strong)", "Vary (Subtle)", "🔄", "🗑️"),
        *("❤️", "Share", "Use this prompt"),
    ]


def test_every_custom_id_matches_exactly_one_registered_template() -> None:
    views = [result_view(12, 4), result_view(12, 1), queued_view(12)]
    for item in (child for view in views for child in view.children):
        matches = [
            cls for cls in DYNAMIC_ITEMS if re.fullmatch(cls.__discord_ui_compiled_template__, item.custom_id)
        ]
        assert len(matches) == 1, item.custom_id
        assert len(item.custom_id) <= 100
    assert isinstance(queued_view(3).children[0], CancelButton)


def test_result_file_carries_parameters_and_fits_the_limit() -> None:
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(4)]
    small = render.result_file(job(), noise, max_bytes=200_000)
    data = small.fp.read()
    assert len(data) <= 200_000
    assert not small.filename.endswith(".png")
    assert "Seed: 5" in (read_parameters(data) or "")
    big = render.result_file(job(), noise, max_bytes=10 * 1024 * 1024)
    png = big.fp.read()
    assert big.filename == "nanke-12-grid.png"
    assert Image.open(io.BytesIO(png)).size == (512, 512)
