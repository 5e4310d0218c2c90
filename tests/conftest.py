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


@pytest.fixture(scope="session")
def tiny_safety_checkers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight image safety classifiers, forced to one answer: the Stable Diffusion
    checker that flags every image (``sd_all``) or none (``sd_none``), and a ViT classifier that
    calls every image ``nsfw`` (``classifier_all``)."""
    from pipeline.engine.testmodel import make_test_image_classifier, make_test_safety_checker

    root = tmp_path_factory.mktemp("safety")
    return {
        "sd_all": make_test_safety_checker(root / "sd-all", flags_everything=True),
        "sd_none": make_test_safety_checker(root / "sd-none", flags_everything=False),
        "classifier_all": make_test_image_classifier(root / "classifier-all", flags_everything=True),
    }
