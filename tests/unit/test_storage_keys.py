"""Model storage keys stay under the storage root (kit/storage.py), checked without touching the disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alexandrite.kit.storage import LocalStorage


def test_keys_resolve_under_the_root_and_escapes_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)  # a root reached through a link: its own links are resolved
    storage = LocalStorage(tmp_path / "link")
    key, digest = LocalStorage.model_key(b"solid", "stl")
    assert storage._path(key) == real / "models" / digest[:2] / f"{digest}.stl"
    assert LocalStorage.key_for(digest, "stl") == key
    assert storage._path("models/ab/../cd/x.stl") == real / "models" / "cd" / "x.stl"
    for bad in ("../outside.stl", "models/../../outside.stl", "/etc/passwd", "", ".", "models/.."):
        with pytest.raises(ValueError, match="escapes the storage root"):
            storage._path(bad)
    sibling = tmp_path / "real-other"  # a sibling folder whose name starts like the root's
    sibling.mkdir()
    with pytest.raises(ValueError):
        storage._path("../real-other/x.stl")


def test_a_stored_file_is_written_once_and_read_back(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    key, _ = LocalStorage.model_key(b"ring", "stl")

    async def scenario() -> bytes:
        await storage.put(key, b"ring")
        first = (tmp_path / key).stat().st_mtime_ns
        await storage.put(key, b"ring")  # content-addressed: the same bytes are not written again
        assert (tmp_path / key).stat().st_mtime_ns == first
        assert await storage.exists(key) and not await storage.exists("models/00/none.stl")
        return await storage.get(key)

    assert asyncio.run(scenario()) == b"ring"
