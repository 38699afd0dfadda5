"""Upload inspection: parse and measure a customer's model before anything is stored.

The same :class:`~alexandrite.models3d.limits.ModelLimits` binds this check, the preview and the pricing
worker, so a model accepted here is never refused later for its size.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from alexandrite.models3d.formats import parse_model
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.limits import ModelLimits

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
