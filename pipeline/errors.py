"""The pipeline's exception hierarchy.

Every error a person can cause or meet carries a short message meant to be shown as it is,
in a terminal or in Discord; unexpected failures stay ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PipelineError(Exception):
    """Base class of every error raised on purpose by ``pipeline``.

    The message is English, for a terminal or a member as it is. ``key`` (optional) names what the
    message says and ``params`` hold the values it is made of, so that a front door can say the same
    in another language without reading the English: ``QueueFull(text, key="queue_full",
    params={"unfinished": 3, "limit": 3})``. A front door that does not know ``key`` shows the message.
    """

    def __init__(
        self, *args: object, key: str | None = None, params: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(*args)
        self.key = key
        self.params: dict[str, object] = dict(params or {})


class InvalidRequest(PipelineError, ValueError):
    """A request field (or a prompt flag) has a value nanke will not run.

    ``field`` names the field or flag (``steps``, ``--ar``), ``value`` is what was given (``shown``:
    as the message shows it) and ``allowed`` says in words what would have been accepted. ``key``
    and ``params`` (see :class:`PipelineError`) name the reason and what would have been accepted
    together (``"whole_number_out_of_range"`` with ``low`` and ``high``).
    """

    def __init__(
        self,
        field: str,
        value: Any,
        allowed: str,
        *,
        reason: str | None = None,
        key: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.reason = reason
        try:
            shown = repr(value) if isinstance(value, str) else str(value)
        except ValueError:  # an integer too long for Python to print
            shown = f"a {type(value).__name__} too large to show"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self.shown = shown
        head = f"{field}: {shown} {reason}" if reason else f"{field}: {shown} is not allowed"
        super().__init__(f"{head} (allowed: {allowed})", key=key, params=params)


class ModelError(PipelineError):
    """The model could not be found or loaded."""


class ModelNotFound(ModelError):
    """No checkpoint or diffusers folder exists where the setting points."""


class ModelLoadError(ModelError):
    """The model exists but could not be loaded (wrong format, missing config, no network)."""


class ResourceError(PipelineError):
    """A LoRA, embedding or VAE a request calls on cannot be used; the message names the file by
    the name the member wrote (never by its path), so it is shown as it is."""


class ResourceNotFound(ResourceError, LookupError):
    """A LoRA, embedding or VAE the request names is not in its folder."""


class ResourceMismatch(ResourceError):
    """A LoRA, embedding or VAE does not fit the model (it was made for another architecture)."""


class DeviceError(PipelineError):
    """The requested device or dtype cannot be used on this machine."""


class GenerationError(PipelineError):
    """Generation ran but did not produce usable images."""


class BlackImageError(GenerationError):
    """The output was NaN / all black even after retrying the VAE in float32."""


class OutOfMemory(GenerationError):
    """The device ran out of memory even after the memory-saving fallbacks."""


class Cancelled(PipelineError):
    """The job was cancelled while it was running."""


# -- jobs (raised by the job interface, ``pipeline.queue.jobs``) -----------------------------------


class JobError(PipelineError):
    """A job cannot be found or cannot do what was asked of it now."""


class JobNotFound(JobError, LookupError):
    """No job has this id (it never existed or was deleted)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"Job {job_id} was not found (it never existed, or it was deleted).",
            key="job_not_found",
            params={"job_id": job_id},
        )
        self.job_id = job_id


class JobBusy(JobError):
    """The job is in a state that does not allow this (deleting a running job, say)."""


class QueueFull(JobError):
    """The member already has as many unfinished jobs as allowed."""


class NotPermitted(JobError):
    """The member may not do this to this job (another member's job, and no Manage Messages)."""

    MANAGE = "Only the person who asked for this job (or a moderator) can do that."


class Banned(JobError):
    """An admin barred the member from asking for images in this server."""


class ContentRefused(JobError):
    """The server's content rules refuse this: the words of a prompt, or adult content outside an
    age-restricted channel."""


class DailyLimitReached(JobError):
    """The member already asked for as many images today as the server allows them."""


class ApiKeyError(JobError):
    """An API key cannot be created as asked (its name is taken or not allowed)."""


class NotCancellable(JobError):
    """The job has already finished."""


class StoreError(PipelineError):
    """The database or the image store failed in a known way (an old schema, say)."""
