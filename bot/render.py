"""What nanke's messages look like: the result embed, progress text and the attached image."""

from __future__ import annotations

import io
from collections.abc import Sequence

import discord
from PIL import Image

from pipeline.domain.grid import Picture
from pipeline.domain.metadata import encode_for_upload
from pipeline.queue.jobs import JobSnapshot

EMBED_COLOUR = discord.Colour.from_rgb(88, 101, 242)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOO_LARGE_NOTE = (
    "⚠️ The image is too large to attach in this channel; `main.py show` on the host has the file."
)
KIND_WORDS = {"reroll": "Reroll", "upscale": "Upscale", "variation": "Variation", "remix": "Remix"}


def upload_limit(guild: discord.Guild | None) -> int:
    """The largest attachment a guild accepts (boosts raise it), or Discord's default."""
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def headline(job: JobSnapshot) -> str:
    """One line naming the job: its prompt (shortened) and, for children, what it derives from."""
    prompt = shorten(job.request.prompt, 180)
    if job.kind in KIND_WORDS and job.parent_id is not None:
        image = f" image {job.parent_image_index + 1}" if job.parent_image_index is not None else ""
        # A remix credits the original author by name: plain text, so nobody is pinged.
        credit = f" by @{job.parent_owner_name}" if job.kind == "remix" and job.parent_owner_name else ""
        return f"**{prompt}** — {KIND_WORDS[job.kind]} of #{job.parent_id}{image}{credit}"
    return f"**{prompt}**"


def job_tag(job: JobSnapshot) -> str:
    """How every queue, progress and failure text of a job ends (a restarted bot finds them by it)."""
    return f" · job #{job.id}"


def queued_text(job: JobSnapshot, position: int | None) -> str:
    place = f"position {position} in the queue" if position else "starting"
    return f"{headline(job)}\n⏳ Waiting to start ({place}){job_tag(job)}"


def progress_text(job: JobSnapshot, step: int, total: int, elapsed_s: float) -> str:
    percent = int(100 * step / total) if total else 0
    return f"{headline(job)}\n🎨 {percent}% · step {step}/{total} · {elapsed_s:.0f} s{job_tag(job)}"


def finished_text(job: JobSnapshot, mention: str | None = None) -> str:
    who = f"{mention} " if mention else ""
    return f"{who}{headline(job)}"


def failure_text(job: JobSnapshot, mention: str | None = None) -> str:
    who = f"{mention} " if mention else ""
    if job.status == "cancelled":
        return f"{who}{headline(job)}\n❌ Cancelled{job_tag(job)}"
    return f"{who}{headline(job)}\n⚠️ {shorten(job.error or 'Generation failed.', 1000)}{job_tag(job)}"


def result_embed(job: JobSnapshot) -> discord.Embed:
    """Prompt, negative prompt, seeds, steps, sampler, CFG, size, model and job id."""
    request = job.request
    embed = discord.Embed(description=shorten(request.prompt, 4000), colour=EMBED_COLOUR)
    if request.negative_prompt:
        embed.add_field(name="Negative prompt", value=shorten(request.negative_prompt, 1000), inline=False)
    seeds = [image.seed for image in job.images] or request.seeds
    embed.add_field(name="Seed" if len(seeds) == 1 else "Seeds", value=", ".join(map(str, seeds)))
    embed.add_field(name="Steps", value=str(request.steps))
    embed.add_field(name="Sampler", value=request.sampler)
    embed.add_field(name="CFG scale", value=f"{request.cfg_scale:g}")
    size = job.images[0] if job.images else request
    embed.add_field(name="Size", value=f"{size.width}×{size.height}")
    model = job.model_name or request.model or "default"
    embed.add_field(name="Model", value=f"{model} [{job.model_hash}]" if job.model_hash else model)
    if request.strength is not None:
        embed.add_field(name="Strength", value=f"{request.strength:g}")
    footer = f"Job #{job.id} · by {job.owner_name}"
    if job.parent_id is not None:
        footer += f" · from #{job.parent_id}"
    embed.set_footer(text=footer)
    return embed


def result_file(
    job: JobSnapshot, images: Sequence[Image.Image], *, max_bytes: int = DEFAULT_UPLOAD_LIMIT
) -> discord.File:
    """The job's image (a grid when it has several) as an upload that fits ``max_bytes``.

    The file carries A1111 ``parameters`` (the first image's, for a grid, as the WebUI does), in a
    PNG when it fits and otherwise in a high-quality WebP or JPEG.
    """
    picture = Picture.of(images, job.parameters_text())
    encoded = encode_for_upload(picture.image, picture.parameters, max_bytes=max_bytes)
    stem = "grid" if picture.grid else "image"
    return discord.File(io.BytesIO(encoded.data), filename=f"nanke-{job.id}-{stem}{encoded.suffix}")


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
