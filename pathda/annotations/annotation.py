"""The in-memory annotation: one labelled polygon (with optional holes) in level-0 pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pathda._types import Bounds
from pathda.errors import AnnotationError

FloatBounds = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in level-0 pixels, float (polygon vertices need not be integers)."""


def as_ring(points: object, what: str = "polygon") -> np.ndarray:
    """Return ``points`` as a read-only (N, 2) float64 open ring (closing vertex dropped).

    Raises:
        AnnotationError: fewer than 3 distinct vertices, wrong shape, or non-finite values.
    """
    try:
        ring = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{what}: vertices are not numbers ({exc})") from None
    if ring.ndim != 2 or ring.shape[1] != 2:
        raise AnnotationError(f"{what}: vertices must be (x, y) pairs, got shape {ring.shape}")
    if not np.isfinite(ring).all():
        raise AnnotationError(f"{what}: vertices contain NaN or infinity")
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(ring) < 3:
        raise AnnotationError(f"{what}: a polygon needs at least 3 vertices, got {len(ring)}")
    ring.flags.writeable = False
    return ring


@dataclass(frozen=True, eq=False)
class Annotation:
    """One labelled polygon.

    Attributes:
        label: class name as written in the source file (mapped to an id by a ``ClassMap``).
        exterior: (N, 2) float64 (x, y) vertices in level-0 pixels, an open ring
            (first vertex != last); N >= 3. Stored read-only.
        holes: rings of the same form cut out of the exterior.

    Equality is identity (arrays do not compare as booleans); compare geometry with
    :meth:`same_geometry`.
    """

    label: str
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    _bounds: FloatBounds = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", str(self.label))
        what = f"annotation {self.label!r}"
        object.__setattr__(self, "exterior", as_ring(self.exterior, what))
        holes = tuple(as_ring(h, f"{what} hole") for h in self.holes)
        object.__setattr__(self, "holes", holes)
        lo = self.exterior.min(axis=0)
        hi = self.exterior.max(axis=0)
        object.__setattr__(
            self, "_bounds", (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        )

    @property
    def bounds(self) -> FloatBounds:
        """(x0, y0, x1, y1) of the exterior's vertices in level-0 pixels."""
        return self._bounds

    def same_geometry(self, other: Annotation, atol: float = 1e-6) -> bool:
        """Same label, exterior and holes (same vertex order) within ``atol`` level-0 px."""
        if self.label != other.label or len(self.holes) != len(other.holes):
            return False
        rings = zip((self.exterior, *self.holes), (other.exterior, *other.holes), strict=True)
        return all(a.shape == b.shape and np.allclose(a, b, rtol=0, atol=atol) for a, b in rings)

    def with_label(self, label: str) -> Annotation:
        """A copy with another label (same geometry)."""
        return Annotation(label, self.exterior, self.holes)


def annotation_bounds(annotations: list[Annotation] | tuple[Annotation, ...]) -> FloatBounds:
    """(x0, y0, x1, y1) enclosing all annotations' vertices, in level-0 pixels.

    Raises:
        AnnotationError: no annotations (there are no bounds to report).
    """
    if not annotations:
        raise AnnotationError("no annotations: bounds are undefined")
    b = np.array([a.bounds for a in annotations])
    return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


def integer_bounds(bounds: FloatBounds) -> Bounds:
    """Smallest half-open integer box (x0, y0, x1, y1) containing float ``bounds``."""
    x0, y0, x1, y1 = bounds
    return (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))


def ring_area(ring: np.ndarray) -> float:
    """Unsigned area of a ring (shoelace), in squared units of its coordinates."""
    x, y = ring[:, 0], ring[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def ring_contains(ring: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Boolean per (x, y) point: inside ``ring`` by the even-odd rule (edges: undefined)."""
    x0, y0 = ring[:, 0][:, None], ring[:, 1][:, None]
    x1, y1 = np.roll(ring[:, 0], -1)[:, None], np.roll(ring[:, 1], -1)[:, None]
    px, py = points[:, 0][None, :], points[:, 1][None, :]
    straddles = (y0 <= py) != (y1 <= py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (px < x_cross)
    return (crossings.sum(axis=0) % 2) == 1


def attach_holes(
    polygons: list[Annotation], holes: list[np.ndarray]
) -> tuple[list[Annotation], list[np.ndarray]]:
    """Give each hole ring to the smallest polygon holding most of its vertices.

    Returns:
        The polygons with their new holes, and the holes that lie in no polygon.
    """
    extra: list[list[np.ndarray]] = [[] for _ in polygons]
    orphans = []
    areas = [ring_area(p.exterior) for p in polygons]
    for hole in holes:
        cx, cy = (hole.min(axis=0) + hole.max(axis=0)) / 2
        best = None
        for i, poly in enumerate(polygons):
            x0, y0, x1, y1 = poly.bounds
            if not (x0 <= cx <= x1 and y0 <= cy <= y1):
                continue
            inside = ring_contains(poly.exterior, hole).mean() >= 0.5
            if inside and (best is None or areas[i] < areas[best]):
                best = i
        if best is None:
            orphans.append(hole)
        else:
            extra[best].append(hole)
    out = [
        Annotation(p.label, p.exterior, (*p.holes, *h)) if h else p
        for p, h in zip(polygons, extra, strict=True)
    ]
    return out, orphans
