"""The per-step noise of ancestral and SDE samplers, drawn one step ahead off the GPU's path.

diffusers' ancestral samplers (Euler a, DPM2 a, the DPM++ SDE variants of DPMSolverMultistep,
DDIM with eta) draw every step's noise from each image's CPU generator with ``randn_tensor``,
then copy it to the GPU from pageable memory: the host waits at every step, and the loop can
never run ahead of the GPU. Inside :func:`noise_ahead`, the noise of step ``k + 1`` is drawn
by a background thread while step ``k`` runs: from the same generators, in the same order, with
the same shapes and dtype, so every image is the one it would be without it; on CUDA it goes
through pinned memory and is copied without waiting. A draw that is never asked for (the loop
ended, was cancelled or failed) is undone by putting the generators back as they were, so what
uses them next (the hires pass, say) gets the numbers it always got.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger(__name__)

SCHEDULER_MODULES = (
    "diffusers.schedulers.scheduling_euler_ancestral_discrete",
    "diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete",
    "diffusers.schedulers.scheduling_dpmsolver_multistep",
    "diffusers.schedulers.scheduling_euler_discrete",
    "diffusers.schedulers.scheduling_ddim",
)
"""The schedulers of nanke's samplers that draw per-step noise with ``randn_tensor``."""

_active = threading.local()
_install_lock = threading.Lock()

Key = tuple[tuple[int, ...], "torch.dtype | None"]
Drawn = tuple[Key, torch.Tensor, list[torch.Tensor]]
"""What a draw made: its shape and dtype, the noise on the device, the generators' states before it."""


class NoiseAhead:
    """Draws the per-step noise of one denoising loop from ``generators`` (one per image), the
    next step's while the current one runs."""

    def __init__(self, generators: Sequence[torch.Generator], device: torch.device) -> None:
        self.generators = generators
        self.device = device
        self.pinned = device.type == "cuda"
        self._next: Future[Drawn] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanke-noise")
        self.ahead = 0
        """How many draws were ready before they were asked for."""

    def draw(
        self, shape: Sequence[int], dtype: torch.dtype | None, device: Any, generator: Any
    ) -> torch.Tensor | None:
        """The noise ``randn_tensor(shape, generator, device, dtype)`` would return; ``None`` for a
        draw that is not this loop's (another generator, another batch size or device)."""
        if generator is not self.generators or len(shape) < 1 or shape[0] != len(self.generators):
            return None
        if device is None or torch.device(device).type != self.device.type:
            return None
        key: Key = (tuple(int(size) for size in shape), dtype)
        noise = None
        if self._next is not None:
            drawn_key, drawn, states = self._next.result()
            self._next = None
            if drawn_key == key:
                noise = drawn
                self.ahead += 1
            else:  # a draw of another shape: the generators go back and draw it now
                _restore(self.generators, states)
        if noise is None:
            noise = self._draw(key)
        self._next = self._thread.submit(self._draw_ahead, key)
        return noise

    def close(self) -> None:
        """Undo the draw no step asked for, and stop the thread."""
        if self._next is not None:
            _, _, states = self._next.result()
            _restore(self.generators, states)
            self._next = None
        self._thread.shutdown(wait=True)

    def _draw_ahead(self, key: Key) -> Drawn:
        states = [generator.get_state() for generator in self.generators]
        return key, self._draw(key), states

    def _draw(self, key: Key) -> torch.Tensor:
        """As diffusers draws it: one row per generator, on the CPU, in the dtype asked for."""
        shape, dtype = key
        rows = [
            torch.randn((1, *shape[1:]), generator=generator, device="cpu", dtype=dtype)
            for generator in self.generators
        ]
        noise = torch.cat(rows, dim=0)
        if self.pinned:
            try:
                return noise.pin_memory().to(self.device, non_blocking=True)
            except RuntimeError as error:  # no page-locked memory to be had: copy as diffusers does
                log.warning("per-step noise: pinned memory unavailable (%s); copying it directly", error)
                self.pinned = False
        return noise.to(self.device)


def _restore(generators: Sequence[torch.Generator], states: Sequence[torch.Tensor]) -> None:
    for generator, state in zip(generators, states, strict=True):
        generator.set_state(state)


@contextmanager
def noise_ahead(
    generators: Sequence[torch.Generator], device: torch.device, *, enabled: bool
) -> Iterator[None]:
    """Within the block, this thread's sampler steps take their noise from a :class:`NoiseAhead`
    of ``generators`` (``enabled=False``: as diffusers draws it)."""
    if not enabled:
        yield
        return
    _install()
    ahead = NoiseAhead(generators, device)
    previous = getattr(_active, "noise", None)
    _active.noise = ahead
    try:
        yield
    finally:
        _active.noise = previous
        ahead.close()
        log.debug("per-step noise: %d of the draws were ready ahead", ahead.ahead)


def _install() -> None:
    """Route the schedulers' ``randn_tensor`` through this thread's :class:`NoiseAhead` (once)."""
    with _install_lock:
        for name in SCHEDULER_MODULES:
            module = importlib.import_module(name)
            original = getattr(module, "randn_tensor", None)
            if original is not None and not getattr(original, "_nanke_noise_ahead", False):
                module.randn_tensor = _routed(original)  # type: ignore[attr-defined]


def _routed(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(original)
    def randn_tensor(
        shape: Sequence[int],
        generator: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
        layout: torch.layout | None = None,
    ) -> torch.Tensor:
        ahead: NoiseAhead | None = getattr(_active, "noise", None)
        if ahead is not None and layout in (None, torch.strided):
            noise = ahead.draw(shape, dtype, device, generator)
            if noise is not None:
                return noise
        return original(shape, generator=generator, device=device, dtype=dtype, layout=layout)

    randn_tensor._nanke_noise_ahead = True  # type: ignore[attr-defined]
    return randn_tensor
