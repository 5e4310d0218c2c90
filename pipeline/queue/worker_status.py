"""What a remote GPU worker says of itself (no Redis or Celery here: the job interface shows it in /queue)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerStatus:
    """One GPU worker, as it last announced itself."""

    name: str
    host: str
    instance: str
    """Unique per start of the worker process: a worker restarted under the same name is another one."""
    pid: int
    gpu: str
    device: str
    default_model: str
    models: tuple[str, ...] = ()
    """The models it holds loaded now."""
    available: tuple[str, ...] = ()
    """The models it can load (its models folder)."""
    batch_pixels: int = 4 * 512 * 512
    """The most pixels one batch may hold on its GPU."""
    free_vram_mb: int | None = None
    total_vram_mb: int | None = None
    task: str | None = None
    """The batch (dispatch id) it runs now; ``None`` when idle."""
    recent: tuple[str, ...] = ()
    """The batches it finished lately, newest last."""
    images_per_s: float | None = None
    images_made: int = 0
    started_at: float = 0.0
    seen_at: float = field(default_factory=time.time)

    @property
    def busy(self) -> bool:
        return self.task is not None

    def runs(self, model: str | None) -> bool:
        """Whether it holds ``model`` loaded (``None``: its default model)."""
        return (model or self.default_model) in self.models

    def can_run(self, model: str | None) -> bool:
        """Whether it holds or can load ``model``."""
        return model is None or model == self.default_model or model in self.available or model in self.models

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerStatus:
        data: dict[str, Any] = json.loads(text)
        for name in ("models", "available", "recent"):
            data[name] = tuple(data.get(name) or ())
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})
