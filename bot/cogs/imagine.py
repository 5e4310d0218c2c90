"""/imagine: a prompt (with Midjourney-style flags) becomes a queued job."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import discord
from discord import app_commands

from bot.buttons import Feature
from bot.cogs.library import choices
from bot.errors import report_error, retract
from bot.image_links import DISCORD_CDN_HOSTS, download, split_links
from bot.interactions import in_time
from pipeline.domain.models import ModelCatalog
from pipeline.domain.models.resources import ResourceFolder
from pipeline.domain.prompt.networks import MAX_WEIGHT, MIN_WEIGHT
from pipeline.domain.prompt.styles import StyleFile
from pipeline.domain.request import MAX_CFG, MAX_COUNT, MAX_SEED, MAX_STEPS, MIN_CFG, MIN_COUNT, MIN_STEPS
from pipeline.domain.samplers import SAMPLER_NAMES
from pipeline.errors import InvalidRequest, PipelineError
from pipeline.queue.jobs.images import Upload

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.submitting import Submitter

log = logging.getLogger(__name__)

ASPECTS = {
    "1:1 square": "1:1",
    "3:2 landscape": "3:2",
    "2:3 portrait": "2:3",
    "16:9 wide": "16:9",
    "9:16 tall": "9:16",
    "4:5 portrait": "4:5",
}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGE_BYTES = 25 * 1024 * 1024
"""The largest image prompt read (Discord's own upload limit for most members)."""
IMAGE_PIXELS_FACTOR = 4
"""An image prompt may have this many times NANKE_MAX_PIXELS (it is scaled to the output size)."""
# Discord allows 25 choices; the common samplers come first. They keep A1111's names in every
# language: the command catalogs translate the aspect choices only.
SAMPLER_CHOICES = [app_commands.Choice(name=name, value=name) for name in SAMPLER_NAMES][:25]


class Imagine(Feature):
    """The /imagine command."""

    def __init__(
        self,
        *,
        submitter: Submitter,
        catalog: ModelCatalog,
        loras: ResourceFolder | None = None,
        styles: StyleFile | None = None,
        link_hosts: frozenset[str] = DISCORD_CDN_HOSTS,
    ) -> None:
        self.submitter = submitter
        self.catalog = catalog
        self.loras = loras or ResourceFolder("lora", None)
        self.styles = styles or StyleFile(None)
        self.link_hosts = link_hosts
        """The hosts an image link at the start of a prompt may point at (Discord's attachments)."""

    @app_commands.command(name="imagine", description="Generate images from a prompt")
    @app_commands.describe(
        prompt="What to draw. Flags work too: --ar 3:2 --no trees --seed 7 --steps 30 --n 4",
        negative="What to keep out of the image (negative prompt)",
        aspect="Aspect ratio",
        seed=f"Seed of the first image (0 to {MAX_SEED})",
        steps=f"Denoising steps ({MIN_STEPS} to {MAX_STEPS})",
        cfg=f"Guidance scale ({MIN_CFG:g} to {MAX_CFG:g})",
        sampler="Sampler (AUTOMATIC1111 names)",
        count=f"Number of images ({MIN_COUNT} to {MAX_COUNT})",
        model="Model to use",
        lora="A LoRA to add (more go in the prompt as <lora:name:weight>)",
        lora_weight=f"The LoRA's weight ({MIN_WEIGHT:g} to {MAX_WEIGHT:g}, default 1)",
        style="A prompt style to add (more with --style in the prompt)",
        image="An image to start from (an image prompt; --iw 0 to 2 sets how much it counts)",
        private="Keep it out of listings, search and the showcase (default: your /settings private)",
    )
    @app_commands.choices(
        aspect=[app_commands.Choice(name=name, value=value) for name, value in ASPECTS.items()],
        sampler=SAMPLER_CHOICES,
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1500],
        negative: app_commands.Range[str, 0, 1500] | None = None,
        aspect: str | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        steps: app_commands.Range[int, MIN_STEPS, MAX_STEPS] | None = None,
        cfg: app_commands.Range[float, MIN_CFG, MAX_CFG] | None = None,
        sampler: str | None = None,
        count: app_commands.Range[int, MIN_COUNT, MAX_COUNT] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        lora: app_commands.Range[str, 1, 100] | None = None,
        lora_weight: app_commands.Range[float, MIN_WEIGHT, MAX_WEIGHT] | None = None,
        style: app_commands.Range[str, 1, 100] | None = None,
        image: discord.Attachment | None = None,
        private: bool | None = None,
    ) -> None:
        # 1. Parse and validate (no I/O): bad input gets an ephemeral reply and queues nothing.
        try:
            link, text = split_links(prompt, hosts=self.link_hosts) if image is None else (None, prompt)
        except PipelineError as error:
            await report_error(interaction, error)
            return
        if lora:
            text = f"{text} <lora:{lora}:{1.0 if lora_weight is None else lora_weight:g}>"
        if aspect:
            text = f"{text} --ar {aspect}"
        if style:
            text = f'{text} --style "{style}"'
        try:
            source = None
            if image is not None:
                source = await self._image_prompt(interaction, image)
            elif link is not None:
                source = await self._kept(
                    await in_time(interaction, download(link, max_bytes=MAX_IMAGE_BYTES))
                )
            request, private_flag = self.submitter.prepare(
                text,
                source=source,
                negative_prompt=negative,
                seed=seed,
                steps=steps,
                cfg_scale=cfg,
                sampler=sampler,
                count=count,
                model=model,
            )
        except PipelineError as error:
            if interaction.response.is_done():  # deferred while the image downloaded
                await retract(interaction, error)
            else:
                await report_error(interaction, error)
            return
        # 2. Defer, store, announce. --private wins; else the option; else the member's default.
        await self.submitter.start(interaction, request, private=True if private_flag else private)

    async def _image_prompt(self, interaction: discord.Interaction, image: discord.Attachment) -> Upload:
        """Download and keep an image prompt (read before Discord's deadline, or deferred)."""
        if image.content_type not in IMAGE_TYPES:
            raise InvalidRequest("image", image.content_type or image.filename, "a PNG, JPEG or WebP image")
        if image.size > MAX_IMAGE_BYTES:
            raise InvalidRequest(
                "image", f"{image.size:,} bytes", f"at most {MAX_IMAGE_BYTES:,} bytes", reason="is too large"
            )
        return await self._kept(await in_time(interaction, image.read()))

    async def _kept(self, data: bytes) -> Upload:
        """An image prompt's bytes, stored by hash (refused when it is not an image or too large)."""
        return await self.submitter.jobs.images.upload(
            data, owner_id=None, max_pixels=IMAGE_PIXELS_FACTOR * self.submitter.max_pixels
        )

    @imagine.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = self.catalog.names()
        needle = current.casefold()
        return [app_commands.Choice(name=n, value=n) for n in names if needle in n.casefold()][:25]

    @imagine.autocomplete("lora")
    async def lora_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return choices(await asyncio.to_thread(self.loras.names), current)

    @imagine.autocomplete("style")
    async def style_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return choices(list(self.styles.book().names()), current)


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(
        Imagine(
            submitter=bot.submitter,
            catalog=bot.app.catalog,
            loras=bot.app.resources.loras,
            styles=bot.app.styles,
            link_hosts=DISCORD_CDN_HOSTS | {urlsplit(bot.settings.discord_api_base).hostname or ""},
        )
    )
