"""What the job interface takes and hands out: plain values and frozen snapshots, never ORM rows.

The bot's event loop, the GPU worker thread and the command line can share these safely. The
vocabularies of jobs (kinds, statuses) are the storage schema's, re-exported here so that
nothing above the job interface imports ``storage``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.metadata import format_infotext
from pipeline.domain.request import GenerationRequest
from storage import FINISHED_STATUSES, JOB_KINDS, Delivery, Job, ListedJob

__all__ = [
    "FINISHED_STATUSES",
    "JOB_KINDS",
    "DeliverySnapshot",
    "Destination",
    "ImageSnapshot",
    "JobSnapshot",
    "ListedJob",
    "Requester",
    "Viewer",
]


@dataclass(frozen=True)
class MemberSettings:
    """A member's own settings: new jobs private by default, live previews, remix mode."""

    private: bool = False
    previews: bool = True
    remix: bool = False


@dataclass(frozen=True)
class Requester:
    """Who asks: a Discord member (``discord_id``), a key of the HTTP API (``user_id``: the user
    the key acts as), or the local command line (neither).

    A requester outside Discord has no channel: ``guild_id`` names the server whose content rules
    and listings its jobs belong to, and ``age_restricted`` whether it may ask for adult content.
    """

    name: str
    discord_id: int | None = None
    user_id: int | None = None
    guild_id: int | None = None
    age_restricted: bool = False

    @property
    def local(self) -> bool:
        """The command line: no queue limit, no content rules."""
        return self.discord_id is None and self.user_id is None


@dataclass(frozen=True)
class Viewer:
    """Who acts on a job, and where: a member in a guild (``None``: a direct message), and whether
    they may manage other members' jobs there (Discord's Manage Messages); or a key of the HTTP
    API (``user_id``), which sees its own jobs and the public ones of its guild."""

    discord_id: int | None
    guild_id: int | None
    moderator: bool = False
    user_id: int | None = None


@dataclass(frozen=True)
class Destination:
    """Where the result goes in Discord, and the interaction that may still answer there."""

    channel_id: int
    guild_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    upload_limit: int | None = None
    age_restricted: bool = False
    """Discord marks the channel age-restricted: adult content may be asked for and shown there."""


@dataclass(frozen=True)
class ImageSnapshot:
    index: int
    seed: int
    width: int
    height: int
    sha256: str
    path: str
    """Where the file is in the image store (read it with ``JobService.images``)."""
    flagged: bool = False
    """Adult content (the safety check flagged it, or its prompt is NSFW): shown only in
    age-restricted channels."""


@dataclass(frozen=True)
class JobSnapshot:
    """A read-only copy of a job row and its images."""

    id: int
    kind: str
    status: str
    request: GenerationRequest
    owner_name: str
    owner_discord_id: int | None
    parent_id: int | None
    parent_image_index: int | None
    guild_id: int | None
    channel_id: int | None
    model_name: str | None
    model_hash: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    images: tuple[ImageSnapshot, ...] = field(default_factory=tuple)
    environment_json: str | None = None
    """How a finished job was made (device, dtype, library versions, its batch): see the worker."""
    private: bool = False
    """Kept out of listings, search and the showcase."""
    parent_owner_name: str | None = None
    """Who made the parent job (a remix credits them)."""
    flagged: bool = False
    """Adult content (an NSFW prompt, or an image the safety check flagged): kept out of public
    listings and the showcase, shown only in age-restricted channels."""
    owner_id: int | None = None
    """The owner's user id (what an API key's viewer is matched by)."""
    dispatch_id: str | None = None
    """The remote batch it runs (or ran) in, when a remote GPU worker made it."""
    worker: str | None = None
    """The remote GPU worker that runs (or made) it."""
    grid_path: str | None = None
    """Its grid, as posted, in the image store (jobs of several images made since 0009)."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def manageable_by(self, viewer: Viewer) -> bool:
        """Whether ``viewer`` may cancel or delete this job: its owner, or a moderator where it is."""
        return (
            viewer.moderator
            or (viewer.discord_id is not None and viewer.discord_id == self.owner_discord_id)
            or (viewer.user_id is not None and viewer.user_id == self.owner_id)
        )

    @property
    def resources(self) -> dict[str, str]:
        """The infotext pairs naming the LoRA, embedding and VAE files the job was made with
        (``Lora hashes``, ``TI hashes``, ``VAE hash``, ``VAE``), as the worker recorded them."""
        try:
            recorded = json.loads(self.environment_json or "{}").get("resources")
        except (ValueError, AttributeError):
            return {}
        if not isinstance(recorded, dict):
            return {}
        return {str(key): str(value) for key, value in recorded.items()}

    def parameters_text(self, seed: int | None = None) -> str:
        """AUTOMATIC1111's ``parameters`` text of the image made with ``seed`` (default: the first
        image's, what a grid of the job carries)."""
        if seed is None:
            seed = self.images[0].seed if self.images else self.request.seeds[0]
        return format_infotext(
            self.request,
            seed=seed,
            model_name=self.model_name,
            model_hash=self.model_hash,
            extra=self.resources,
        )

    @classmethod
    def of(cls, job: Job) -> JobSnapshot:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            request=GenerationRequest.from_json(job.request_json),
            owner_name=job.owner.name,
            owner_discord_id=job.owner.discord_id,
            parent_id=job.parent_id,
            parent_image_index=job.parent_image_index,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            model_name=job.model_name,
            model_hash=job.model_hash,
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            images=tuple(
                ImageSnapshot(i.index, i.seed, i.width, i.height, i.sha256, i.path, i.flagged)
                for i in job.images
            ),
            environment_json=job.environment_json,
            private=job.private,
            parent_owner_name=job.parent.owner.name if job.parent is not None else None,
            flagged=job.flagged,
            owner_id=job.owner_id,
            dispatch_id=job.dispatch_id,
            worker=job.worker,
            grid_path=job.grid_path,
        )


@dataclass(frozen=True)
class DeliverySnapshot:
    """A read-only copy of where a job's result goes in Discord and how far it got."""

    job_id: int
    channel_id: int
    guild_id: int | None
    application_id: int | None
    interaction_token: str | None = field(repr=False)
    token_expires_at: datetime | None
    upload_limit: int | None
    progress_message_id: int | None
    result_message_id: int | None
    status: str
    attempts: int
    created_at: datetime
    posting_since: datetime | None = None
    """When posting the result was first attempted; set while an attempt may have reached Discord."""
    age_restricted: bool = False
    """The channel is age-restricted: flagged images are shown there like any other."""

    @classmethod
    def of(cls, delivery: Delivery) -> DeliverySnapshot:
        return cls(
            job_id=delivery.job_id,
            channel_id=delivery.channel_id,
            guild_id=delivery.guild_id,
            application_id=delivery.application_id,
            interaction_token=delivery.interaction_token,
            token_expires_at=delivery.token_expires_at,
            upload_limit=delivery.upload_limit,
            progress_message_id=delivery.progress_message_id,
            result_message_id=delivery.result_message_id,
            status=delivery.status,
            attempts=delivery.attempts,
            created_at=delivery.created_at,
            posting_since=delivery.posting_since,
            age_restricted=delivery.age_restricted,
        )
