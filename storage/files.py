"""The image store: files named by the sha256 of their content, beside the database.

``put`` is idempotent (the same bytes land in the same file) and atomic (a file is either
absent or complete: it is written under a temporary name and renamed into place). Names are
sharded into two levels of folders, ``ab/cd/abcd….png``, so no folder grows too large.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")
FILE_MODE = 0o644


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    path: str
    """Relative to the store's root, with forward slashes: what the database keeps."""
    size_bytes: int


class ImageStore:
    """Content-addressed files under ``root``; every path in and out is relative to it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put(self, data: bytes, *, suffix: str) -> StoredFile:
        """Store ``data`` (e.g. ``suffix=".png"``) unless the same content is already there."""
        suffix = suffix.lower()
        if not _SUFFIX.match(suffix):
            raise ValueError(f"suffix: {suffix!r} (expected a dot and 1-10 letters or digits, like '.png')")
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
        stored = StoredFile(sha256=digest, path=relative, size_bytes=len(data))
        target = self.path(relative)
        if target.is_file() and target.stat().st_size == len(data):
            return stored
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, data)
        log.debug("stored %s (%d bytes)", relative, len(data))
        return stored

    def path(self, relative: str | PurePosixPath) -> Path:
        """The absolute file of ``relative``; refuses paths that would leave the store."""
        pure = PurePosixPath(relative)
        if not pure.parts or pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"not a path inside the image store: {str(relative)!r}")
        return self.root.joinpath(*pure.parts)

    def read(self, relative: str | PurePosixPath) -> bytes:
        return self.path(relative).read_bytes()

    def exists(self, relative: str | PurePosixPath) -> bool:
        return self.path(relative).is_file()

    def delete(self, relative: str | PurePosixPath) -> bool:
        """Remove the file; ``False`` if it was not there. Shard folders stay (another put may need them)."""
        try:
            self.path(relative).unlink()
        except FileNotFoundError:
            return False
        log.debug("deleted %s", relative)
        return True


def _write_atomically(target: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
