"""Self-intersecting polygons -> valid ones, as the annotator drew them.

A hand-drawn outline that crosses itself (a bow-tie, a loop drawn twice over) is not a
valid polygon, and the even-odd fill of the rasteriser would leave the doubly-enclosed
part out. ``shapely.make_valid`` with the ``structure`` method instead fills every area
the outline encloses and then cuts the holes, which is what the annotator meant. Parts
that collapse to lines or points carry no area and are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import shapely
from shapely.geometry import Polygon

from pathda.annotations.annotation import Annotation


def repair_annotations(annotations: Sequence[Annotation]) -> tuple[list[Annotation], int]:
    """Valid copies of ``annotations``: each invalid one replaced by its repaired parts.

    Returns:
        The annotations (a repaired one may become several, same label, in order) and how
        many were repaired.
    """
    out: list[Annotation] = []
    repaired = 0
    for ann in annotations:
        polygon = Polygon(ann.exterior, ann.holes)
        if polygon.is_valid:
            out.append(ann)
            continue
        repaired += 1
        fixed = shapely.make_valid(polygon, method="structure", keep_collapsed=False)
        for part in _polygons(fixed):
            out.append(
                Annotation(
                    ann.label,
                    shapely.get_coordinates(part.exterior),
                    tuple(shapely.get_coordinates(h) for h in part.interiors),
                )
            )
    return out, repaired


def _polygons(geometry: shapely.Geometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    parts = getattr(geometry, "geoms", ())
    return [p for g in parts for p in _polygons(g)]
