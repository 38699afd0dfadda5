"""The parts of an order every service's API shows: the model's facts, the quote, pricing progress,
a pricing failure and a delay notice. One definition, so shop, CRM and MES describe them alike.

These are response shapes: extra keys a newer producer adds pass through (``extra="allow"``), and only
what every stored quote or model has is required, so older orders still read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from alexandrite.contracts.failure_codes import FailureCode

_OPEN = ConfigDict(extra="allow")


class AsStored(BaseModel):
    """Serialises what it was given and nothing more: a field a stored quote lacks stays absent (its
    default is for readers), so an order reads the same through every route and service."""

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler):  # no return type: keeps the schema
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or ())
        return {key: value for key, value in data.items() if key in given}


class ModelFacts(AsStored):
    """The uploaded 3D model as stored: where, what format, how big."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "key": "models/3f/3fa1c2e4b5d6.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 2304,
        "bytes": 115284, "sha256": "3fa1c2e4b5d6" + "0" * 52, "size_mm": [21.6, 21.6, 4.0],
        "volume_mm3": 512.4, "watertight": True}]})

    key: str = Field(description="Storage key of the file (content-addressed)")
    filename: str | None = None
    format: str = Field(description="stl_binary, stl_ascii, obj or 3mf")
    triangles: int
    bytes: int
    sha256: str
    size_mm: list[float] | None = Field(default=None, description="Bounding box: x, y, z in mm")
    volume_mm3: float | None = None
    watertight: bool | None = None


class QuoteNote(BaseModel):
    """Something the jeweller's checks noticed while pricing (not a refusal)."""

    model_config = _OPEN

    code: str = Field(description="e.g. thin_walls, stones_found, cavity, scale_confirmed")
    message: str


class Quote(AsStored):
    """The price of the order and how it was reached. Money in ``currency``; lengths in mm."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "total": 412.85, "currency": "EUR", "volume_mm3": 512.4, "surface_mm2": 1380.2, "metal_mass_g": 6.661,
        "breakdown": {"metal": 339.71, "casting_loss": 16.99, "finishing": 27.6, "complexity": 3.55, "fixed": 25.0},
        "pricing_version": "2026-11-01+4b1d0c9e2a7f", "alloy": "gold_585", "kind": "ring", "warnings": [],
        "confirmed": []}]})

    total: float
    currency: str
    volume_mm3: float | None = None
    surface_mm2: float | None = None
    metal_mass_g: float | None = None
    breakdown: dict[str, float] = Field(default_factory=dict,
                                        description="metal, casting_loss, finishing, complexity, fixed")
    pricing_version: str | None = Field(default=None, description="The price list used: version+fingerprint")
    facts: dict[str, Any] = Field(default_factory=dict, description="Measurements of the mesh")
    alloy: str | None = None
    rates: dict[str, float] = Field(default_factory=dict, description="The price list's rates applied")
    kind: str | None = Field(default=None, description="ring, hoop, bangle, piece or parts")
    shells: list[dict[str, Any]] = Field(default_factory=list)
    stones: list[dict[str, Any]] = Field(default_factory=list, description="Unpriced: the seller prices them")
    ring: dict[str, Any] | None = Field(default=None, description="Inner/outer diameter, width, US/EU size")
    wall: dict[str, Any] | None = None
    warnings: list[QuoteNote] = Field(default_factory=list)
    confirmed: list[str] = Field(default_factory=list, description="Measurements the customer confirmed")


class PricingProgress(BaseModel):
    """While PRICE_CALCULATING: where the order is in the pricing queue and when its price is expected."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"queue_position": 3, "eta_seconds": 42.0}]})

    queue_position: int
    eta_seconds: float


class PricingFailure(AsStored):
    """Why the model could not be priced (PRICE_CALCULATION_FAILED); the customer may upload another."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "code": "not_watertight", "message": "The model is not closed: 12 open edges.",
        "details": {"open_edges": 12}}]})

    code: FailureCode
    message: str
    details: dict[str, Any] | None = None


class DelayNotice(BaseModel):
    """Production reported the order late: ``stage`` (a status, or DELIVERY) is past its SLA."""

    stage: str = Field(description="The late stage: an order status, or DELIVERY for the promised delivery")
    since: datetime
    sla_seconds: float
    detected_at: datetime
    new_eta: datetime
