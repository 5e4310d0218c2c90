"""Model fixtures beyond conftest's SD 1.x one: the tiny random-weight SDXL pipeline, and an
engine of the tiny SD 1.x model with a LoRA and an embeddings folder of its own.

Test modules load them with ``pytest_plugins = ["tests.fixtures_models"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pipeline.engine.core import Engine


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL diffusers folder with random weights (see ``pipeline.engine.testmodel``)."""
    from pipeline.engine.testmodel import make_test_sdxl_model

    return make_test_sdxl_model(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture
def resourced_engine(tiny_model_dir: Path, tmp_path: Path) -> Engine:
    """A CPU engine of the tiny SD 1.x model whose LoRA folder holds ``detail`` (for
    ``<lora:detail:W>``) and whose embeddings folder, ``tmp_path / "embeddings"``, starts empty."""
    import torch

    from pipeline.domain.models import ModelCatalog, load_model
    from pipeline.domain.models.resources import Resources
    from pipeline.engine.core import Engine
    from pipeline.engine.testmodel import make_test_lora

    spec = ModelCatalog(str(tiny_model_dir)).resolve(None)
    model = load_model(spec, device=torch.device("cpu"), dtype=torch.float32)
    make_test_lora(tmp_path / "Lora" / "detail.safetensors", model.pipe, seed=5)
    (tmp_path / "embeddings").mkdir()
    resources = Resources.of(
        lora_dir=tmp_path / "Lora",
        embeddings_dir=tmp_path / "embeddings",
        vae_dir=None,
        cache_dir=tmp_path / "cache",
    )
    return Engine(model, resources=resources)
