"""Shared fixtures: the tiny random-weight model, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the tests may reach the Hub: loading must work from local files alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DISABLE_TQDM", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x diffusers folder with random weights (see ``pipeline.engine.testmodel``)."""
    from pipeline.engine.testmodel import make_test_model

    return make_test_model(tmp_path_factory.mktemp("models") / "tiny-sd")
