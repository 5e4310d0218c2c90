"""Reading the image files of jobs (one image, the sources of child jobs, a job's whole picture),
and keeping the images people send as sources."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.domain.grid import Picture
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest, PipelineError
from pipeline.queue.jobs.snapshots import ImageSnapshot, JobSnapshot, ListedJob
from pipeline.queue.jobs.store import JobStore
from storage import find_image_path, record_upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """A kept source image: what a request names it by, and its size."""

    sha256: str
    width: int
    height: int


class Images:
    """The image files of jobs, read through the image store."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def read(self, image: ImageSnapshot) -> bytes:
        """The stored file's bytes (a PNG with its parameters)."""
        return self._store.read(image.path)

    def path(self, image: ImageSnapshot) -> Path:
        """Where the file lies on this machine (for the command line to show)."""
        return self._store.path(image.path)

    def thumbnails(self, entries: Sequence[ListedJob], *, side: int) -> dict[int, bytes]:
        """Small PNGs (at most ``side`` pixels a side) of the listed jobs' first images, by job id;
        a job without an image, or whose file is missing, has none."""
        thumbnails: dict[int, bytes] = {}
        for entry in entries:
            if entry.image_path is None:
                continue
            try:
                data = self._store.read(entry.image_path)
            except OSError:
                log.warning("job %d: image %s is missing from the store", entry.job_id, entry.image_path)
                continue
            picture = Image.open(io.BytesIO(data)).convert("RGB")
            picture.thumbnail((side, side))
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            thumbnails[entry.job_id] = buffer.getvalue()
        return thumbnails

    def load(self, job: JobSnapshot) -> list[Image.Image]:
        """The job's images, decoded (RGB)."""
        return [Image.open(io.BytesIO(self.read(image))).convert("RGB") for image in job.images]

    def posted(self, job: JobSnapshot) -> bytes | None:
        """The PNG that shows all of the job's images, as stored: its one image, or the grid
        built when the images were made; ``None`` when there is none (no images, a grid made
        before grids were stored, or a file gone missing)."""
        if not job.images:
            return None
        path = job.images[0].path if len(job.images) == 1 else job.grid_path
        if path is None:
            return None
        try:
            return self._store.read(path)
        except OSError:
            log.warning("job %d: %s is missing from the image store", job.id, path)
            return None

    def picture(self, job: JobSnapshot) -> Picture | None:
        """The job's image, or a grid of its images, with its parameters; ``None`` without images."""
        images = self.load(job)
        return Picture.of(images, job.parameters_text()) if images else None

    def upload(self, data: bytes, *, owner_id: int | None, max_pixels: int) -> Upload:
        """Keep an image someone sent as the source of img2img jobs; what a request names as its
        ``init_image`` (the sha256 of the PNG it is stored as: RGB, without metadata).

        Raises :class:`~pipeline.errors.InvalidRequest` (field ``image``) for data that is not an
        image nanke reads, or one larger than ``max_pixels``.
        """
        try:
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise InvalidRequest(
                        "image", f"{width}x{height}", f"at most {max_pixels:,} pixels", reason="is too large"
                    )
                picture = opened.convert("RGB")
        except InvalidRequest:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise InvalidRequest(
                "image", f"{len(data)} bytes", "a PNG, JPEG or WebP image", reason="cannot be read"
            ) from error
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        file = self._store.put(buffer.getvalue(), suffix=".png")
        with self._store.session() as session:
            record_upload(
                session,
                sha256=file.sha256,
                path=file.path,
                width=width,
                height=height,
                size_bytes=file.size_bytes,
                owner_id=owner_id,
            )
        return Upload(file.sha256, width, height)

    def sources(self, requests: Sequence[GenerationRequest]) -> dict[str, Image.Image]:
        """The stored images that img2img and upscale requests start from, by sha256."""
        images: dict[str, Image.Image] = {}
        for request in requests:
            if request.init_image and request.init_image not in images:
                with self._store.session() as session:
                    path = find_image_path(session, sha256=request.init_image)
                if path is None:
                    raise PipelineError(f"The source image {request.init_image[:12]}… no longer exists.")
                try:
                    data = self._store.read(path)
                    images[request.init_image] = Image.open(io.BytesIO(data)).convert("RGB")
                except OSError as error:
                    log.warning("source image %s unreadable: %s", path, error)
                    raise PipelineError(
                        f"The source image {request.init_image[:12]}… could not be read."
                    ) from error
        return images
