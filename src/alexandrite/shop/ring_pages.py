"""The ring constructor: a ring designed from a size chart, band and setting, previewed and ordered like an upload."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from alexandrite.contracts.alloys import ALLOYS, DENSITIES_G_CM3
from alexandrite.contracts.order_status import IllegalTransition
from alexandrite.kit.errors import ApiError
from alexandrite.models3d import rings, writers
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.ring_builder import SETTINGS, RingSpec, RingSpecError, build_ring, size_chart
from alexandrite.orders.words import plain_error
from alexandrite.shop.page_base import Csrf, Customer, UploadFailed, alloy_choices, order_with_model, redirect, render

router = APIRouter(include_in_schema=False)


def _ring_spec(params: dict[str, Any]) -> RingSpec:
    """A RingSpec from form or query values; RingSpecError with the field for anything unreadable."""
    defaults = RingSpec()
    values: dict[str, Any] = {}
    combined = params.get("size_and_system")
    if combined:  # the form's one select: "us:7.0"
        system, _, size = str(combined).partition(":")
        params = {**params, "size_system": system, "size": size}
    for name in ("size", "band_width_mm", "thickness_mm", "stone_mm"):
        raw = params.get(name)
        if raw in (None, ""):
            continue
        try:
            values[name] = float(raw)
        except (TypeError, ValueError) as error:
            raise RingSpecError(name, f"The {name.removesuffix('_mm').replace('_', ' ')} must be a number.") from error
    for name in ("size_system", "profile", "setting"):
        if params.get(name):
            values[name] = str(params[name])
    if "size" in values and "size_system" not in values:
        values["size_system"] = defaults.size_system
    return RingSpec(**values).check()


def _ring_facts(spec: RingSpec) -> dict[str, Any]:
    facts = analyse(build_ring(spec))
    return {"size_mm": [round(v, 1) for v in facts.size_mm], "volume_mm3": facts.volume_mm3,
            "triangles": facts.triangles, "watertight": facts.watertight,
            "inner_diameter_mm": spec.inner_diameter_mm(),
            # An estimate from the alloys' nominal densities: the quote uses the pricing configuration's.
            "mass_g": {a: facts.volume_mm3 / 1000 * density for a, density in DENSITIES_G_CM3.items()}}


@router.get("/rings/new")
async def ring_form(request: Request, principal: Customer) -> Response:
    spec = RingSpec()
    return render(request, "ring.html", principal, title="Design a ring", spec=spec, sizes=size_chart(),
                   profiles=rings.PROFILES, settings_=SETTINGS, alloys=alloy_choices(), facts=_ring_facts(spec),
                   idempotency_key=uuid.uuid4().hex)


@router.get("/rings/preview.stl")
async def ring_preview(request: Request, _: Customer) -> Response:
    try:
        spec = _ring_spec(dict(request.query_params))
    except RingSpecError as error:
        raise ApiError(422, "invalid_ring", error.message, details={"field": error.field}) from error
    data = writers.to_binary_stl(await asyncio.to_thread(build_ring, spec))
    return Response(data, media_type="model/stl")


@router.get("/rings/facts")
async def ring_facts(request: Request, principal: Customer) -> Response:
    try:
        spec = _ring_spec(dict(request.query_params))
    except RingSpecError as error:
        return render(request, "_ring_facts.html", principal, facts=None, error=error.message)
    return render(request, "_ring_facts.html", principal, facts=await asyncio.to_thread(_ring_facts, spec),
                   alloy=request.query_params.get("alloy"))


@router.post("/rings/new", dependencies=[Csrf])
async def ring_order(request: Request, principal: Customer) -> Response:
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    alloy = params.get("alloy", "")
    try:
        spec = _ring_spec(params)
        if alloy not in ALLOYS:
            raise RingSpecError("alloy", "Choose the metal for your ring.")
    except RingSpecError as error:
        return render(request, "ring.html", principal, status=422, title="Design a ring", spec=RingSpec(),
                       sizes=size_chart(), profiles=rings.PROFILES, settings_=SETTINGS, alloys=alloy_choices(),
                       facts=None, idempotency_key=uuid.uuid4().hex, error=error.message)
    data = writers.to_binary_stl(await asyncio.to_thread(build_ring, spec),
                               header=f"alexandrite ring {spec.profile} {spec.setting}".encode())
    filename = f"ring-{spec.size_system}{spec.size:g}-{spec.profile}-{spec.setting}.stl"
    try:
        created = await order_with_model(request, principal, alloy, params.get("idempotency_key", ""), "", data,
                                          filename)
    except (UploadFailed, ApiError, IllegalTransition) as failure:
        cause = failure.cause if isinstance(failure, UploadFailed) else failure
        return render(request, "ring.html", principal, status=getattr(cause, "status", 409), title="Design a ring",
                       spec=spec, sizes=size_chart(), profiles=rings.PROFILES, settings_=SETTINGS,
                       alloys=alloy_choices(), facts=None, idempotency_key=uuid.uuid4().hex, error=plain_error(cause))
    return redirect(f"/orders/{created}?{urlencode({'notice': 'ring_ready'})}")


