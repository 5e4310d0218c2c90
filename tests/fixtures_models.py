"""Model fixtures beyond conftest's SD 1.x one: the tiny random-weight SDXL pipeline.

Test modules load them with ``pytest_plugins = ["tests.fixtures_models"]``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL diffusers folder with random weights (see ``pipeline.engine.testmodel``)."""
    from pipeline.engine.testmodel import make_test_sdxl_model

    return make_test_sdxl_model(tmp_path_factory.mktemp("models") / "tiny-sdxl")
