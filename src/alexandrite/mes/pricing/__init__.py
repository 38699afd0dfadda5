"""Model pricing: parse uploaded 3D files, measure the mesh, price it from real geometry."""

from alexandrite.mes.pricing.formats import ModelFormatError, ParsedModel, detect_format, parse_model
from alexandrite.mes.pricing.geometry import MeshFacts, analyse
from alexandrite.mes.pricing.quote import (
    ALLOYS,
    DEFAULT_PRICING,
    PricingConfig,
    PricingConfigError,
    PricingRejected,
    Quote,
    load_pricing,
    price,
    price_model,
)

__all__ = [
    "ALLOYS", "DEFAULT_PRICING", "MeshFacts", "ModelFormatError", "ParsedModel", "PricingConfig",
    "PricingConfigError", "PricingRejected", "Quote", "analyse", "detect_format", "load_pricing",
    "parse_model", "price", "price_model",
]
