"""The bookkeeping of the UNet's CUDA graphs (``NANKE_GPU_TUNING=cuda_graphs``) on the CPU.

CUDA cannot capture on the CPU, so these tests record with a stand-in that behaves as a graph
does for everything the engine relies on: a replay reads whatever the static input buffers hold
now and writes into the same output tensor every time. A call served from a stale buffer, an
output not copied out before the next replay, or a graph kept across a LoRA or tiling change
shows here. ``tests/test_engine_cuda.py`` compares real CUDA graphs with plain steps on a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.graphs import CAPTURE_AFTER, UnetGraphs
from tests.test_engine import request as engine_request

CPU = torch.device("cpu")

pytest_plugins = ["tests.fixtures_models"]


class StandIn:
    """Records a call the way a CUDA graph does, and counts captures and replays."""

    def __init__(self, *, fail: Exception | None = None) -> None:
        self.captures = 0
        self.fail = fail

    def __call__(self, run: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        if self.fail is not None:
            raise self.fail
        self.captures += 1
        output = run()

        def replay() -> None:
            output.copy_(run())

        return replay, output


def request(**changes: Any) -> GenerationRequest:
    return engine_request(**{**{"steps": 5, "sampler": "DPM++ 2M", "seed": 21, "count": 2}, **changes})


def pixels(result: Any) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in result.images]


@pytest.fixture
def engine(resourced_engine: Engine) -> Engine:
    return resourced_engine


def graphed(engine: Engine, capture: StandIn) -> UnetGraphs:
    engine.graphs = UnetGraphs.install(engine.pipe.unet, CPU, capture=capture)
    return engine.graphs


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"sampler": "Euler a"},
        {"mode": "img2img", "strength": 0.8},
        {"hires_scale": 1.5, "hires_steps": 4},
    ],
    ids=["dpm-2m", "euler-a", "img2img", "hires"],
)
def test_steps_replayed_from_graphs_make_the_same_pixels(engine: Engine, changes: dict[str, Any]) -> None:
    from PIL import Image

    init: dict[str, Image.Image] = {}
    if changes.get("mode") == "img2img":
        init = {"a" * 64: Image.new("RGB", (64, 64), (200, 90, 30))}
        changes = {**changes, "init_image": "a" * 64}
    asked = request(**changes)
    [plain] = engine.generate([asked], init_images=init)

    capture = StandIn()
    graphs = graphed(engine, capture)
    [replayed] = engine.generate([asked], init_images=init)
    [again] = engine.generate([asked], init_images=init)

    assert capture.captures >= 1 and graphs.replays > 0
    for one, other, third in zip(pixels(plain), pixels(replayed), pixels(again), strict=True):
        assert np.array_equal(one, other) and np.array_equal(one, third)


def test_sdxl_steps_replayed_from_graphs_make_the_same_pixels(tiny_sdxl_dir: Path) -> None:
    """SDXL's UNet takes its pooled text and size conditioning as ``added_cond_kwargs``."""
    from pipeline.domain.models import ModelCatalog, load_model

    model = load_model(ModelCatalog(str(tiny_sdxl_dir)).resolve(None), device=CPU, dtype=torch.float32)
    engine = Engine(model)
    asked = request(steps=4)
    [plain] = engine.generate([asked])
    capture = StandIn()
    graphs = graphed(engine, capture)
    [replayed] = engine.generate([asked])

    assert capture.captures == 1 and graphs.replays == 2
    assert any(name.startswith("added_cond_kwargs.") for name, *_ in next(iter(graphs._graphs)))
    for one, other in zip(pixels(plain), pixels(replayed), strict=True):
        assert np.array_equal(one, other)


def test_each_shape_is_captured_once_after_its_first_calls(engine: Engine) -> None:
    capture = StandIn()
    graphs = graphed(engine, capture)

    engine.generate([request(steps=CAPTURE_AFTER)])
    assert capture.captures == 0 and graphs.replays == 0, "a shape seen only a few times runs as usual"

    engine.generate([request(steps=CAPTURE_AFTER)])
    engine.generate([request(steps=4)])
    assert capture.captures == 1
    replays = graphs.replays
    engine.generate([request(steps=4)])
    assert capture.captures == 1 and graphs.replays == replays + 4

    engine.generate([request(steps=4, count=3)])  # another batch size: another shape
    assert capture.captures == 2 and len(graphs) == 2


def test_a_replayed_output_is_a_copy_the_next_replay_leaves_alone(engine: Engine) -> None:
    graphs = graphed(engine, StandIn())
    unet = engine.pipe.unet
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    samples = [torch.randn(2, 4, 8, 8, generator=generator) for _ in range(CAPTURE_AFTER + 3)]
    timestep = torch.tensor(500)

    with torch.no_grad():
        outputs = [
            unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0] for sample in samples
        ]
        expected = [graphs._eager(s, timestep, context, return_dict=False)[0] for s in samples]

    assert graphs.replays == 3, "the third call is captured and replayed, and the next two replay"
    for output, wanted in zip(outputs, expected, strict=True):
        assert torch.equal(output, wanted)
    assert outputs[-1].data_ptr() != outputs[-2].data_ptr()


def test_calls_a_graph_cannot_hold_run_as_usual(engine: Engine) -> None:
    graphs = graphed(engine, StandIn())
    unet = engine.pipe.unet
    sample = torch.randn(2, 4, 8, 8)
    context = torch.randn(2, 77, unet.config.cross_attention_dim)
    calls: list[dict[str, Any]] = [
        {"return_dict": True},
        {"return_dict": False, "cross_attention_kwargs": {"gligen": None}},
        {"return_dict": False, "encoder_attention_mask": torch.ones(2, 77, dtype=torch.bool)},
    ]
    with torch.no_grad():
        for kwargs in calls:
            for _ in range(CAPTURE_AFTER + 2):
                unet(sample, torch.tensor(10), encoder_hidden_states=context, **kwargs)
        for _ in range(CAPTURE_AFTER + 2):
            unet(sample, 10, encoder_hidden_states=context, return_dict=False)  # a number, not a tensor
    for _ in range(CAPTURE_AFTER + 2):
        unet(sample, torch.tensor(10), encoder_hidden_states=context, return_dict=False)  # gradients on
    assert graphs.replays == 0 and len(graphs) == 0


def test_graphs_are_dropped_when_the_loras_or_tiling_change(engine: Engine) -> None:
    capture = StandIn()
    graphs = graphed(engine, capture)
    engine.generate([request()])
    assert capture.captures == 1

    [with_lora] = engine.generate([request(prompt="a red fox <lora:detail:0.8>")])
    assert capture.captures == 2, "captured again for the LoRA"
    engine.generate([request(prompt="a red fox <lora:detail:0.8>")])
    assert capture.captures == 2, "the same LoRAs keep their graph"
    engine.generate([request(prompt="a red fox <lora:detail:0.4>")])
    assert capture.captures == 3, "another weight is another scale inside the graph"
    engine.generate([request(tile=True)])
    assert capture.captures == 4, "tiling changes the padding inside the graph"
    engine.generate([request()])
    assert capture.captures == 5 and graphs.replays > 0

    engine.graphs = None
    [plain] = engine.generate([request(prompt="a red fox <lora:detail:0.8>")])
    for one, other in zip(pixels(plain), pixels(with_lora), strict=True):
        assert np.array_equal(one, other)


def test_a_capture_that_fails_turns_graphs_off_and_the_batch_goes_on(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    [plain] = engine.generate([request()])
    graphs = graphed(engine, StandIn(fail=RuntimeError("operation not permitted when stream is capturing")))
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.graphs"):
        [result] = engine.generate([request()])

    assert not graphs.enabled and graphs.replays == 0
    assert "CUDA graphs of the UNet turned off" in caplog.text
    for one, other in zip(pixels(plain), pixels(result), strict=True):
        assert np.array_equal(one, other)


def test_out_of_memory_gives_the_graphs_memory_up(engine: Engine) -> None:
    graphs = graphed(engine, StandIn())
    engine.generate([request()])
    assert len(graphs) == 1
    engine._enable_memory_savers()
    assert not graphs.enabled and len(graphs) == 0


def test_cuda_graphs_are_a_tuning_choice_checked_by_name(tmp_path: Path) -> None:
    from pipeline.settings import SettingsError, load_settings

    base = {"NANKE_DATA_DIR": str(tmp_path)}
    settings = load_settings({**base, "NANKE_GPU_TUNING": "cuda_graphs,channels_last"}, dotenv=None)
    assert set(settings.gpu_tuning) == {"cuda_graphs", "channels_last"}
    with pytest.raises(SettingsError, match="NANKE_GPU_TUNING"):
        load_settings({**base, "NANKE_GPU_TUNING": "cuda_graph"}, dotenv=None)


def test_start_up_warms_one_image_a_grid_and_a_full_batch_up(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the graphs on, start-up captures the common shapes; a speed-up ignored off the GPU
    warms nothing up."""
    from pipeline.app import App
    from pipeline.engine import core, tuning
    from pipeline.settings import load_settings
    from pipeline.startup import load_default_model
    from tests.helpers_services import settings_env

    warmed: list[list[int]] = []
    monkeypatch.setattr(Engine, "warm_up", lambda self, counts=(1, 4): warmed.append(list(counts)))
    env = settings_env(tmp_path / "data", tiny_model_dir, NANKE_MAX_BATCH="8", NANKE_GPU_TUNING="compile")
    app = App(load_settings(env, dotenv=None)).open()
    load_default_model(app)
    app.close()
    assert warmed == []

    def on_the_gpu(pipe: Any, device: torch.device, names: Any) -> tuning.Tuned:
        return tuning.Tuned(("cuda_graphs",), UnetGraphs.install(pipe.unet, device, capture=StandIn()))

    monkeypatch.setattr(core, "apply_tuning", on_the_gpu)
    env = {**env, "NANKE_GPU_TUNING": "cuda_graphs", "NANKE_DATA_DIR": str(tmp_path / "other")}
    app = App(load_settings(env, dotenv=None)).open()
    load_default_model(app)
    app.close()
    assert warmed == [[1, 4, 8]]
