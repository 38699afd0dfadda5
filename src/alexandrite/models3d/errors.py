"""The one error a model file can raise while it is read, and the number parsing every reader shares."""

from __future__ import annotations

import numpy as np

__all__ = ["ModelFormatError", "check_count", "numbers"]


class ModelFormatError(ValueError):
    """A model file that cannot be used; ``code`` is machine-readable, ``message`` is for the customer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ModelFormatError({self.code!r}, {self.message!r})"


_NUMBER_BYTES = b"0123456789+-.eE \t\r\n\f\v"
_INT_BYTES = b"0123456789+- \t\r\n\f\v"


def numbers(text: bytes, what: str, count: int | None = None, dtype: type = np.float64) -> np.ndarray:
    """Whitespace-separated numbers parsed in bulk (``count`` of them when given), else malformed_model."""
    allowed = _INT_BYTES if dtype is np.int64 else _NUMBER_BYTES
    if text.translate(None, allowed):
        raise ModelFormatError("malformed_model", f"The {what} contain text that is not a number.")
    values: np.ndarray | None
    try:
        values = np.fromstring(text, dtype=dtype, sep=" ")
    except ValueError:  # numpy >= 2.x may raise instead of warning on unparsable data
        values = None
    if values is None or (count is not None and values.size != count):
        raise ModelFormatError("malformed_model", f"The {what} contain a malformed number.")
    return values


def check_count(count: int, max_triangles: int) -> None:
    """too_many_triangles past the limit, with what to do about it."""
    if count > max_triangles:
        raise ModelFormatError(
            "too_many_triangles",
            f"The model has {count:,} triangles; the limit is {max_triangles:,}. "
            "Reduce the mesh resolution (decimate) and upload it again.",
        )
