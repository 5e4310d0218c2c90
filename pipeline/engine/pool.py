"""Loaded models on demand: one engine per model, the most recently used ones kept ready."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from pipeline.domain.models import ModelCatalog, load_model
from pipeline.domain.models.resources import Resources
from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.describer import Describer
from pipeline.engine.devices import pick_device, pick_dtype
from pipeline.engine.results import EngineOptions, GenerationResult
from pipeline.engine.safety import SafetyChecker
from pipeline.engine.upscaler import UpscalerEngine
from pipeline.errors import ModelError

log = logging.getLogger(__name__)

Runner = Engine | UpscalerEngine
"""Anything that turns a batch of requests into images through ``generate``."""


class EnginePool:
    """Gives the :class:`Engine` for a model name, loading it on first use.

    GPU memory holds few models, so at most ``keep`` engines stay loaded; the least recently
    used one is dropped (and its memory freed) when another is needed.
    """

    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: Path | None = None,
        options: EngineOptions | None = None,
        keep: int = 1,
        upscaler: str | None = None,
        safety_checker: str | None = None,
        resources: Resources | None = None,
        describe_model: str | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep: {keep} (allowed: 1 or more)")
        self.catalog = catalog
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.cache_dir = cache_dir
        self.options = options or EngineOptions()
        self.keep = keep
        self.upscaler = upscaler
        self.safety_checker = safety_checker
        self.resources = resources or Resources.none()
        self.describe_model = describe_model
        self._describer: Describer | None = None
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._upscaler: UpscalerEngine | None = None
        self._checker: SafetyChecker | None = None
        self._lock = threading.Lock()

    def for_request(self, request: GenerationRequest) -> Runner:
        """What runs ``request``: the dedicated upscaler for upscales when one is configured, the
        model's inpainting version for canvas jobs when the models folder has one, else the
        engine of the request's model."""
        if request.mode == "upscale" and self.upscaler:
            with self._lock:
                if self._upscaler is None:
                    self._upscaler = UpscalerEngine.load(
                        self.upscaler, device=self.device, dtype=self.dtype, cache_dir=self.cache_dir
                    )
                return self._upscaler
        return self.engine_for(self._model_of(request))

    def loaded_for(self, request: GenerationRequest) -> Engine | None:
        """The engine :meth:`for_request` would give ``request`` if it is loaded now and is a
        model's engine (not the dedicated upscaler); ``None`` otherwise. Never loads anything."""
        if request.mode == "upscale" and self.upscaler:
            return None
        try:
            name = self.catalog.resolve(self._model_of(request)).name
        except ModelError:
            return None
        with self._lock:
            return self._engines.get(name)

    def _model_of(self, request: GenerationRequest) -> str | None:
        """The model whose engine runs ``request`` (the upscaler aside)."""
        if request.mode == "inpaint":
            # Zoom, Pan and Vary (Region) paint best with the model's inpainting version, if any
            variant = self.catalog.inpainting_variant(request.model)
            if variant is not None:
                return variant.name
        return request.model

    def checker(self) -> SafetyChecker | None:
        """The image safety check, loaded on first use; ``None`` when none is configured."""
        if not self.safety_checker:
            return None
        with self._lock:
            if self._checker is None:
                self._checker = SafetyChecker.load(
                    self.safety_checker, device=self.device, dtype=self.dtype, cache_dir=self.cache_dir
                )
            return self._checker

    def describer(self) -> Describer | None:
        """The /describe captioning model, loaded on first use; ``None`` when none is configured."""
        if not self.describe_model:
            return None
        with self._lock:
            if self._describer is None:
                self._describer = Describer.load(
                    self.describe_model, device=self.device, dtype=self.dtype, cache_dir=self.cache_dir
                )
            return self._describer

    def checked(self, results: list[GenerationResult]) -> list[GenerationResult]:
        """``results`` with every image the safety check finds adult content in flagged (as they
        are when no check is configured)."""
        checker = self.checker()
        if checker is None or not results:
            return results
        flags = iter(checker.flags([image.image for result in results for image in result.images]))
        return [
            replace(result, images=[replace(image, flagged=next(flags)) for image in result.images])
            for result in results
        ]

    def loaded(self) -> list[str]:
        """The names of the models loaded now, least recently used first."""
        with self._lock:
            return list(self._engines)

    def batch_pixels(self) -> int:
        """How many pixels one batch may hold on this pool's device."""
        from pipeline.engine.devices import batch_pixel_budget

        return batch_pixel_budget(self.device)

    def engine_for(self, model: str | None) -> Engine:
        """The engine of ``model`` (a catalog name or path; ``None`` is the default model)."""
        spec = self.catalog.resolve(model)
        with self._lock:
            engine = self._engines.get(spec.name)
            if engine is not None:
                self._engines.move_to_end(spec.name)
                return engine
            while len(self._engines) >= self.keep:
                # Drop the only reference before freeing, or the memory stays taken
                name = next(iter(self._engines))
                del self._engines[name]
                log.info("unloading model %s to make room", name)
                _free(self.device)
            log.info("loading model %s from %s", spec.name, spec.source)
            loaded = load_model(spec, device=self.device, dtype=self.dtype, cache_dir=self.cache_dir)
            engine = Engine(
                loaded, device=self.device, dtype=self.dtype, options=self.options, resources=self.resources
            )
            self._engines[spec.name] = engine
            return engine


def _free(device: object) -> None:
    import gc

    from pipeline.engine.devices import free_memory

    gc.collect()
    free_memory(device)  # type: ignore[arg-type]
