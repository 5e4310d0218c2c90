"""Downloading a diffusers model from the Hugging Face Hub into the models folder.

A model fetched this way is a plain diffusers folder (``models/<name>/model_index.json``): it
loads offline afterwards, like any folder in the models folder. Only what nanke loads is
downloaded: the safetensors weights (the fp16 variant when the repository has only that), the
configs and the tokenizers; not the safety checker, pickled or ONNX copies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

SKIPPED = [
    "safety_checker/*",
    "feature_extractor/*",
    "*.ckpt",
    "*.bin",
    "*.pt",
    "*.msgpack",
    "*.onnx",
    "*.onnx_data",
    "*non_ema*",
    "*.fp16.*",
]
"""What a diffusers repository often also holds and nanke never loads (several GB for SD 1.5)."""


def fetch_model(repo_id: str, *, models_dir: Path, name: str | None = None) -> Path:
    """Download ``repo_id`` into ``models_dir/<name>`` (default: the id's last part); returns the folder."""
    from huggingface_hub import snapshot_download

    target = models_dir / (name or repo_id.rstrip("/").rsplit("/", 1)[-1])
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        snapshot_download(repo_id, local_dir=target, ignore_patterns=SKIPPED)
        if not (target / "model_index.json").is_file():
            raise ModelLoadError(f"{repo_id} is not a diffusers pipeline (it has no model_index.json)")
        if not any((target / "unet").glob("*.safetensors")):
            log.info("%s has only fp16 weights; downloading those", repo_id)
            snapshot_download(
                repo_id, local_dir=target, allow_patterns=["unet/*", "vae/*", "text_encoder*/*"]
            )
    except ModelLoadError:
        raise
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelLoadError(
            f"cannot download {repo_id!r} from the Hugging Face Hub ({first}); check the id and that this "
            "machine reaches huggingface.co (HF_HUB_OFFLINE must not be set)"
        ) from error
    log.info("fetched %s into %s", repo_id, target)
    return target
