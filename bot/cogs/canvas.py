"""Zoom Out, Pan, Make Square and Vary (Region): the canvas buttons under a single image.

Each queues a child job for whoever clicked (credited to them, the parent recorded), painted with
the same model (see :mod:`pipeline.domain.canvas`). Vary (Region) answers privately with a menu of
the image's 3×3 cells; choosing cells opens the prompt to edit, and submitting queues the job.
Everything here is a ``DynamicItem``: it works after a restart. ``custom_id``:
``nk:canvas:<job>:<zoom-2|zoom-1.5|pan-left|…|square>``, ``nk:region:<job>`` (the button) and
``nk:cells:<job>`` (the menu).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from bot.buttons import JOB_ID, CustomId, JobButton, RefusedButton, admitted, visible_job
from bot.cogs.community import MODAL_TITLE_LIMIT, prompt_input
from bot.errors import report_error
from bot.i18n import ENGLISH, Texts, for_interaction
from pipeline.domain.canvas import GRID
from pipeline.queue.jobs import JobSnapshot

log = logging.getLogger(__name__)

CANVAS = CustomId(
    "nk:canvas:{job}:{spec}", job=JOB_ID, spec=r"zoom-2|zoom-1\.5|pan-(?:left|right|up|down)|square"
)
REGION = CustomId("nk:region:{job}", job=JOB_ID)
CELLS = CustomId("nk:cells:{job}", job=JOB_ID)
PANS = (("left", "⬅️"), ("right", "➡️"), ("up", "⬆️"), ("down", "⬇️"))


def canvas_of(spec: str) -> str:
    """A button's spec as the request's canvas text (``zoom-2`` → ``zoom:2``)."""
    return spec.replace("-", ":", 1)


class CanvasButton(JobButton, custom_ids=CANVAS):
    """Zoom Out 2×/1.5×, Make Square, and the four Pan arrows."""

    def __init__(self, job_id: int, spec: str, *, label: str | None = None, emoji: str | None = None) -> None:
        self.spec = spec
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=CANVAS.format(job=job_id, spec=spec),
            ),
        )

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"]), "spec": match["spec"]}

    async def run(self, interaction: discord.Interaction) -> None:
        from bot.cogs.actions import JobActions

        await JobActions.of(interaction).start_child(
            interaction, parent_id=self.job_id, action="canvas", canvas=canvas_of(self.spec)
        )


class RegionButton(JobButton, custom_ids=REGION):
    """Vary (Region): a private menu of the image's cells to paint again."""

    def __init__(self, job_id: int, *, label: str | None = None) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label or ENGLISH("button.vary_region"),
                style=discord.ButtonStyle.secondary,
                custom_id=REGION.format(job=job_id),
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        from bot.cogs.actions import JobActions

        await visible_job(JobActions.of(interaction).jobs, interaction, self.job_id)
        texts = for_interaction(interaction)
        view = discord.ui.View(timeout=None)
        view.add_item(RegionSelect(self.job_id, texts=texts))
        await interaction.response.send_message(texts("region.choose"), view=view, ephemeral=True)


CELL_KEYS = (
    "region.top_left", "region.top", "region.top_right",
    "region.left", "region.centre", "region.right",
    "region.bottom_left", "region.bottom", "region.bottom_right",
)  # fmt: skip


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select], template=CELLS.template):
    """The cells of Vary (Region); choosing opens the prompt, then the job is queued."""

    def __init__(self, job_id: int, *, texts: Texts = ENGLISH) -> None:
        self.job_id = job_id
        super().__init__(
            discord.ui.Select(
                custom_id=CELLS.format(job=job_id),
                placeholder=texts("region.placeholder"),
                min_values=1,
                max_values=GRID * GRID - 1,
                options=[
                    discord.SelectOption(label=texts(key), value=str(cell))
                    for cell, key in enumerate(CELL_KEYS)
                ],
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Select, match: re.Match[str], /
    ) -> discord.ui.DynamicItem[Any]:
        fields = CELLS.parse(item.custom_id or "")
        if fields is None:
            return RefusedButton(item)  # type: ignore[arg-type]
        return cls(int(fields["job"]), texts=for_interaction(interaction))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        return await admitted(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        from bot.cogs.actions import JobActions

        try:
            values = [str(value) for value in (interaction.data or {}).get("values", [])]  # type: ignore[union-attr]
            cells = sorted(
                {int(value) for value in values if value.isdigit() and 0 <= int(value) < GRID * GRID}
            )
            if not cells:
                raise ValueError("no cells chosen")
            actions = JobActions.of(interaction)
            parent = await visible_job(actions.jobs, interaction, self.job_id)
            canvas = "cells:" + "".join(str(cell) for cell in cells)
            texts = for_interaction(interaction)
            await interaction.response.send_modal(RegionModal(actions, parent, canvas=canvas, texts=texts))
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)


class RegionModal(discord.ui.Modal):
    """The prompt for the chosen cells (the parent's, to edit); submitting queues Vary (Region)."""

    def __init__(self, actions: Any, parent: JobSnapshot, *, canvas: str, texts: Texts) -> None:
        super().__init__(title=texts("region.title", job_id=parent.id)[:MODAL_TITLE_LIMIT], timeout=15 * 60)
        self.actions = actions
        self.parent_id = parent.id
        self.canvas = canvas
        self.prompt = prompt_input(texts("remix.child_prompt"), parent.request.prompt)
        self.add_item(self.prompt)
        self.negative = parent.request.negative_prompt

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await self.actions.start_child(
            interaction,
            parent_id=self.parent_id,
            action="canvas",
            canvas=self.canvas,
            prompts=(self.prompt.value, self.negative),
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        await report_error(interaction, error, job_id=self.parent_id)


def single_size(job: JobSnapshot) -> tuple[int, int] | None:
    """The size of a job's only image (what its canvas buttons start from); ``None`` for a grid."""
    return (job.images[0].width, job.images[0].height) if len(job.images) == 1 else None


def canvas_rows(job_id: int, size: tuple[int, int], texts: Texts) -> list[discord.ui.Item[Any]]:
    """The canvas buttons of a finished single image of ``size``, as two rows (Zoom Out, Make
    Square for a non-square image, Vary (Region); then the Pans)."""
    zoom = [
        CanvasButton(job_id, "zoom-2", label=texts("button.zoom_out", number="2")),
        CanvasButton(job_id, "zoom-1.5", label=texts("button.zoom_out", number="1.5")),
    ]
    if size[0] != size[1]:
        zoom.append(CanvasButton(job_id, "square", label=texts("button.make_square")))
    zoom.append(RegionButton(job_id, label=texts("button.vary_region")))
    pans = [CanvasButton(job_id, f"pan-{direction}", emoji=emoji) for direction, emoji in PANS]
    for item in zoom:
        item.row = 2
    for item in pans:
        item.row = 3
    return [*zoom, *pans]


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (CanvasButton, RegionButton, RegionSelect)
