"""Label mask -> one polygon (with holes) per connected region of each class.

Regions are 4-connected components. Their outlines come from marching squares at
the 0.5 iso-line of the component's binary image (``skimage.measure.find_contours``
with ``fully_connected="low"``, which treats the foreground as 4-connected too), so
every component yields exactly one exterior ring plus one ring per hole. The
iso-line runs along cell edges, so a mask cell ``(row, col)`` spans level-0 pixels
``[col * ds, (col + 1) * ds)``, matching the OME-TIFF mask and the scorer's grid.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry import box as rectangle
from shapely.validation import make_valid
from skimage.measure import find_contours

from pathda._types import IntPair
from pathda.annotations import Annotation, ClassMap

# Vertices closer than this many mask cells to the simplified outline are dropped
# (marching squares puts one vertex per cell edge, even on straight runs).
_SIMPLIFY_CELLS = 0.25


def label_regions(
    labels: np.ndarray,
    mask_downsample: float,
    class_map: ClassMap,
    *,
    min_area_px: float = 0.0,
    include_normal: bool = False,
    slide_size: IntPair | None = None,
) -> list[Annotation]:
    """Polygons of every connected region of each class, in level-0 pixels.

    Args:
        labels: (height, width) uint8 class ids, one cell per ``mask_downsample`` level-0 px.
        mask_downsample: level-0 pixels per mask cell.
        class_map: names the classes (the annotation label is the class name).
        min_area_px: regions and holes smaller than this (level-0 px²) are dropped.
        include_normal: also outline class 0 (normal) regions.
        slide_size: level-0 (width, height); polygons are clipped to it, since the mask's
            last row and column of cells reach past the slide's edge.

    Returns:
        Annotations sorted by class id, each a shapely-valid polygon (exterior + holes).
    """
    out: list[Annotation] = []
    first = 0 if include_normal else 1
    bounds = None if slide_size is None else rectangle(0, 0, *slide_size)
    for cid in range(first, len(class_map)):
        polygons = _class_polygons(labels == cid, float(mask_downsample), min_area_px)
        for polygon in _clipped(polygons, bounds, min_area_px):
            out.append(
                Annotation(
                    class_map.names[cid],
                    np.asarray(polygon.exterior.coords),
                    tuple(np.asarray(h.coords) for h in polygon.interiors),
                )
            )
    return out


def _clipped(
    polygons: Iterator[Polygon], bounds: Polygon | None, min_area_px: float
) -> Iterator[Polygon]:
    """``polygons`` cut to ``bounds`` (None: unchanged); a polygon may split in parts."""
    for polygon in polygons:
        if bounds is None or bounds.contains(polygon):
            yield polygon
            continue
        for part in _polygon_parts(polygon.intersection(bounds)):
            if part.area >= max(min_area_px, 1e-9):
                yield part


def _polygon_parts(geometry: object) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry] if not geometry.is_empty else []
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def _class_polygons(binary: np.ndarray, ds: float, min_area_px: float) -> Iterator[Polygon]:
    components, _ = ndimage.label(binary)  # default structure: 4-connectivity
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        crop = np.pad(components[box] == index, 1).astype(np.uint8)
        # Crop (row, col) -> level-0 (x, y): undo the 1-cell pad, then cell edges at j + 0.5.
        origin = np.array([box[1].start - 0.5, box[0].start - 0.5])
        rings = [
            (c[:, ::-1] + origin) * ds for c in find_contours(crop, 0.5, fully_connected="low")
        ]
        for polygon in _polygons_from_rings(rings):
            polygon = polygon.simplify(_SIMPLIFY_CELLS * ds, preserve_topology=True)
            holes = [h for h in polygon.interiors if Polygon(h).area >= min_area_px]
            polygon = Polygon(polygon.exterior, holes)
            if polygon.area >= max(min_area_px, 1e-9) and polygon.is_valid:
                yield polygon


def _polygons_from_rings(rings: list[np.ndarray]) -> list[Polygon]:
    """The largest ring is the exterior, the others its holes; repaired if invalid."""
    rings = [r for r in rings if len(r) >= 4]
    if not rings:
        return []
    areas = [abs(Polygon(r).area) for r in rings]
    order = np.argsort(areas)[::-1]
    polygon = Polygon(rings[order[0]], [rings[i] for i in order[1:]])
    if polygon.is_valid:
        return [polygon]
    repaired = make_valid(polygon)
    if isinstance(repaired, Polygon):
        return [repaired]
    if isinstance(repaired, MultiPolygon):
        return list(repaired.geoms)
    return _polygon_parts(repaired)
