"""Telling whether a model can load without loading it, and fetching one from the Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.domain.models.catalog import ModelSpec
from pipeline.domain.models.fetching import fetch_model
from pipeline.domain.models.inspection import inspect_model
from pipeline.errors import ModelLoadError


def test_a_usable_folder_and_what_is_wrong_with_the_rest(tiny_model_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint" * 64)
    fake_ckpt = tmp_path / "old.ckpt"
    fake_ckpt.write_bytes(b"not a zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')

    assert inspect_model(ModelSpec("tiny", str(tiny_model_dir), "diffusers")).usable
    states = {
        "junk": inspect_model(ModelSpec("junk", str(junk), "single_file")),
        "ckpt": inspect_model(ModelSpec("old", str(fake_ckpt), "single_file")),
        "empty": inspect_model(ModelSpec("empty", str(empty), "diffusers")),
        "missing": inspect_model(ModelSpec("gone", str(tmp_path / "gone"), "diffusers")),
        "hub": inspect_model(ModelSpec("x", "nobody/never-downloaded", "hub")),
    }
    assert not any(state.usable for state in states.values())
    assert "truncated or not a checkpoint" in states["junk"].detail
    assert ".safetensors copy" not in states["junk"].detail, "no advice to convert a .safetensors file"
    assert "zip" in states["ckpt"].detail
    assert "models fetch" in states["hub"].detail
    assert all("\n" not in state.detail for state in states.values())


def test_fetching_offline_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as caught:
        fetch_model("nobody/never-downloaded", models_dir=tmp_path / "models")
    message = str(caught.value)
    assert message.startswith("cannot download 'nobody/never-downloaded'") and "\n" not in message
