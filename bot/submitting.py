"""From an interaction to a queued job: the steps /imagine, remixes and /reproduce share.

Bad input gets an ephemeral reply and queues nothing; a good request is deferred, stored, and
its queue message announced.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot.errors import report_error, retract
from bot.interactions import destination_of, requester_of
from pipeline.domain.models import ModelCatalog
from pipeline.domain.prompt.flags import (
    DEFAULT_IMAGE_WEIGHT,
    ParsedPrompt,
    parse_prompt,
    strength_for_image_weight,
)
from pipeline.domain.prompt.styles import StyleFile
from pipeline.domain.request import MAX_SIDE, MIN_SIDE, SIZE_MULTIPLE, GenerationRequest
from pipeline.errors import InvalidRequest
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.jobs.asynchronous import AsyncJobs
from pipeline.queue.jobs.images import Upload

if TYPE_CHECKING:
    from bot.delivery import Deliverer

log = logging.getLogger(__name__)


def image_prompted(request: GenerationRequest, parsed: ParsedPrompt, source: Upload) -> GenerationRequest:
    """``request`` as image-to-image from the image prompt ``source``: ``--iw`` sets the strength
    (:func:`strength_for_image_weight`), and without ``--ar``/``--size`` the image's own aspect
    sets the size (its shorter side the request's, within nanke's limits)."""
    weight = DEFAULT_IMAGE_WEIGHT if parsed.image_weight is None else parsed.image_weight
    width, height = request.width, request.height
    if not parsed.sized:
        width, height = fitted_size(source.width, source.height, short_side=min(width, height))
    return replace(
        request,
        mode="img2img",
        init_image=source.sha256,
        strength=strength_for_image_weight(weight),
        width=width,
        height=height,
        hires_scale=None,
    )


def fitted_size(width: int, height: int, *, short_side: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled so its shorter side is ``short_side``, each side a multiple of
    8 within nanke's limits (a very long image is cut to fit, as the source is cropped-to-fit)."""
    scale = short_side / min(width, height)
    sides = [round(side * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE for side in (width, height)]
    return tuple(min(max(side, MIN_SIDE), MAX_SIDE) for side in sides)  # type: ignore[return-value]


class Submitter:
    """Turns what a member typed into a queued job and answers within Discord's deadlines."""

    def __init__(
        self,
        *,
        jobs: AsyncJobs,
        deliverer: Deliverer,
        catalog: ModelCatalog,
        max_pixels: int,
        styles: StyleFile | None = None,
    ) -> None:
        self.jobs = jobs
        self.deliverer = deliverer
        self.catalog = catalog
        self.max_pixels = max_pixels
        self.styles = styles or StyleFile(None)

    def prepare(
        self, text: str, *, source: Upload | None = None, **options: object
    ) -> tuple[GenerationRequest, bool]:
        """Prompt text with flags (and /imagine's options, which win) → a validated request, and
        whether ``--private`` was given; with ``source`` (an image prompt, stored already), an
        image-to-image request from it. Raises :class:`PipelineError` for bad input; no I/O."""
        parsed = parse_prompt(text, styles=self.styles.book())
        request = replace(parsed.request, **{k: v for k, v in options.items() if v is not None})
        if source is not None:
            request = image_prompted(request, parsed, source)
        elif parsed.image_weight is not None:
            raise InvalidRequest(
                "--iw", parsed.image_weight, "--iw with an image", reason="needs an image prompt"
            )
        if request.model is not None:
            request = replace(request, model=self.catalog.resolve(request.model, allow_paths=False).name)
        return request.validate(max_pixels=self.max_pixels), parsed.private

    def validate(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` checked against this server's limits (an imported one, say)."""
        return request.validate(max_pixels=self.max_pixels)

    async def start(
        self,
        interaction: discord.Interaction,
        request: GenerationRequest,
        *,
        private: bool | None = None,
        kind: str = "imagine",
        parent_id: int | None = None,
    ) -> JobSnapshot | None:
        """Store the job, then acknowledge the interaction and show the job's place in the queue.
        ``private=None``: the member's default (``/settings private``).

        The job is written before Discord hears back, so a crash in between loses nothing (Discord's
        3 seconds are ample for a row). ``request`` has been validated already.
        """
        try:
            if private is None:
                private = await self.jobs.community.private_by_default(
                    discord_id=interaction.user.id, name=interaction.user.display_name
                )
            job = await self.jobs.submit(
                request,
                requester=requester_of(interaction),
                destination=destination_of(interaction),
                kind=kind,
                parent_id=parent_id,
                private=private,
            )
        except Exception as error:
            if interaction.response.is_done():
                await retract(interaction, error)
            else:
                await report_error(interaction, error)
            return None
        await self.deliverer.acknowledge(interaction, job)
        return job
