"""Polygons -> label rasters, and checks that annotations fit their slide.

Pixel convention: output pixel (r, c) covers level-0 x in [ox + c*d, ox + (c+1)*d) and
y in [oy + r*d, oy + (r+1)*d), where (ox, oy) is ``origin`` and d is ``downsample``. The
pixel takes a polygon's class if its *centre* (ox + (c+0.5)*d, oy + (r+0.5)*d) is inside
the polygon (and not inside one of its holes). Centres exactly on an edge follow a
half-open rule: on a left or top edge they are inside, on a right or bottom edge outside,
so two polygons sharing an edge never both claim a pixel, and a square [x0, x1) x [y0, y1)
at d=1 with integer corners covers exactly (x1-x0) * (y1-y0) pixels.

Filling is a vectorised scanline: each pixel row intersects the polygon's edges, the
crossings are sorted and paired (even-odd rule, so holes come out right) and the spans
between pairs are filled. The cost is O(edge-row crossings + pixels of each polygon's
bounding box within the window), not O(vertices x pixels), so tile-sized windows of
slides with large, detailed polygons stay cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from pathda.annotations.annotation import Annotation, FloatBounds, annotation_bounds
from pathda.annotations.classmap import ClassMap
from pathda.errors import AnnotationError


def rasterise(
    annotations: Sequence[Annotation],
    class_map: ClassMap,
    shape: tuple[int, int],
    downsample: float = 1.0,
    origin: tuple[float, float] = (0, 0),
    background: int = 0,
    clip_warn_bounds: FloatBounds | None = None,
    source: str | None = None,
) -> np.ndarray:
    """Paint annotations into a label image (see the module docstring for the pixel convention).

    Args:
        annotations: polygons in level-0 pixels.
        class_map: maps each label to its id; overlaps resolve by ``class_map.severity``.
        shape: (height, width) of the output in output pixels.
        downsample: level-0 pixels per output pixel (> 0).
        origin: (x, y) level-0 position of the output's top-left corner.
        background: id of pixels outside every polygon (BACH: 0 = normal).
        clip_warn_bounds: (x0, y0, x1, y1) level-0 region the annotations should lie in
            (usually the slide, ``(0, 0, width, height)``); a warning names ``source`` when
            some reach outside it. Pixels outside ``shape`` are always clipped.
        source: file the annotations came from, named in warnings and errors.

    Returns:
        (height, width) uint8 class ids.

    Raises:
        UnknownClassError: a label is not in ``class_map``.
        AnnotationError: ``shape``/``downsample``/``background`` out of range.
    """
    height, width = (int(v) for v in shape)
    if height < 0 or width < 0 or not downsample > 0 or not 0 <= background < 256:
        raise AnnotationError(
            f"rasterise: need shape >= 0, downsample > 0 and background in 0..255, "
            f"got shape={shape}, downsample={downsample}, background={background}"
        )
    label_ids = {label: class_map.id_of(label, source) for label in {a.label for a in annotations}}
    ids = [label_ids[a.label] for a in annotations]
    if clip_warn_bounds is not None and annotations:
        _warn_if_outside(annotations, clip_warn_bounds, source)

    out = np.full((height, width), background, dtype=np.uint8)
    ox, oy = float(origin[0]), float(origin[1])
    window = (ox, oy, ox + width * downsample, oy + height * downsample)
    hits = [
        (a, cid) for a, cid in zip(annotations, ids, strict=True) if _overlaps(a.bounds, window)
    ]
    # Paint low priority first so that higher severity (then higher id) ends on top.
    hits.sort(key=lambda hit: (class_map.severity[hit[1]], hit[1]))
    for ann, cid in hits:
        box, mask = _local_mask(ann, (height, width), downsample, (ox, oy))
        out[box][mask] = cid
    return out


def polygon_mask(
    annotation: Annotation,
    shape: tuple[int, int],
    downsample: float = 1.0,
    origin: tuple[float, float] = (0, 0),
) -> np.ndarray:
    """Boolean (height, width) mask of one annotation (holes excluded), painted as by rasterise."""
    out = np.zeros(shape, dtype=bool)
    box, mask = _local_mask(annotation, shape, downsample, origin)
    out[box] = mask
    return out


def check_within_slide(
    annotations: Sequence[Annotation],
    slide_dimensions: tuple[int, int],
    source: str,
) -> None:
    """Check annotations against the slide's level-0 (width, height).

    Raises:
        AnnotationError: an annotation lies wholly outside the slide (wrong slide, or
            coordinates not in level-0 pixels).

    Warns:
        UserWarning naming ``source`` when annotations reach partly outside; rasters clip them.
    """
    w, h = slide_dimensions
    slide = (0.0, 0.0, float(w), float(h))
    outside = [a for a in annotations if not _overlaps(a.bounds, slide)]
    if outside:
        x0, y0, x1, y1 = outside[0].bounds
        raise AnnotationError(
            f"{source}: {len(outside)} annotation(s) lie wholly outside the {w} x {h} px slide "
            f"(first: {outside[0].label!r} at x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}); "
            f"check the file belongs to this slide and uses level-0 pixel coordinates"
        )
    _warn_if_outside(annotations, slide, source)


def _warn_if_outside(
    annotations: Sequence[Annotation], bounds: FloatBounds, source: str | None
) -> None:
    ax0, ay0, ax1, ay1 = annotation_bounds(list(annotations))
    x0, y0, x1, y1 = bounds
    if ax0 < x0 or ay0 < y0 or ax1 > x1 or ay1 > y1:
        warnings.warn(
            f"{source or 'annotations'}: annotations reach outside x {x0:g}..{x1:g}, "
            f"y {y0:g}..{y1:g} (they span x {ax0:.0f}..{ax1:.0f}, y {ay0:.0f}..{ay1:.0f}); "
            f"the outside part is clipped",
            UserWarning,
            stacklevel=3,
        )


def _overlaps(a: FloatBounds, b: FloatBounds) -> bool:
    # Closed test on purpose: a polygon touching the window edge costs little to check.
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def _local_mask(
    annotation: Annotation,
    shape: tuple[int, int],
    downsample: float,
    origin: tuple[float, float],
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The annotation's interior as a boolean mask over the smallest box of the window holding it.

    Returns:
        (rows, cols) slices of the window and the mask for that box; working in the box
        keeps the cost at the polygon's size, not the window's.
    """
    height, width = shape
    r, c0, c1 = _spans(annotation, height, width, downsample, origin)
    if r.size == 0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), dtype=bool)
    top, left = int(r.min()), int(c0.min())
    box_h, box_w = int(r.max()) + 1 - top, int(c1.max()) - left
    # Difference image: +1 where a span starts, -1 one past its end; the running sum along
    # each row is 1 inside the polygon and 0 outside. Even-odd spans of a row never overlap,
    # so no two spans share a start (or a stop) and int8 cannot overflow.
    stride = box_w + 1
    rows = (r - top) * stride
    diff = np.zeros(box_h * stride, dtype=np.int8)
    diff[rows + (c0 - left)] = 1
    diff[rows + (c1 - left)] -= 1
    mask = np.cumsum(diff.reshape(box_h, stride), axis=1, dtype=np.int8)[:, :box_w].view(bool)
    return (slice(top, top + box_h), slice(left, left + box_w)), mask


def _spans(
    ann: Annotation, height: int, width: int, downsample: float, origin: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filled spans (row, first col, col past the end) of one polygon, clipped to the window."""
    # Output pixel coordinates in which pixel (r, c)'s centre sits at (u, v) = (c, r).
    u_parts, v_parts = [], []
    for ring in (ann.exterior, *ann.holes):
        u_parts.append((ring[:, 0] - origin[0]) / downsample - 0.5)
        v_parts.append((ring[:, 1] - origin[1]) / downsample - 0.5)
    u0 = np.concatenate(u_parts)
    v0 = np.concatenate(v_parts)
    u1 = np.concatenate([np.roll(u, -1) for u in u_parts])
    v1 = np.concatenate([np.roll(v, -1) for v in v_parts])

    # Edge crosses row r when min(v0, v1) <= r < max(v0, v1): half-open so that a vertex
    # shared by two edges is counted once and horizontal edges never count.
    vlo = np.minimum(v0, v1)
    vhi = np.maximum(v0, v1)
    first = np.clip(np.ceil(vlo), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(vhi), 0, height).astype(np.int64)
    counts = stop - first
    keep = counts > 0
    if not keep.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    counts = counts[keep]
    edge = np.repeat(np.flatnonzero(keep), counts)
    # Row index within each edge's run: global position minus the run's start offset.
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    row = np.repeat(first[keep], counts) + (np.arange(edge.size) - run_start)
    t = (row - v0[edge]) / (v1[edge] - v0[edge])
    u = u0[edge] + t * (u1[edge] - u0[edge])

    order = np.lexsort((u, row))
    row, u = row[order], u[order]
    # Even-odd: crossings pair up within each row (every row has an even count because
    # only rows, never columns, are clipped).
    r = row[0::2]
    c0 = np.clip(np.ceil(u[0::2]), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(u[1::2]), 0, width).astype(np.int64)
    nonempty = c1 > c0
    return r[nonempty], c0[nonempty], c1[nonempty]
