"""Object storage for model files: content-addressed keys, atomic writes (local folder)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alexandrite.kit.breaker import BreakerOpen, CircuitBreaker
from alexandrite.kit.errors import ApiError

T = TypeVar("T")


class StorageUnavailable(ApiError):
    def __init__(self, reason: str) -> None:
        super().__init__(503, "storage_unavailable", "Model storage is not answering; try again shortly.",
                         headers={"Retry-After": "10"})
        self.reason = reason


class LocalStorage:
    """Calls go through an optional breaker with a timeout; failures raise :class:`StorageUnavailable`."""

    def __init__(self, root: Path, breaker: CircuitBreaker | None = None) -> None:
        self.root = Path(root)
        self.breaker = breaker
        self._resolved: str | None = None  # the root with its symbolic links resolved, once

    async def _guarded(self, work: Callable[[], T]) -> T:
        if self.breaker is None:
            return await asyncio.to_thread(work)
        try:
            return await self.breaker.call(lambda: asyncio.to_thread(work),
                                           is_failure=lambda e: not isinstance(e, (FileNotFoundError, ValueError)))
        except (BreakerOpen, TimeoutError, PermissionError, IsADirectoryError) as error:
            raise StorageUnavailable(repr(error)) from error
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise StorageUnavailable(repr(error)) from error

    def _path(self, key: str) -> Path:
        """The file of ``key`` under the root. ``..`` and absolute keys are refused by looking at the path
        alone (the root's own links are resolved once, not every component per call); keys are ours
        (content digests), and links inside the storage folder are not followed out of it by this check."""
        if self._resolved is None:
            self._resolved = os.path.realpath(self.root)
        root = self._resolved
        path = os.path.normpath(os.path.join(root, key))
        if not path.startswith(root + os.sep):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return Path(path)

    @staticmethod
    def model_key(data: bytes, extension: str) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        return LocalStorage.key_for(digest, extension), digest

    @staticmethod
    def key_for(digest: str, extension: str) -> str:
        """The key of a file whose SHA-256 (hex) is ``digest``: content-addressed."""
        return f"models/{digest[:2]}/{digest}.{extension}"

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            if path.stat().st_size == len(data):
                return  # content-addressed: already stored
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        await self._guarded(lambda: self._write(key, data))

    async def get(self, key: str) -> bytes:
        return await self._guarded(lambda: self._path(key).read_bytes())

    def get_sync(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    async def exists(self, key: str) -> bool:
        return await self._guarded(lambda: self._path(key).exists())
