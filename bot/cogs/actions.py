"""Job actions: the buttons under a job (U1–U4, V1–V4, Vary, 🔄, ❌, 🗑) and what they do.

U/V/🔄 queue a child job (an upscale, a variation, a reroll) for whoever clicked (in remix mode,
``/settings remix``, V and 🔄 first open the prompt to edit); ❌ cancels a
queued or running job and 🗑 deletes a finished one, each for the job's owner or a member with
Manage Messages. ``custom_id``: ``nk:<action>:<job id>[:<image index>[:<strength>]]``.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.buttons import JOB_ID, CustomId, Feature, JobButton, visible_job
from bot.cogs.canvas import DYNAMIC_ITEMS as CANVAS_ITEMS
from bot.cogs.canvas import canvas_rows
from bot.cogs.community import MODAL_TITLE_LIMIT, LikeButton, ShareButton, UseButton, prompt_input
from bot.errors import NETWORK_ERRORS, JobGone, report_error
from bot.i18n import ENGLISH, Texts, for_interaction
from bot.interactions import destination_of, requester_of, viewer_of
from pipeline.errors import JobNotFound, NotPermitted
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.jobs.asynchronous import AsyncJobs

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.delivery import Deliverer

log = logging.getLogger(__name__)

UPSCALE = CustomId("nk:up:{job}:{index}", job=JOB_ID, index=r"[0-3]")
VARIATION = CustomId("nk:var:{job}:{index}:{strength}", job=JOB_ID, index=r"[0-3]", strength=r"strong|subtle")
REROLL = CustomId("nk:reroll:{job}", job=JOB_ID)
CANCEL = CustomId("nk:cancel:{job}", job=JOB_ID)
DELETE = CustomId("nk:delete:{job}", job=JOB_ID)
REMIXABLE = frozenset({"reroll", "variation", "canvas"})
"""The children remix mode opens the prompt of first (an upscale keeps the image as it is)."""


class RemixChildModal(discord.ui.Modal):
    """Remix mode: the parent's prompt and negative prompt to edit before its child is queued."""

    def __init__(
        self,
        actions: JobActions,
        parent: JobSnapshot,
        *,
        action: str,
        index: int,
        strength: str,
        canvas: str | None = None,
        texts: Texts,
    ) -> None:
        super().__init__(
            title=texts("remix.child_title", job_id=parent.id)[:MODAL_TITLE_LIMIT], timeout=15 * 60
        )
        self.actions = actions
        self.parent_id = parent.id
        self.child = {"action": action, "index": index, "strength": strength, "canvas": canvas}
        self.prompt = prompt_input(texts("remix.child_prompt"), parent.request.prompt)
        self.negative = prompt_input(
            texts("remix.child_negative"),
            parent.request.negative_prompt,
            custom_id="negative",
            required=False,
        )
        self.add_item(self.prompt)
        self.add_item(self.negative)

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await self.actions.start_child(
            interaction,
            parent_id=self.parent_id,
            prompts=(self.prompt.value, self.negative.value or ""),
            **self.child,  # type: ignore[arg-type]
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        await report_error(interaction, error, job_id=self.parent_id)


class JobActions(Feature):
    """The handlers of the job buttons."""

    def __init__(self, *, jobs: AsyncJobs, deliverer: Deliverer, client: discord.Client) -> None:
        self.jobs = jobs
        self.deliverer = deliverer
        self.client = client

    async def start_child(
        self,
        interaction: discord.Interaction,
        *,
        parent_id: int,
        action: str,
        index: int = 0,
        strength: str = "strong",
        prompts: tuple[str, str] | None = None,
        canvas: str | None = None,
    ) -> JobSnapshot | None:
        """Queue the reroll/upscale/variation of ``parent_id`` for the person who clicked.

        In the clicker's remix mode, a reroll or variation first opens the parent's prompts to
        edit (:class:`RemixChildModal`); ``prompts`` are the edited ones. The job is written
        before the click is acknowledged: a crash in between loses nothing.
        """
        try:
            if prompts is None and action in REMIXABLE and await self._remix_mode(interaction):
                parent = await self.jobs.visible(parent_id, viewer_of(interaction))
                texts = for_interaction(interaction)
                modal = RemixChildModal(
                    self, parent, action=action, index=index, strength=strength, canvas=canvas, texts=texts
                )
                await interaction.response.send_modal(modal)
                return None
            job = await self.jobs.submit_child(
                parent_id,
                action=action,
                index=index,
                strength=strength,
                requester=requester_of(interaction),
                destination=destination_of(interaction),
                viewer=viewer_of(interaction),
                prompts=prompts,
                canvas=canvas,
            )
        except JobNotFound:
            await report_error(interaction, JobGone("error.job_gone", job_id=parent_id))
            return None
        except Exception as error:
            await report_error(interaction, error, job_id=parent_id)
            return None
        await self.deliverer.acknowledge(interaction, job)
        return job

    async def _remix_mode(self, interaction: discord.Interaction) -> bool:
        settings = await self.jobs.community.member_settings(discord_id=interaction.user.id)
        return settings.remix

    async def cancel(self, interaction: discord.Interaction, *, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self.jobs.cancel(job_id, viewer=viewer_of(interaction))
        texts = for_interaction(interaction)
        if job.status == "cancelled":
            await self.deliverer.deliver(job_id)
            text = texts("cancel.done", job_id=job_id)
        else:  # running: it stops at its next step, or finishes if it shares a batch with others
            text = texts("cancel.stopping", job_id=job_id)
        await interaction.followup.send(text, ephemeral=True)

    async def delete(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Delete the job, its images, the message clicked and its showcase post."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        showcased = await self.jobs.community.showcase_message(job_id)
        await self.jobs.delete(job_id, viewer=viewer_of(interaction))
        messages = [interaction.message] if interaction.message is not None else []
        if showcased is not None:
            channel_id, message_id = showcased
            messages.append(self.client.get_partial_messageable(channel_id).get_partial_message(message_id))
        for message in messages:
            try:
                await message.delete()
            except NETWORK_ERRORS as error:
                log.info("could not delete message %d of job %d: %s", message.id, job_id, error)
        await interaction.followup.send(
            for_interaction(interaction)("delete.done", job_id=job_id), ephemeral=True
        )


# -- the buttons ----------------------------------------------------------------------------------


class UpscaleButton(JobButton, custom_ids=UPSCALE):
    """U1…U4: a 2x upscale of image ``index``."""

    def __init__(self, job_id: int, index: int, *, label: str | None = None) -> None:
        self.index = index
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label or ENGLISH("button.upscale", number=index + 1),
                style=discord.ButtonStyle.secondary,
                custom_id=UPSCALE.format(job=job_id, index=index),
            ),
        )

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"]), "index": int(match["index"])}

    async def run(self, interaction: discord.Interaction) -> None:
        await JobActions.of(interaction).start_child(
            interaction, parent_id=self.job_id, action="upscale", index=self.index
        )


class VariationButton(JobButton, custom_ids=VARIATION):
    """V1…V4 (strong variation of image ``index``), and Vary (Strong) / Vary (Subtle) on singles."""

    def __init__(
        self, job_id: int, index: int, strength: str = "strong", *, label: str | None = None
    ) -> None:
        self.index = index
        self.strength = strength
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label or ENGLISH("button.variation", number=index + 1),
                style=discord.ButtonStyle.secondary,
                custom_id=VARIATION.format(job=job_id, index=index, strength=strength),
            ),
        )

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"]), "index": int(match["index"]), "strength": match["strength"]}

    async def run(self, interaction: discord.Interaction) -> None:
        await JobActions.of(interaction).start_child(
            interaction, parent_id=self.job_id, action="variation", index=self.index, strength=self.strength
        )


class RerollButton(JobButton, custom_ids=REROLL):
    """🔄: the same request again with new seeds."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="🔄", style=discord.ButtonStyle.secondary, custom_id=REROLL.format(job=job_id)
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await JobActions.of(interaction).start_child(interaction, parent_id=self.job_id, action="reroll")


class OwnerOnlyButton(JobButton):
    """A button only the job's owner or a member with Manage Messages may press."""

    async def check(self, interaction: discord.Interaction) -> None:
        job = await visible_job(JobActions.of(interaction).jobs, interaction, self.job_id)
        if not job.manageable_by(viewer_of(interaction)):
            raise NotPermitted(NotPermitted.MANAGE, key="not_permitted")


class CancelButton(OwnerOnlyButton, custom_ids=CANCEL):
    """❌: cancel a queued or running job."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="❌", style=discord.ButtonStyle.secondary, custom_id=CANCEL.format(job=job_id)
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await JobActions.of(interaction).cancel(interaction, job_id=self.job_id)


class DeleteButton(OwnerOnlyButton, custom_ids=DELETE):
    """🗑: delete a finished job's message and its images."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="🗑️", style=discord.ButtonStyle.secondary, custom_id=DELETE.format(job=job_id)
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await JobActions.of(interaction).delete(interaction, job_id=self.job_id)


BUTTONS: tuple[type[JobButton], ...] = (
    UpscaleButton,
    VariationButton,
    RerollButton,
    CancelButton,
    DeleteButton,
)
"""Registered in ``setup_hook`` (by :func:`setup`)."""


# -- the views ------------------------------------------------------------------------------------


def result_view(
    job_id: int,
    image_count: int,
    *,
    likes: int = 0,
    texts: Texts = ENGLISH,
    size: tuple[int, int] | None = None,
) -> discord.ui.View:
    """The buttons under a finished job: U/V per image for grids; upscale/vary for singles; then
    a row of ❤ (with the like count), 📌 Share and Use this prompt; a single image of ``size``
    also gets Zoom Out, Make Square, Vary (Region) and the Pans. Labels in ``texts``' language."""
    view = discord.ui.View(timeout=None)
    if image_count > 1:
        for index in range(image_count):
            view.add_item(UpscaleButton(job_id, index, label=texts("button.upscale", number=index + 1)))
        view.add_item(RerollButton(job_id))
        for index in range(image_count):
            view.add_item(VariationButton(job_id, index, label=texts("button.variation", number=index + 1)))
        view.add_item(DeleteButton(job_id))
        _place_rows(view, image_count)
    else:
        view.add_item(UpscaleButton(job_id, 0, label=texts("button.upscale_single")))
        view.add_item(VariationButton(job_id, 0, "strong", label=texts("button.vary_strong")))
        view.add_item(VariationButton(job_id, 0, "subtle", label=texts("button.vary_subtle")))
        view.add_item(RerollButton(job_id))
        view.add_item(DeleteButton(job_id))
    community_row = 2 if image_count > 1 else 1
    community = (
        LikeButton(job_id, likes),
        ShareButton(job_id, label=texts("button.share")),
        UseButton(job_id, label=texts("button.use")),
    )
    for item in community:
        item.row = community_row
        view.add_item(item)
    if image_count == 1 and size is not None:
        for item in canvas_rows(job_id, size, texts):
            view.add_item(item)
    return view


def queued_view(job_id: int) -> discord.ui.View:
    """The ❌ button shown while a job waits or runs."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def _place_rows(view: discord.ui.View, image_count: int) -> None:
    """Row 0: U1…Un and 🔄; row 1: V1…Vn and 🗑 (Midjourney's layout)."""
    for position, item in enumerate(view.children):
        item.row = 0 if position <= image_count else 1


async def setup(bot: NankeBot) -> None:
    bot.add_dynamic_items(*BUTTONS, *CANVAS_ITEMS)
    await bot.add_cog(JobActions(jobs=bot.jobs, deliverer=bot.deliverer, client=bot))
