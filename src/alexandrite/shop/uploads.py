"""Upload inspection: parse and measure a customer's model before anything is stored.

The same :class:`~alexandrite.models3d.limits.ModelLimits` binds this check, the preview and the pricing
worker, so a model accepted here is never refused later for its size.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from prometheus_client import Counter

from alexandrite.kit.errors import ApiError
from alexandrite.models3d.formats import parse_model
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.limits import ModelLimits

PARSES_REFUSED = Counter("alexandrite_model_parses_refused_total",
                         "Uploads answered 503 because every model parse slot of the process stayed busy")

# Binary STL files up to this size (~5,000 triangles, a small ring) are checked on the event loop: about a
# millisecond of NumPy, less than handing them to a thread and back costs when the process is busy (the
# switches of the interpreter lock made uploads 5x slower under load). Anything else, and every other
# format (text to parse, a 3MF archive to inflate), goes to a thread. Both take a parse slot first.
INLINE_PARSE_BYTES = 256 * 1024


def parse_inline(data: bytes) -> bool:
    """A small file whose length is exactly that of the binary STL its header announces."""
    if len(data) > INLINE_PARSE_BYTES or len(data) < 84:
        return False
    return len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")

# Where each format's file is kept (content-addressed key + this extension).
MODEL_EXTENSIONS = {"stl_binary": "stl", "stl_ascii": "stl", "obj": "obj", "3mf": "3mf"}


def inspect_model(data: bytes, filename: str | None, limits: ModelLimits) -> dict[str, Any]:
    """Parse and check a model file; raises ModelFormatError with a precise reason."""
    parsed = parse_model(data, filename, limits)
    mesh = analyse(np.asarray(parsed.triangles))
    return {
        "format": parsed.format,
        "triangles": mesh.triangles,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_mm": [round(v, 3) for v in mesh.size_mm],
        "volume_mm3": round(mesh.volume_mm3, 3),
        "watertight": mesh.watertight,
    }


def facts_for_ref(facts: dict[str, Any]) -> dict[str, Any]:
    """The model facts an order event carries."""
    return {k: facts[k] for k in ("format", "triangles", "bytes", "sha256")}


class ParseSlots:
    """At most ``size`` model parses at once in this process (uploads and previews); a request waits up to
    ``wait_seconds`` for a slot, then gets 503 ``uploads_busy`` with ``Retry-After``.

    Parsing holds memory proportional to the model and, in parts, the interpreter lock: a few large files
    at once must not take the process's memory or starve its event loop (health checks included).
    """

    def __init__(self, size: int, wait_seconds: float) -> None:
        self.size = size
        self.wait_seconds = wait_seconds
        self._free = asyncio.Semaphore(size)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._free.acquire(), timeout=self.wait_seconds)
        except TimeoutError:
            PARSES_REFUSED.inc()
            retry = max(1, math.ceil(self.wait_seconds))
            raise ApiError(503, "uploads_busy",
                           "We are checking other models right now. Send this one again in a few seconds; "
                           "nothing was changed.", details={"retry_after_seconds": retry},
                           headers={"Retry-After": str(retry)}) from None
        try:
            yield
        finally:
            self._free.release()
