"""Pricing: a versioned price list applied to a model's measured geometry (the geometry is models3d's)."""

from alexandrite.mes.pricing.quote import (
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
    "DEFAULT_PRICING", "PricingConfig", "PricingConfigError", "PricingRejected", "Quote", "load_pricing", "price",
    "price_model",
]
