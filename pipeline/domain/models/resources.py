"""The files a prompt can call on beside the checkpoint: LoRAs, textual-inversion embeddings, VAEs.

Each kind lives in its own folder, as in the WebUI (``models/Lora``, ``embeddings``,
``models/VAE``); a folder is scanned with its subfolders. A file is known by its stem
(``detail-tweaker.safetensors`` is ``detail-tweaker``), matched without regard to case; when two
files share a stem, the first found (shallower first, then alphabetical) keeps it and the other
is known by its path relative to the folder, without suffix (``sdxl/detail-tweaker``). A VAE can
also be a diffusers folder (``config.json`` and weights).

Hashes are the WebUI's, so that an infotext's ``Lora hashes``, ``TI hashes`` and ``VAE hash`` find
the same files: a LoRA's is the sha256 of its tensor data (the "addnet" hash, civitai's AutoV3)
cut to 12 digits, an embedding's the file's sha256 cut to 12, a VAE's the file's sha256 cut to
10. Digests are cached with the model hashes (a file is read once until it changes).

Folders are looked at again when a name is not found and at most every :data:`RESCAN_S`
seconds otherwise, so files an admin adds are picked up without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.domain.models.hashing import file_sha256
from pipeline.domain.prompt.networks import read_tags
from pipeline.domain.text import shorten
from pipeline.errors import ResourceNotFound

if TYPE_CHECKING:
    from pipeline.domain.request import GenerationRequest

log = logging.getLogger(__name__)

Kind = Literal["lora", "embedding", "vae"]
RESCAN_S = 10.0
MAX_FILES = 5000
"""A folder lists at most this many files (the rest are logged and left out)."""
MAX_DEPTH = 4

SUFFIXES: dict[Kind, tuple[str, ...]] = {
    "lora": (".safetensors",),
    "embedding": (".safetensors", ".pt", ".bin"),
    "vae": (".safetensors", ".pt", ".ckpt", ".bin"),
}
HASH_LENGTHS: dict[Kind, int] = {"lora": 12, "embedding": 12, "vae": 10}
FOLDER_NAMES: dict[Kind, str] = {"lora": "Lora", "embedding": "embeddings", "vae": "VAE"}
"""The WebUI's folder names, looked for beside the checkpoints when no folder is set."""
VAE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")
"""A VAE beside a checkpoint named like it (``model.vae.safetensors``) is that model's VAE."""


@dataclass(frozen=True)
class Resource:
    """One LoRA, embedding or VAE file (or VAE folder)."""

    kind: Kind
    name: str
    path: Path

    def full_hash(self, cache_dir: Path | None) -> str:
        """The full digest the WebUI's short hash is cut from (see the module docstring)."""
        target = folder_weights_file_of_vae(self.path) if self.path.is_dir() else self.path
        if target is None:
            raise FileNotFoundError(f"{self.path} has no weights file")
        return file_sha256(target, cache_dir, tensors_only=self.kind == "lora")

    def short_hash(self, cache_dir: Path | None) -> str:
        """The hash as the WebUI writes it into an infotext."""
        return self.full_hash(cache_dir)[: HASH_LENGTHS[self.kind]]

    @property
    def file_name(self) -> str:
        """The file name the WebUI writes for a VAE (``VAE: name.safetensors``)."""
        return self.path.name


def folder_weights_file_of_vae(folder: Path) -> Path | None:
    """The weights file of a diffusers VAE folder (``diffusion_pytorch_model.*``)."""
    for candidate in sorted(folder.glob("diffusion_pytorch_model*")):
        if candidate.suffix in (".safetensors", ".bin"):
            return candidate
    return None


class ResourceFolder:
    """The files of one kind in one folder (``folder=None``: none configured)."""

    def __init__(self, kind: Kind, folder: Path | None) -> None:
        self.kind = kind
        self.folder = folder
        self._lock = threading.Lock()
        self._found: dict[str, Resource] = {}
        self._scanned_at = float("-inf")

    def all(self) -> list[Resource]:
        """Every file, by name."""
        self._refresh(force=False)
        with self._lock:
            return sorted(self._found.values(), key=lambda resource: resource.name.casefold())

    def names(self) -> list[str]:
        return [resource.name for resource in self.all()]

    def find(self, name: str) -> Resource | None:
        """The file called ``name`` (case-insensitive, with or without its suffix), or ``None``."""
        key = _key(_without_suffix(name.strip(), SUFFIXES[self.kind]))
        for force in (False, True):
            self._refresh(force=force)
            with self._lock:
                found = self._found.get(key) or self._by_relative_path(key)
            if found is not None:
                return found
        return None

    def _by_relative_path(self, key: str) -> Resource | None:
        """``sub/name`` finds the file in a subfolder even when its stem alone names it."""
        if "/" not in key or self.folder is None:
            return None
        for resource in self._found.values():
            relative = resource.path.relative_to(self.folder).as_posix()
            if _key(_without_suffix(relative, SUFFIXES[self.kind])) == key:
                return resource
        return None

    def find_hash(self, short_hash: str, cache_dir: Path | None) -> Resource | None:
        """The file whose WebUI hash starts with ``short_hash`` (at least 8 hex digits), or ``None``.

        Hashing reads every file once (the digests are cached), so look by hash only on import.
        """
        wanted = short_hash.strip().casefold()
        if len(wanted) < 8 or any(c not in "0123456789abcdef" for c in wanted):
            return None
        for resource in self.all():
            try:
                if resource.full_hash(cache_dir).startswith(wanted):
                    return resource
            except OSError as error:
                log.warning("cannot hash %s: %s", resource.path, error)
        return None

    def _refresh(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._scanned_at < RESCAN_S:
                return
            self._scanned_at = now
        found = _scan(self.kind, self.folder) if self.folder is not None else {}
        with self._lock:
            self._found = found


@dataclass(frozen=True)
class Resources:
    """The LoRA, embedding and VAE folders, and the VAE to use when a request names none.

    ``vae`` is ``NANKE_VAE``: a name in the VAE folder, or a path; ``None`` uses each model's
    own VAE (or the ``<checkpoint>.vae.safetensors`` beside it).
    """

    loras: ResourceFolder
    embeddings: ResourceFolder
    vaes: ResourceFolder
    vae: str | None = None
    cache_dir: Path | None = None

    @classmethod
    def none(cls) -> Resources:
        """No folders: prompts can call on nothing beside the checkpoint."""
        return cls(
            ResourceFolder("lora", None), ResourceFolder("embedding", None), ResourceFolder("vae", None)
        )

    @classmethod
    def of(
        cls,
        *,
        lora_dir: Path | None,
        embeddings_dir: Path | None,
        vae_dir: Path | None,
        vae: str | None = None,
        cache_dir: Path | None = None,
    ) -> Resources:
        return cls(
            ResourceFolder("lora", lora_dir),
            ResourceFolder("embedding", embeddings_dir),
            ResourceFolder("vae", vae_dir),
            vae=vae,
            cache_dir=cache_dir,
        )

    def folder(self, kind: Kind) -> ResourceFolder:
        return {"lora": self.loras, "embedding": self.embeddings, "vae": self.vaes}[kind]

    def check(self, request: GenerationRequest) -> None:
        """Refuse ``request`` before it is queued when a LoRA or VAE it names is not here.

        Raises :class:`ResourceNotFound` naming the first missing file (embeddings are plain
        words, so a missing one cannot be told from text).
        """
        for tag in read_tags(request.prompt, request.negative_prompt):
            if tag.weight != 0 and self.loras.find(tag.name) is None:
                raise ResourceNotFound(
                    f"There is no LoRA called “{shorten(tag.name)}” here; /loras lists them.",
                    key="lora_not_found",
                    params={"name": shorten(tag.name)},
                )
        if request.vae is not None and self.vaes.find(request.vae) is None:
            raise ResourceNotFound(
                f"There is no VAE called “{shorten(request.vae)}” here.",
                key="vae_not_found",
                params={"name": shorten(request.vae)},
            )

    def vae_for(self, name: str | None, checkpoint: Path | None) -> Resource | None:
        """The VAE a request with ``vae=name`` uses on the model at ``checkpoint``; ``None``: the
        model's own. A name not in the folder is ``LookupError`` (the caller words the message)."""
        if name is not None:
            found = self.vaes.find(name)
            if found is None:
                raise LookupError(name)
            return found
        if self.vae:
            found = self.vaes.find(self.vae)
            if found is None:
                path = Path(self.vae).expanduser()
                if not path.exists():
                    raise LookupError(self.vae)
                found = Resource("vae", path.stem if path.is_file() else path.name, path)
            return found
        return beside(checkpoint)


def vae_name(value: str | None) -> str | None:
    """A VAE as the WebUI names it (``VAE: vae-ft-mse.safetensors``, ``sd_vae``) as a name in the
    VAE folder: the file name without suffix; ``None``, ``Automatic`` or nothing: the model's own."""
    name = (value or "").strip()
    if not name or name.casefold() in ("none", "automatic"):
        return None
    return _without_suffix(name, SUFFIXES["vae"])


def beside(checkpoint: Path | None) -> Resource | None:
    """The ``<checkpoint stem>.vae.safetensors`` (or ``.vae.pt``/``.vae.ckpt``) next to a checkpoint."""
    if checkpoint is None or not checkpoint.is_file():
        return None
    for suffix in VAE_SUFFIXES:
        candidate = checkpoint.with_name(checkpoint.stem + suffix)
        if candidate.is_file():
            return Resource("vae", candidate.name[: -len(Path(candidate.name).suffix)], candidate)
    return None


def default_folder(kind: Kind, *, models_dir: Path | None, data_dir: Path) -> Path | None:
    """Where the WebUI keeps ``kind`` relative to the checkpoints, if such a folder exists.

    Looked for, in order: inside the models folder (``models/Lora``), beside it (the WebUI's
    ``models/Stable-diffusion`` next to ``models/Lora``), the WebUI root for embeddings, and the
    data folder.
    """
    name = FOLDER_NAMES[kind]
    candidates: list[Path] = []
    if models_dir is not None:
        candidates += [models_dir / name, models_dir.parent / name]
        if kind == "embedding":
            candidates.append(models_dir.parent.parent / name)
    candidates.append(data_dir / name)
    return next((candidate for candidate in candidates if candidate.is_dir()), None)


def trigger_words(resource: Resource, *, limit: int = 5) -> list[str]:
    """A LoRA's trigger words, from what its file says about itself.

    In order: the WebUI's sidecar ``<name>.json`` (``activation text``), the ``modelspec``
    trigger phrase, then the most frequent training tags (kohya's ``ss_tag_frequency``).
    """
    sidecar = resource.path.with_suffix(".json")
    try:
        if sidecar.is_file() and sidecar.stat().st_size < 1_000_000:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            text = data.get("activation text") if isinstance(data, dict) else None
            if isinstance(text, str) and text.strip():
                return [word.strip() for word in text.split(",") if word.strip()][:limit]
    except (OSError, ValueError) as error:
        log.debug("cannot read %s: %s", sidecar, error)
    metadata = _metadata(resource.path)
    phrase = metadata.get("modelspec.trigger_phrase", "")
    if phrase.strip():
        return [word.strip() for word in phrase.split(",") if word.strip()][:limit]
    try:
        frequency = json.loads(metadata.get("ss_tag_frequency", "{}"))
    except ValueError:
        return []
    counts: dict[str, int] = {}
    if isinstance(frequency, dict):
        for tags in frequency.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int):
                        counts[str(tag).strip()] = counts.get(str(tag).strip(), 0) + count
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [tag for tag, _ in ranked if tag][:limit]


def _metadata(path: Path) -> dict[str, str]:
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # a truncated or foreign file
        log.debug("cannot read the metadata of %s: %s", path, error)
        return {}


def _scan(kind: Kind, folder: Path) -> dict[str, Resource]:
    if not folder.is_dir():
        log.warning("the %s folder %s does not exist", kind, folder)
        return {}
    entries = sorted(_walk(kind, folder), key=lambda path: (len(path.relative_to(folder).parts), str(path)))
    found: dict[str, Resource] = {}
    for path in entries[:MAX_FILES]:
        stem = path.name if path.is_dir() else _without_suffix(path.name, SUFFIXES[kind])
        name = (
            stem
            if _key(stem) not in found
            else _without_suffix(path.relative_to(folder).as_posix(), SUFFIXES[kind])
        )
        found[_key(name)] = Resource(kind, name, path)
    if len(entries) > MAX_FILES:
        log.warning(
            "the %s folder %s holds %d files; only %d are used", kind, folder, len(entries), MAX_FILES
        )
    return found


def _walk(kind: Kind, folder: Path, depth: int = 0) -> Iterator[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError as error:
        log.warning("cannot list %s: %s", folder, error)
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if kind == "vae" and (child / "config.json").is_file():
                yield child
            elif depth < MAX_DEPTH:
                yield from _walk(kind, child, depth + 1)
        elif child.suffix.lower() in SUFFIXES[kind]:
            yield child


def _without_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()
