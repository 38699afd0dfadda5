"""A stored model as binary STL for the browser's three.js preview, and its thin walls for colouring."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from starlette.responses import Response

from alexandrite.contracts.alloys import ALLOYS
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.models3d.checks import inspect_model
from alexandrite.models3d.formats import ModelFormatError, parse_model
from alexandrite.models3d.walls import thin_faces
from alexandrite.models3d.writers import to_binary_stl


async def model_stl(storage: LocalStorage, model: dict[str, Any], settings: Settings) -> bytes:
    """The model file as binary STL (OBJ and 3MF are converted; binary STL is sent as stored)."""
    try:
        data = await storage.get(model["key"])
    except FileNotFoundError as error:
        raise ApiError(404, "not_found", "The model file is not available.") from error
    if model.get("format") == "stl_binary":
        return data

    def convert() -> bytes:
        parsed = parse_model(data, model.get("filename"), settings.uploads.limits)
        return to_binary_stl(parsed.triangles)

    return await asyncio.to_thread(convert)


def stl_response(data: bytes) -> Response:
    return Response(data, media_type="model/stl", headers={"Cache-Control": "private, max-age=60"})


def _thin(data: bytes, filename: str | None, settings: Settings, minimum: float) -> dict[str, Any]:
    parsed = parse_model(data, filename, settings.uploads.limits)
    found = inspect_model(parsed.triangles)
    if found.problem is not None or found.oriented is None or found.metal_mask is None:
        return {"minimum_mm": minimum, "faces": found.facts.triangles, "thin_faces": [], "sampled": False,
                "checked": False}
    metal = found.metal_mask
    index = np.flatnonzero(metal)
    thin, sampled = thin_faces(found.oriented[metal], minimum)
    return {"minimum_mm": minimum, "faces": found.facts.triangles, "thin_faces": index[thin].tolist(),
            "sampled": sampled, "checked": True}


async def model_walls(storage: LocalStorage, model: dict[str, Any], alloy: str | None,
                      settings: Settings) -> dict[str, Any]:
    """Faces of the preview STL (same order) whose wall is thinner than the alloy's minimum.

    ``checked`` is False for a model whose surface is open (there is no inside to measure).
    """
    alloy_spec = ALLOYS.get(alloy or "")
    if alloy_spec is None:
        raise ApiError(404, "not_found", "The order has no metal chosen.")
    try:
        data = await storage.get(model["key"])
    except FileNotFoundError as error:
        raise ApiError(404, "not_found", "The model file is not available.") from error
    try:
        return await asyncio.to_thread(_thin, data, model.get("filename"), settings, alloy_spec.min_wall_mm)
    except ModelFormatError as error:
        raise ApiError(422, error.code, error.message) from error
