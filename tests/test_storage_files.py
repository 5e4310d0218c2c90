"""The content-addressed image store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage import ImageStore, StoredFile


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_put_names_the_file_by_its_hash_in_shards(store: ImageStore) -> None:
    data = b"\x89PNG not really"
    digest = hashlib.sha256(data).hexdigest()
    stored = store.put(data, suffix=".png")
    assert stored == StoredFile(
        sha256=digest, path=f"{digest[:2]}/{digest[2:4]}/{digest}.png", size_bytes=len(data)
    )
    assert store.path(stored.path) == store.root / digest[:2] / digest[2:4] / f"{digest}.png"
    assert store.read(stored.path) == data
    assert store.exists(stored.path)


def test_put_is_idempotent(store: ImageStore) -> None:
    first = store.put(b"same", suffix=".png")
    mtime = store.path(first.path).stat().st_mtime_ns
    second = store.put(b"same", suffix=".PNG")
    assert second == first
    assert store.path(first.path).stat().st_mtime_ns == mtime  # not rewritten
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == [Path(first.path).name]


def test_put_repairs_a_truncated_file(store: ImageStore) -> None:
    stored = store.put(b"complete content", suffix=".png")
    store.path(stored.path).write_bytes(b"compl")
    assert store.put(b"complete content", suffix=".png") == stored
    assert store.read(stored.path) == b"complete content"


def test_put_is_atomic(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"never lands", suffix=".png")
    assert [p for p in store.root.rglob("*") if p.is_file()] == []  # no partial or temporary file


def test_different_content_gets_different_files(store: ImageStore) -> None:
    a = store.put(b"a", suffix=".png")
    b = store.put(b"b", suffix=".png")
    assert a.path != b.path
    assert store.read(a.path) == b"a"
    assert store.read(b.path) == b"b"


def test_delete(store: ImageStore) -> None:
    stored = store.put(b"gone soon", suffix=".webp")
    assert store.delete(stored.path) is True
    assert not store.exists(stored.path)
    assert store.delete(stored.path) is False
    assert store.put(b"gone soon", suffix=".webp") == stored  # the shard folders are still usable


@pytest.mark.parametrize("suffix", ["png", "", ".", ".p/g", "../x", ".averyverylongsuffix"])
def test_bad_suffix(store: ImageStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        store.put(b"x", suffix=suffix)


@pytest.mark.parametrize("relative", ["/etc/passwd", "../outside.png", "ab/../../x.png", ""])
def test_paths_cannot_leave_the_store(store: ImageStore, relative: str) -> None:
    with pytest.raises(ValueError, match="not a path inside"):
        store.path(relative)
