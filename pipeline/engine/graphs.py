"""CUDA graphs of the UNet: each denoising step's forward pass replayed as one launch.

A step of a small batch is bound by kernel launches, not by the GPU's arithmetic: the UNet's
forward pass is hundreds of small kernels, each launched from Python. With
``NANKE_GPU_TUNING=cuda_graphs`` the engine captures the forward pass once per input shape into
a CUDA graph and replays it at every later step: the same kernels on the same inputs, so the
images do not change (``tests/test_engine_cuda.py`` compares them on a GPU).

How it works:

- The first :data:`CAPTURE_AFTER` calls of a shape run as usual (they warm cuDNN and cuBLAS up).
  The next one runs once more on the capture stream, is captured with static input buffers, and
  is replayed. Later calls copy their inputs into those buffers, replay, and return a copy of
  the output (the next replay overwrites the graph's own output).
- All graphs draw their memory from one pool. They replay one at a time and every output is
  copied out at once, so no graph overwrites what another one still needs.
- A call that does not fit runs as usual: gradients on, a tensor on another device, extra
  inputs (ControlNet residuals, attention masks, cross-attention arguments), ``return_dict``.
- A graph holds the weights' addresses, the LoRA scales, the padding mode and the attention
  processors of its capture. The engine drops every graph (:meth:`UnetGraphs.reset`) when a
  batch's LoRAs or tiling differ from the previous batch's, and on out-of-memory.
- A capture that fails turns graphs off for this engine with a warning, and that step runs as
  usual.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

CAPTURE_AFTER = 2
"""Calls of one input shape that run as usual before it is captured."""
MOST_GRAPHS = 16
"""Graphs kept at once; the least recently used one goes first."""

Replay = Callable[[], None]
Capture = Callable[[Callable[[], torch.Tensor]], tuple[Replay, torch.Tensor]]
"""Records ``run`` (which reads the static inputs) and returns how to replay it, and the tensor
every replay writes its output into."""

_LEFT_OUT = (
    "class_labels",
    "timestep_cond",
    "attention_mask",
    "down_block_additional_residuals",
    "mid_block_additional_residual",
    "down_intrablock_additional_residuals",
    "encoder_attention_mask",
)
"""UNet inputs a graphed call must leave at ``None`` (nanke's pipelines never pass them)."""


def cuda_capture(device: torch.device) -> Capture:
    """Capture with CUDA graphs on ``device``, all graphs sharing one memory pool."""
    pool = torch.cuda.graph_pool_handle()

    def capture(run: Callable[[], torch.Tensor]) -> tuple[Replay, torch.Tensor]:
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            run()  # once on the capture stream first: lazy set-up must not be captured
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the noise drawn ahead, the next batch's text) keep working
        with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
            output = run()
        return graph.replay, output

    return capture


@dataclass
class _Graph:
    replay: Replay
    inputs: list[torch.Tensor]
    """The static input buffers, in the order of :func:`_flatten`."""
    output: torch.Tensor


class UnetGraphs:
    """Replays ``unet``'s forward pass from graphs, one per input shape (see the module's notes).

    :meth:`install` puts it in place of the module's ``forward``; ``capture`` is how a call is
    recorded (:func:`cuda_capture` unless given).
    """

    def __init__(self, unet: Any, device: torch.device, *, capture: Capture | None = None) -> None:
        self.unet = unet
        self.device = device
        self.enabled = True
        self.replays = 0
        """Forward passes served from a graph since the start (for logs and tests)."""
        self._eager: Callable[..., Any] = unet.forward
        self._new_capture = (lambda: capture) if capture is not None else (lambda: cuda_capture(device))
        self._capture = self._new_capture()
        self._graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self._calls: dict[tuple[Any, ...], int] = {}

    @classmethod
    def install(cls, unet: Any, device: torch.device, *, capture: Capture | None = None) -> UnetGraphs:
        graphs = cls(unet, device, capture=capture)
        unet.forward = graphs.forward
        return graphs

    def __len__(self) -> int:
        return len(self._graphs)

    def reset(self) -> None:
        """Drop every graph and its memory (after a change they would not see, or out-of-memory)."""
        if self._graphs:
            log.debug("dropping %d CUDA graph(s) of the UNet", len(self._graphs))
        self._graphs.clear()
        self._calls.clear()
        self._capture = self._new_capture()

    def turn_off(self, reason: str) -> None:
        if self.enabled:
            log.warning("CUDA graphs of the UNet turned off (%s); steps run as usual", reason)
        self.enabled = False
        self.reset()

    def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any = None, **kwargs: Any) -> Any:
        inputs = self._graphable(sample, timestep, encoder_hidden_states, kwargs) if self.enabled else None
        if inputs is None:
            return self._eager(sample, timestep, encoder_hidden_states, **kwargs)
        key = tuple((name, tuple(t.shape), t.stride(), t.dtype) for name, t in inputs.items())
        graph = self._graphs.get(key)
        if graph is None:
            seen = self._calls[key] = self._calls.get(key, 0) + 1
            if seen <= CAPTURE_AFTER:
                return self._eager(sample, timestep, encoder_hidden_states, **kwargs)
            graph = self._record(key, inputs)
            if graph is None:
                return self._eager(sample, timestep, encoder_hidden_states, **kwargs)
        else:
            self._graphs.move_to_end(key)
        for static, given in zip(graph.inputs, inputs.values(), strict=True):
            static.copy_(given)
        graph.replay()
        self.replays += 1
        return (graph.output.clone(),)

    # -- helpers --------------------------------------------------------------------------------

    def _graphable(
        self, sample: Any, timestep: Any, encoder_hidden_states: Any, kwargs: Mapping[str, Any]
    ) -> dict[str, torch.Tensor] | None:
        """The call's tensors by name when it can run from a graph, else ``None``."""
        if torch.is_grad_enabled() or kwargs.get("return_dict", True):
            return None
        if any(kwargs.get(name) is not None for name in _LEFT_OUT) or kwargs.get("cross_attention_kwargs"):
            return None
        if set(kwargs) - {*_LEFT_OUT, "return_dict", "cross_attention_kwargs", "added_cond_kwargs"}:
            return None
        if not (isinstance(sample, torch.Tensor) and sample.device == self.device):
            return None
        if not (
            isinstance(encoder_hidden_states, torch.Tensor) and encoder_hidden_states.device == self.device
        ):
            return None
        if not isinstance(timestep, torch.Tensor):
            return None
        inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": encoder_hidden_states}
        added = kwargs.get("added_cond_kwargs") or {}
        for name in sorted(added):
            value = added[name]
            if not (isinstance(value, torch.Tensor) and value.device == self.device):
                return None
            inputs[f"added_cond_kwargs.{name}"] = value
        if self.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        return inputs

    def _record(self, key: tuple[Any, ...], inputs: Mapping[str, torch.Tensor]) -> _Graph | None:
        """Capture a graph for ``key`` with static buffers holding ``inputs``; ``None`` if it failed."""
        # The same memory layout as the call's (a kernel may round differently for another one)
        static = {name: torch.empty_like(tensor, device=self.device) for name, tensor in inputs.items()}
        for name, tensor in inputs.items():
            static[name].copy_(tensor)
        added = {
            name.removeprefix("added_cond_kwargs."): tensor
            for name, tensor in static.items()
            if name.startswith("added_cond_kwargs.")
        }

        def run() -> torch.Tensor:
            return self._eager(
                static["sample"],
                static["timestep"],
                static["encoder_hidden_states"],
                added_cond_kwargs=added or None,
                return_dict=False,
            )[0]

        try:
            replay, output = self._capture(run)
        except Exception as error:
            from pipeline.engine.devices import is_out_of_memory

            self.turn_off("out of memory" if is_out_of_memory(error) else f"capture failed: {error}")
            return None
        graph = _Graph(replay, list(static.values()), output)
        self._graphs[key] = graph
        while len(self._graphs) > MOST_GRAPHS:
            self._graphs.popitem(last=False)
        log.info("captured a CUDA graph of the UNet for %s", _describe(key))
        return graph


def _describe(key: tuple[Any, ...]) -> str:
    sample = key[0][1]
    return f"batch {sample[0]} at {sample[-1]}x{sample[-2]} latents"
