"""Why a model could not be priced: the machine-readable ``failure.code`` of PRICE_CALCULATION_FAILED.

The one list the API description, the event description and the tests use. A model file that cannot
be read at all fails with the reader's code (``alexandrite.models3d.errors``); a model that reads but
cannot be cast or priced fails with one of the pricing checks' codes (``alexandrite.mes.pricing``).
A test keeps this list equal to the codes those modules raise.
"""

from __future__ import annotations

from typing import Literal, get_args

# The file cannot be read (the same codes answer an upload with 422).
ModelFileCode = Literal[
    "archive_too_large", "degenerate_mesh", "empty_file", "file_too_large", "malformed_model", "no_triangles",
    "too_many_triangles", "too_many_vertices", "unsafe_archive", "unsupported_format", "unsupported_extension",
    "format_mismatch",
]
# The file reads, but the piece cannot be cast or priced as it is.
PricingCheckCode = Literal[
    "empty", "non_manifold", "not_watertight", "scale_check", "too_large", "too_small", "unknown_alloy",
]
FailureCode = Literal[ModelFileCode, PricingCheckCode]

MODEL_FILE_CODES: tuple[str, ...] = get_args(ModelFileCode)
PRICING_CHECK_CODES: tuple[str, ...] = get_args(PricingCheckCode)
FAILURE_CODES: tuple[str, ...] = MODEL_FILE_CODES + PRICING_CHECK_CODES
