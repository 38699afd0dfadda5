"""How big a model may be: one set of limits for the upload check, the preview and the pricing worker."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_TRIANGLES = 2_000_000


@dataclass(frozen=True)
class ModelLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_triangles: int = DEFAULT_MAX_TRIANGLES
