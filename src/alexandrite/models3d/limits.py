"""How big a model may be: one set of limits for the upload check, the preview and the pricing worker."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_TRIANGLES = 2_000_000
VERTICES_PER_TRIANGLE = 3  # an indexed mesh needs at most 3 vertices per triangle (a triangle soup)


@dataclass(frozen=True)
class ModelLimits:
    """Limits every reader checks while it reads, before it allocates memory proportional to a count.

    ``max_bytes`` bounds the file and, for 3MF, everything its zip unpacks to; ``max_triangles`` the
    triangles placed in the build; ``max_vertices`` (default 3 × max_triangles) the vertices an
    indexed format (OBJ, 3MF) may define.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_triangles: int = DEFAULT_MAX_TRIANGLES
    max_vertices: int | None = None

    @property
    def vertex_limit(self) -> int:
        return self.max_vertices if self.max_vertices is not None else VERTICES_PER_TRIANGLE * self.max_triangles
