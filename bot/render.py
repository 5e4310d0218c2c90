"""What nanke's messages look like: the result embed, progress text and the attached image.

Every text is said in the language of the ``texts`` given (:mod:`bot.i18n`; English by default).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import discord
from PIL import Image

from bot.i18n import ENGLISH, TEXTS, Texts
from pipeline.domain.grid import Picture
from pipeline.domain.metadata import encode_for_upload
from pipeline.domain.moderation import Showing
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.jobs.runs import POISON_ERROR
from pipeline.queue.worker import INTERNAL_ERROR, MODEL_UNAVAILABLE, TIME_LIMIT_ERROR

EMBED_COLOUR = discord.Colour.from_rgb(88, 101, 242)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
CHILD_KINDS = ("reroll", "upscale", "variation", "remix")
"""The kinds of job that derive from another one (their headline names it)."""


def upload_limit(guild: discord.Guild | None) -> int:
    """The largest attachment a guild accepts (boosts raise it), or Discord's default."""
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def headline(job: JobSnapshot, texts: Texts = ENGLISH) -> str:
    """One line naming the job: its prompt (shortened) and, for children, what it derives from."""
    prompt = shorten(job.request.prompt, 180)
    if job.kind in CHILD_KINDS and job.parent_id is not None:
        index = job.parent_image_index
        image = texts("headline.image", number=index + 1) if index is not None else ""
        # A remix credits the original author by name: plain text, so nobody is pinged.
        credit = (
            texts("headline.credit", name=job.parent_owner_name)
            if job.kind == "remix" and job.parent_owner_name
            else ""
        )
        kind = texts(f"headline.kind.{job.kind}")
        return texts(
            "headline.child", prompt=prompt, kind=kind, parent=job.parent_id, image=image, credit=credit
        )
    return f"**{prompt}**"


def job_tag(job: JobSnapshot, texts: Texts = ENGLISH) -> str:
    """How every queue, progress and failure text of a job ends (a restarted bot finds them by it)."""
    return texts("job.tag", job_id=job.id)


def job_tags(job: JobSnapshot) -> set[str]:
    """:func:`job_tag` in every language: what a message of the job may end with."""
    return {job_tag(job, texts) for texts in TEXTS.values()}


def queued_text(job: JobSnapshot, position: int | None, texts: Texts = ENGLISH) -> str:
    place = texts("queued.position", position=position) if position else texts("queued.starting")
    return texts("queued.text", headline=headline(job, texts), place=place, tag=job_tag(job, texts))


def progress_text(job: JobSnapshot, step: int, total: int, elapsed_s: float, texts: Texts = ENGLISH) -> str:
    return texts(
        "progress.text",
        headline=headline(job, texts),
        percent=int(100 * step / total) if total else 0,
        step=step,
        total=total,
        seconds=f"{elapsed_s:.0f}",
        tag=job_tag(job, texts),
    )


def finished_text(job: JobSnapshot, mention: str | None = None, texts: Texts = ENGLISH) -> str:
    who = f"{mention} " if mention else ""
    return f"{who}{headline(job, texts)}"


def failure_text(job: JobSnapshot, mention: str | None = None, texts: Texts = ENGLISH) -> str:
    """A failed or cancelled job; the failure's own words (the worker's, in English) are kept."""
    who = f"{mention} " if mention else ""
    what = (
        texts("failure.cancelled")
        if job.status == "cancelled"
        else f"⚠️ {shorten(failure_reason(job.error, texts), 1000)}"
    )
    return f"{who}{headline(job, texts)}\n{what}{job_tag(job, texts)}"


def failure_reason(error: str | None, texts: Texts = ENGLISH) -> str:
    """Why a job failed: the worker's own reasons in the member's language, any other as it is."""
    if not error:
        return texts("failure.unknown")
    key = _WORKER_REASONS.get(error)
    if key is not None:
        return texts(key)
    head, _, tail = TIME_LIMIT_ERROR.partition("{limit_s:g}")
    if error.startswith(head) and error.endswith(tail):
        return texts("failure.too_long", seconds=error[len(head) : len(error) - len(tail)])
    return error


_WORKER_REASONS = {
    INTERNAL_ERROR: "failure.internal",
    MODEL_UNAVAILABLE: "failure.model_unavailable",
    POISON_ERROR: "failure.poison",
}


def too_large_note(texts: Texts = ENGLISH) -> str:
    """Said instead of the image when it cannot fit the channel's upload limit."""
    return texts("result.too_large")


def result_embed(job: JobSnapshot, texts: Texts = ENGLISH) -> discord.Embed:
    """Prompt, negative prompt, seeds, steps, sampler, CFG, size, model and job id."""
    request = job.request
    embed = discord.Embed(description=shorten(request.prompt, 4000), colour=EMBED_COLOUR)
    if request.negative_prompt:
        embed.add_field(
            name=texts("embed.negative"), value=shorten(request.negative_prompt, 1000), inline=False
        )
    seeds = [image.seed for image in job.images] or request.seeds
    embed.add_field(
        name=texts("embed.seed" if len(seeds) == 1 else "embed.seeds"), value=", ".join(map(str, seeds))
    )
    embed.add_field(name=texts("embed.steps"), value=str(request.steps))
    embed.add_field(name=texts("embed.sampler"), value=request.sampler)
    embed.add_field(name=texts("embed.cfg"), value=f"{request.cfg_scale:g}")
    size = job.images[0] if job.images else request
    embed.add_field(name=texts("embed.size"), value=f"{size.width}×{size.height}")
    model = job.model_name or request.model or texts("embed.default_model")
    embed.add_field(
        name=texts("embed.model"), value=f"{model} [{job.model_hash}]" if job.model_hash else model
    )
    if request.strength is not None:
        embed.add_field(name=texts("embed.strength"), value=f"{request.strength:g}")
    if request.init_image is not None:
        source = f"`{request.init_image[:12]}`" + (f" · {request.canvas}" if request.canvas else "")
        embed.add_field(name=texts("embed.source"), value=source)
    footer = texts("embed.footer", job_id=job.id, owner=job.owner_name)
    if job.parent_id is not None:
        footer += texts("embed.footer_parent", parent=job.parent_id)
    embed.set_footer(text=footer)
    return embed


def result_file(
    job: JobSnapshot,
    images: Sequence[Image.Image],
    *,
    max_bytes: int = DEFAULT_UPLOAD_LIMIT,
    spoiler: bool = False,
) -> discord.File:
    """The job's image (a grid when it has several) as an upload that fits ``max_bytes``
    (``spoiler``: behind Discord's spoiler cover).

    The file carries A1111 ``parameters`` (the first image's, for a grid, as the WebUI does), in a
    PNG when it fits and otherwise in a high-quality WebP or JPEG.
    """
    picture = Picture.of(images, job.parameters_text())
    encoded = encode_for_upload(picture.image, picture.parameters, max_bytes=max_bytes)
    return upload(job, encoded.data, grid=picture.grid, suffix=encoded.suffix, spoiler=spoiler)


def upload(
    job: JobSnapshot, data: bytes, *, grid: bool, suffix: str = ".png", spoiler: bool = False
) -> discord.File:
    """``data`` (the job's image, or its grid) as the file a result message carries."""
    stem = "grid" if grid else "image"
    return discord.File(io.BytesIO(data), filename=f"nanke-{job.id}-{stem}{suffix}", spoiler=spoiler)


def showing_note(showing: Showing, texts: Texts = ENGLISH) -> str | None:
    """Why some images are held back or covered in this channel (``None`` when none is)."""
    if showing.withheld:
        numbers = ", ".join(str(index + 1) for index in showing.withheld)
        key = "result.withheld_all" if not showing.shown else "result.withheld"
        return texts(key, images=numbers, count=len(showing.withheld))
    if showing.spoiler:
        return texts("result.spoiler")
    return None


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten_lines(lines: list[str], limit: int) -> str:
    """``lines`` joined, each on its own line, dropping the last ones (for "…") to fit ``limit``."""
    text = "\n".join(lines)
    while len(text) > limit and len(lines) > 1:
        lines = lines[:-1]
        text = "\n".join([*lines, "…"])
    return text[:limit]
