"""The next batch's prompts encoded ahead (``Engine.encode_ahead``, on by default on CUDA), on the
tiny model: the same pixels, and no embeddings used after the LoRAs or the embeddings changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.domain.request import GenerationRequest
from pipeline.engine.core import Engine
from pipeline.engine.results import EngineOptions
from pipeline.engine.testmodel import make_test_embedding

pytest_plugins = ["tests.fixtures_models"]

AHEAD = EngineOptions(encode_ahead=True)


def request(prompt: str = "a red fox in the snow", **changes: Any) -> GenerationRequest:
    fields: dict[str, Any] = {"width": 64, "height": 64, "steps": 3, "sampler": "Euler a", "seed": 8}
    return GenerationRequest(prompt=prompt, negative_prompt="blurry", **{**fields, **changes})


def pixels(results: Any) -> list[np.ndarray]:
    return [np.asarray(image.image) for result in results for image in result.images]


def same(one: list[np.ndarray], other: list[np.ndarray]) -> bool:
    return len(one) == len(other) and all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))


@pytest.fixture
def engine(resourced_engine: Engine) -> Engine:
    resourced_engine.options = AHEAD
    return resourced_engine


def test_prompts_encoded_ahead_make_the_same_pixels(engine: Engine) -> None:
    batch = [request(), request("a grey wolf at dusk", seed=9, count=2), request("(a lighthouse:1.3)")]
    plain = pixels(engine.generate(batch))

    assert engine.encode_ahead(batch)
    ahead = pixels(engine.generate(batch))

    assert engine._ahead.used == 1
    assert same(plain, ahead)


def test_embeddings_made_ahead_for_other_prompts_are_not_used(engine: Engine) -> None:
    assert engine.encode_ahead([request("a grey wolf")])
    engine.generate([request()])
    assert engine._ahead.used == 0
    engine.generate([request(clip_skip=2)])
    assert engine._ahead.used == 0


def test_embeddings_made_under_a_lora_are_not_used_without_it(engine: Engine) -> None:
    plain = pixels(engine.generate([request()]))
    engine.generate([request("a red fox <lora:detail:1>")])  # the text encoder's LoRA is on now

    assert engine.encode_ahead([request()])
    after = pixels(engine.generate([request()]))

    assert engine._ahead.used == 0, "made with the LoRA on: the next batch has it off"
    assert same(plain, after)
    # Taken regardless, they would have changed the images
    engine.generate([request("a red fox <lora:detail:1>")])
    engine.encode_ahead([request()])
    key = next(iter(engine._ahead._entries))
    made = engine._ahead._entries[key]
    engine.generate([request()])
    engine._ahead.put(key[0], key[1], engine.choices.text_state, made)
    assert not same(plain, pixels(engine.generate([request()])))


def test_embeddings_made_before_an_embedding_file_arrived_are_not_used(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.domain.models import resources

    monkeypatch.setattr(resources, "RESCAN_S", 0.0)  # the folder is looked at again at every batch
    asked = request("a red fox, easyneg")
    engine.generate([asked])
    assert engine.encode_ahead([asked])
    make_test_embedding(tmp_path / "embeddings" / "easyneg.safetensors", engine.pipe, vectors=2)

    [result] = engine.generate([asked])  # loads the new embedding first

    assert engine._ahead.used == 0
    assert "TI hashes" in result.resources
    fresh = pixels(engine.generate([asked]))
    assert same(pixels([result]), fresh)


def test_encoding_ahead_is_off_on_the_cpu_by_default(resourced_engine: Engine) -> None:
    assert resourced_engine.options.encode_ahead is None
    assert not resourced_engine.encode_ahead([request()])
    assert resourced_engine._ahead.made == 0
