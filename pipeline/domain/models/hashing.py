"""Model hashes as AUTOMATIC1111 shows them, with a small cache so big files are read once.

A1111's "AutoV2" hash (the one in PNG infotext and on civitai) is the first 10 hex digits of the
sha256 of the whole weights file. A diffusers folder has no single file, so its hash is the one
of its UNet weights (``unet/diffusion_pytorch_model.safetensors``, else the ``.bin``, else an
``fp16`` variant of either): it identifies the model's weights, but it is not the hash civitai
shows for the single-file version of the same model.

Hashing a 7 GB checkpoint takes from seconds to a minute, so full digests are kept in a JSON file
(``model-hashes.json`` in the cache folder) keyed by the file's absolute path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

AUTOV2_LENGTH = 10
BLOCK_SIZE = 1024 * 1024
CACHE_FILE = "model-hashes.json"
UNET_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)

_lock = threading.Lock()
_known: dict[tuple[str, int, int], str] = {}
"""Digests this process already has, by (file, size, mtime): the engine names the LoRA, embedding
and VAE files of every batch by hash, and must not read the cache file (or the file) each time."""


def sha256_file(path: Path) -> str:
    """The full sha256 hex digest of ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def folder_weights_file(folder: Path) -> Path | None:
    """The file whose hash stands for a diffusers folder: its UNet weights, or ``None``."""
    for name in UNET_WEIGHTS:
        candidate = folder / "unet" / name
        if candidate.is_file():
            return candidate
    return None


def tensors_sha256(path: Path) -> str:
    """The sha256 of a ``.safetensors`` file's tensor data, its header left out.

    It is the WebUI's hash of LoRA files (the "addnet" hash; civitai's "AutoV3"): editing a
    LoRA's metadata does not change it. Other files get their whole-file sha256.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if path.suffix.lower() == ".safetensors":
            header = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + header)
        while block := handle.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path, cache_dir: Path | None = None, *, tensors_only: bool = False) -> str:
    """The sha256 of ``path`` (of its tensor data only with ``tensors_only``, see
    :func:`tensors_sha256`), from the cache in ``cache_dir`` when the file has not changed."""
    path = path.resolve()
    stat = path.stat()
    key = f"{path}#tensors" if tensors_only else str(path)
    seen = (key, stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = _known.get(seen)
    if known is not None:
        return known
    digest = _stored_or_computed(path, key, stat, cache_dir, tensors_only=tensors_only)
    with _lock:
        _known[seen] = digest
    return digest


def _stored_or_computed(
    path: Path, key: str, stat: os.stat_result, cache_dir: Path | None, *, tensors_only: bool
) -> str:
    """The digest from the cache file in ``cache_dir`` when it is there, else computed (and stored)."""
    compute = tensors_sha256 if tensors_only else sha256_file
    if cache_dir is None:
        return compute(path)
    cache_path = cache_dir / CACHE_FILE
    with _lock:
        entry = _read_cache(cache_path).get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    log.info("hashing %s (%.1f MB); the result is cached", path, stat.st_size / 1e6)
    digest = compute(path)
    with _lock:
        cache = _read_cache(cache_path)
        cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        _write_cache(cache_path, cache)
    return digest


def cached_sha256(path: Path, cache_dir: Path | None) -> str | None:
    """The sha256 of a model (file or diffusers folder) if it was hashed before and has not
    changed since; ``None`` otherwise (nothing is read: for listings)."""
    target = folder_weights_file(path) if path.is_dir() else path
    if target is None or cache_dir is None or not target.is_file():
        return None
    target = target.resolve()
    stat = target.stat()
    with _lock:
        entry = _read_cache(cache_dir / CACHE_FILE).get(str(target))
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    return None


def model_hash(path: Path, cache_dir: Path | None = None) -> str | None:
    """A1111's AutoV2 hash of a checkpoint file or a diffusers folder (``None`` if no weights)."""
    target = folder_weights_file(path) if path.is_dir() else path
    if target is None:
        return None
    return file_sha256(target, cache_dir)[:AUTOV2_LENGTH]


def _read_cache(cache_path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable hash cache %s: %s", cache_path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_path: Path, cache: dict[str, dict[str, object]]) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
    temporary.replace(cache_path)
