"""A stored model as binary STL for the browser's three.js preview."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.models3d.formats import parse_model
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
