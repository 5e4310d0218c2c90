"""What travels between the bot and a GPU worker, as JSON: a batch, its progress and its outcomes.

Images travel as base64 PNG (sources and results, lossless) or JPEG (previews); requests as
their canonical JSON, so a worker makes exactly what the job's row says. Errors travel as their
kind and message: a model error, a pipeline error (its text is meant for people, with the key
and values a front door translates it by) or an unexpected one (its text stays in the logs).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from PIL import Image

from pipeline.domain.request import GenerationRequest
from pipeline.engine.results import StepProgress
from pipeline.errors import ModelError, PipelineError
from pipeline.queue.executor import Encoded, Failed, Outcome, Stopped, Task
from pipeline.queue.jobs import ImageFile

log = logging.getLogger(__name__)

VERSION = 1


class WireError(ValueError):
    """A message that is not one this version of nanke reads."""


class WorkerFailure(Exception):
    """A worker failed a batch unexpectedly; the message (for the log) is what it said."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- the batch ------------------------------------------------------------------------------------


def batch_message(tasks: Sequence[Task], sources: Mapping[str, Image.Image]) -> dict[str, Any]:
    """The task's argument: each job's id and request, and the source images by sha256."""
    return {
        "version": VERSION,
        "tasks": [{"job_id": task.job_id, "request": task.request.to_json()} for task in tasks],
        "sources": {sha256: _b64(_png(image)) for sha256, image in sources.items()},
    }


def read_batch(message: Mapping[str, Any]) -> tuple[list[Task], dict[str, Image.Image]]:
    _check_version(message)
    try:
        tasks = [
            Task(int(item["job_id"]), GenerationRequest.from_json(item["request"]))
            for item in message["tasks"]
        ]
        sources = {str(sha256): _picture(_unb64(data)) for sha256, data in message["sources"].items()}
    except (KeyError, TypeError, ValueError) as error:
        raise WireError(f"an unreadable batch: {error}") from error
    return tasks, sources


# -- progress -------------------------------------------------------------------------------------


def progress_meta(
    job_ids: Sequence[int], progress: StepProgress, *, previews: Mapping[str, str] | None, preview_step: int
) -> dict[str, Any]:
    """A task state's meta: the step of ``job_ids`` and the latest previews (kept until newer ones)."""
    return {
        "job_ids": list(job_ids),
        "step": progress.step,
        "total": progress.total_steps,
        "elapsed": progress.elapsed_s,
        "part": progress.part,
        "parts": progress.parts,
        "previews": dict(previews or {}),
        "preview_step": preview_step,
    }


def preview_payload(previews: Mapping[tuple[int, int], Image.Image]) -> dict[str, str]:
    """Previews by ``"position:index"``, each a small JPEG."""
    encoded = {}
    for (position, index), image in previews.items():
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=75)
        encoded[f"{position}:{index}"] = _b64(buffer.getvalue())
    return encoded


def read_progress(meta: Mapping[str, Any], *, with_previews: bool) -> tuple[tuple[int, ...], StepProgress]:
    previews = None
    if with_previews and meta.get("previews"):
        previews = {}
        for key, data in meta["previews"].items():
            position, index = (int(part) for part in str(key).split(":", 1))
            previews[(position, index)] = _picture(_unb64(data))
    progress = StepProgress(
        step=int(meta["step"]),
        total_steps=int(meta["total"]),
        elapsed_s=float(meta["elapsed"]),
        part=int(meta.get("part", 1)),
        parts=int(meta.get("parts", 1)),
        previews=previews,
    )
    return tuple(int(job_id) for job_id in meta["job_ids"]), progress


# -- outcomes -------------------------------------------------------------------------------------


def outcomes_message(outcomes: Iterable[Encoded | Failed | Stopped]) -> dict[str, Any]:
    """The task's result: every job's outcome (images encoded by the worker)."""
    items: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, Encoded):
            items.append(
                {
                    "type": "encoded",
                    "job_id": outcome.job_id,
                    "images": [
                        {
                            "index": image.index,
                            "seed": image.seed,
                            "width": image.width,
                            "height": image.height,
                            "data": _b64(image.data),
                            "suffix": image.suffix,
                            "flagged": image.flagged,
                        }
                        for image in outcome.images
                    ],
                    "model_name": outcome.model_name,
                    "model_hash": outcome.model_hash,
                    "environment_json": outcome.environment_json,
                    "grid": _b64(outcome.grid) if outcome.grid is not None else None,
                }
            )
        elif isinstance(outcome, Failed):
            items.append({"type": "failed", "job_ids": list(outcome.job_ids), "error": _error(outcome.error)})
        else:
            items.append({"type": "stopped", "job_ids": list(outcome.job_ids)})
    return {"version": VERSION, "outcomes": items}


def read_outcomes(message: Mapping[str, Any]) -> list[Outcome]:
    _check_version(message)
    outcomes: list[Outcome] = []
    try:
        for item in message["outcomes"]:
            kind = item["type"]
            if kind == "encoded":
                images = tuple(
                    ImageFile(
                        index=int(image["index"]),
                        seed=int(image["seed"]),
                        width=int(image["width"]),
                        height=int(image["height"]),
                        data=_unb64(image["data"]),
                        suffix=str(image.get("suffix", ".png")),
                        flagged=bool(image.get("flagged", False)),
                    )
                    for image in item["images"]
                )
                encoded = Encoded(
                    job_id=int(item["job_id"]),
                    images=images,
                    model_name=item.get("model_name"),
                    model_hash=item.get("model_hash"),
                    environment_json=item.get("environment_json"),
                    grid=_unb64(item["grid"]) if item.get("grid") else None,
                )
                outcomes.append(encoded)
            elif kind == "failed":
                outcomes.append(Failed(tuple(map(int, item["job_ids"])), _exception(item["error"])))
            elif kind == "stopped":
                outcomes.append(Stopped(tuple(map(int, item["job_ids"]))))
            else:
                raise WireError(f"an outcome of unknown type {kind!r}")
    except (KeyError, TypeError, ValueError) as error:
        raise WireError(f"an unreadable result: {error}") from error
    return outcomes


def _error(error: Exception) -> dict[str, Any]:
    if isinstance(error, ModelError):
        return {"kind": "model", "message": str(error)}
    if isinstance(error, PipelineError):
        params = {
            str(key): value for key, value in error.params.items() if isinstance(value, str | int | float)
        }
        return {"kind": "pipeline", "message": str(error), "key": error.key, "params": params}
    return {"kind": "internal", "message": f"{type(error).__name__}: {error}"}


def _exception(data: Mapping[str, Any]) -> Exception:
    message = str(data.get("message", ""))
    kind = data.get("kind")
    if kind == "model":
        return ModelError(message)
    if kind == "pipeline":
        return PipelineError(message, key=data.get("key"), params=data.get("params") or {})
    return WorkerFailure(message)


def _check_version(message: Mapping[str, Any]) -> None:
    version = message.get("version") if isinstance(message, Mapping) else None
    if version != VERSION:
        raise WireError(f"message version {version!r} (this nanke reads version {VERSION})")
