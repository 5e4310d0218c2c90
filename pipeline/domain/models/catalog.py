"""Which models nanke can run, by the short names people pick in Discord.

The catalog knows the default model (``NANKE_MODEL``: a diffusers folder, a ``.safetensors`` /
``.ckpt`` file, the name of a model in the models folder, or a Hugging Face Hub id such as
``stable-diffusion-v1-5/stable-diffusion-v1-5``) and the models folder (like A1111's
``models/Stable-diffusion/``). The folder is scanned without recursion plus one level of
subfolders, for single files (``.safetensors``, ``.ckpt``) and diffusers folders (a folder with a
``model_index.json``). ``<stem>.config`` folders are per-checkpoint overrides, not models.

Names are matched without regard to case or to how accented letters are encoded (NFD file names
on macOS match NFC request text). A value the system cannot look up as a path (too long, a NUL)
is a model not found, like any other unknown name; messages show at most 60 characters of it.

A model's name is its file stem or folder name (a Hub model's name is its id). When two models
share a name, the first one found (top level before subfolders, then alphabetical) keeps it and
the other is named by its path relative to the models folder (``sub/name.safetensors``).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.domain.text import listing, quoted, shorten
from pipeline.errors import ModelNotFound

log = logging.getLogger(__name__)

ModelKind = Literal["diffusers", "single_file", "hub"]
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
CONFIG_FOLDER_SUFFIX = ".config"
"""A ``<checkpoint stem>.config`` folder beside a checkpoint overrides its configs."""

INPAINTING_SEPARATORS = ("-", "_", ".")
RESOURCE_FOLDERS = frozenset({"lora", "lycoris", "vae", "embeddings"})
"""Subfolders of the models folder that hold LoRAs, VAEs or embeddings, not checkpoints."""
_SHOWN_PATH_CHARS = 200
"""A path in a message is cut to this many characters (a path can be 4 096 characters long)."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class ModelSpec:
    """One model: its display ``name``, its ``source`` (a path or a Hub id) and its ``kind``."""

    name: str
    source: str
    kind: ModelKind

    @property
    def path(self) -> Path | None:
        """The local file or folder, or ``None`` for a Hub model."""
        return None if self.kind == "hub" else Path(self.source)


def spec_for_path(path: Path, name: str | None = None) -> ModelSpec | None:
    """The spec of a checkpoint file or diffusers folder at ``path``, or ``None`` if it is neither."""
    if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return ModelSpec(name or path.stem, str(path), "single_file")
    if path.is_dir() and (path / "model_index.json").is_file():
        return ModelSpec(name or path.name, str(path), "diffusers")
    return None


def looks_like_hub_id(value: str) -> bool:
    """``owner/name`` with Hub-legal characters and no checkpoint suffix."""
    return bool(_HUB_ID.match(value)) and ".." not in value and not _has_checkpoint_suffix(value)


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith((".", "~")) or _has_checkpoint_suffix(value)


class ModelCatalog:
    """The default model plus the models found in ``models_dir``, by case-insensitive name."""

    def __init__(self, default: str, models_dir: str | Path | None = None) -> None:
        self.default = default.strip()
        self.models_dir = Path(models_dir).expanduser() if models_dir is not None else None
        self._lock = threading.Lock()
        self._scanned: dict[str, ModelSpec] = {}
        self._extra: dict[str, ModelSpec] = {}
        self.rescan()

    def rescan(self) -> None:
        """Look at the models folder again (new or removed checkpoints)."""
        found = _scan(self.models_dir) if self.models_dir is not None else {}
        with self._lock:
            self._scanned = found
        log.info("model catalog: %d model(s) in %s", len(found), self.models_dir or "(no models folder)")

    def names(self) -> list[str]:
        """The names to offer (for Discord autocomplete): the default first, then the models folder."""
        default = self._default_spec()
        names = [default.name] if default is not None else []
        with self._lock:
            scanned = sorted(self._scanned.values(), key=lambda spec: spec.name.casefold())
        taken = {_key(name) for name in names}
        return names + [spec.name for spec in scanned if _key(spec.name) not in taken]

    def resolve(self, name: str | None, *, allow_paths: bool = True) -> ModelSpec:
        """The model called ``name`` (``None``: the default), by name, path or Hub id.

        Names are matched without regard to case, with or without a ``.safetensors``/``.ckpt``
        suffix. ``allow_paths=False`` accepts only the catalog's names (use it for what strangers
        type: a path or Hub id would let them load any file or download any model). Raises
        :class:`ModelNotFound` saying what was looked for and where.
        """
        if name is None or not name.strip():
            if not self.default:
                raise ModelNotFound("no default model is set: set NANKE_MODEL")
            return self._find(self.default, setting="NANKE_MODEL")
        key = name.strip()
        if allow_paths:
            return self._find(key, setting=None)
        default = self._default_spec()
        spec = self._by_name(key) or (default if default and _key(default.name) == _key(key) else None)
        if spec is None:
            available = self.names()
            raise ModelNotFound(
                f"there is no model called {quoted(key)} here; available: "
                f"{listing(available) if available else 'only the default model'}"
            )
        return spec

    def inpainting_variant(self, name: str | None) -> ModelSpec | None:
        """The inpainting version of model ``name`` when the models folder has one, named as the
        WebUI's are (``<name>-inpainting``, ``<name>_inpainting`` or ``<name>.inpainting``)."""
        spec = self.resolve(name)
        for separator in INPAINTING_SEPARATORS:
            variant = self._by_name(f"{spec.name}{separator}inpainting")
            if variant is not None:
                return variant
        return None

    # -- internals ------------------------------------------------------------------------------

    def _default_spec(self) -> ModelSpec | None:
        if not self.default:
            return None
        try:
            return self._find(self.default, setting="NANKE_MODEL", explain=False)
        except ModelNotFound:
            return None

    def _find(self, value: str, *, setting: str | None, explain: bool = True) -> ModelSpec:
        """The model ``value`` names; ``explain=False`` skips listing the others (names() uses it)."""
        spec = self._by_name(value)
        if spec is not None:
            return spec
        if setting is None:  # the default model's name, before anything resolved the default
            default = self._default_spec()
            if default is not None and _key(default.name) == _key(_strip_checkpoint_suffix(value)):
                return default
        with _refused_as_path(value):
            path = Path(value).expanduser()
            if path.exists():
                spec = spec_for_path(path)
                if spec is None:
                    raise ModelNotFound(
                        f"{_shown_path(path)} is not a model: expected a .safetensors or .ckpt file, "
                        "or a diffusers folder (with a model_index.json)"
                    )
                return self._remember(spec)
        if looks_like_hub_id(value):
            return ModelSpec(value, value, "hub")
        if looks_like_path(value):
            raise ModelNotFound(
                f"no checkpoint found at {_shown_path(path.absolute())}: put a .safetensors file or a "
                "diffusers folder there, or set NANKE_MODEL"
            )
        raise ModelNotFound(
            self._not_found_message(value, setting) if explain else f"model {quoted(value)} not found"
        )

    def _by_name(self, value: str) -> ModelSpec | None:
        keys = {_key(value), _key(_strip_checkpoint_suffix(value))}
        with self._lock:
            for table in (self._scanned, self._extra):
                for key in keys:
                    if key in table:
                        return table[key]
        return None

    def _remember(self, spec: ModelSpec) -> ModelSpec:
        """Keep a model given by path so that its name resolves later (the pool looks it up again)."""
        with self._lock:
            taken = self._scanned.get(_key(spec.name)) or self._extra.get(_key(spec.name))
            if taken is not None and taken.source != spec.source:
                spec = ModelSpec(spec.source, spec.source, spec.kind)
            self._extra[_key(spec.name)] = spec
        return spec

    def _not_found_message(self, value: str, setting: str | None) -> str:
        where = (
            f"in the models folder {self.models_dir}"
            if self.models_dir is not None
            else "in the models folder (none is set: NANKE_MODELS_DIR)"
        )
        available = self.names()
        told = f" (from {setting})" if setting else ""
        return (
            f"model {quoted(value)}{told} not found: looked for a model of that name {where} "
            f"(names ignore case), for a file or folder at that path, and for a Hub id "
            f"(owner/name); available: {listing(available) if available else 'none'}"
        )


def _scan(models_dir: Path) -> dict[str, ModelSpec]:
    if not models_dir.is_dir():
        log.warning("models folder %s does not exist", models_dir)
        return {}
    found: dict[str, ModelSpec] = {}
    top = [entry for entry in sorted(models_dir.iterdir()) if _visible(entry)]
    nested = [
        child
        for entry in top
        if entry.is_dir() and spec_for_path(entry) is None and entry.name.casefold() not in RESOURCE_FOLDERS
        for child in sorted(entry.iterdir())
        if _visible(child)
    ]
    for entry in top + nested:
        spec = spec_for_path(entry)
        if spec is None:
            continue
        if _key(spec.name) in found:
            spec = ModelSpec(entry.relative_to(models_dir).as_posix(), spec.source, spec.kind)
            log.warning("two models are named %s; the one at %s is called %s", entry.stem, entry, spec.name)
        found[_key(spec.name)] = spec
    return found


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".") and not entry.name.endswith(CONFIG_FOLDER_SUFFIX)


def _key(name: str) -> str:
    """How names are compared: without regard to case or to how accents are encoded (a file name
    from macOS is decomposed, a request's model name is in NFC)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


@contextmanager
def _refused_as_path(value: str) -> Iterator[None]:
    """Turn the system refusing to look ``value`` up as a path (a name too long, a NUL, an unknown
    ``~user``, no permission) into :class:`ModelNotFound`, with the value shortened."""
    try:
        yield
    except (OSError, ValueError, RuntimeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        log.debug("cannot look for a model at %s: %s", quoted(value), reason)
        raise ModelNotFound(
            f"model {quoted(value)} not found: it cannot be looked up as a file or folder ({shorten(reason)})"
        ) from None


def _shown_path(path: Path) -> str:
    return shorten(str(path), _SHOWN_PATH_CHARS)


def _has_checkpoint_suffix(value: str) -> bool:
    return value.lower().endswith(CHECKPOINT_SUFFIXES)


def _strip_checkpoint_suffix(value: str) -> str:
    for suffix in CHECKPOINT_SUFFIXES:
        if value.lower().endswith(suffix):
            return value[: -len(suffix)]
    return value
