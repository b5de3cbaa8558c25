"""Slide layout: where the tissue is and which parts of it are benign, in situ or invasive.

Pure functions of (size, mpp, seed). The lesion polygons are exactly the ones written to
the ImageScope XML and rasterised for the ground-truth mask and for rendering, so the
three always agree. Vertices are rounded to 1/4 pixel so that shifting a polygon by an
integer tile origin is exact in floating point (tile rasters then agree to the pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from pathda._types import IntPair
from pathda.annotations import BACH_CLASSES, Annotation, ClassMap

TISSUE_CLASSES = ClassMap(names=("glass", "tissue"), colors=((255, 255, 255), (200, 100, 150)))
"""Class map of the tissue outline raster: 0 = glass, 1 = tissue."""

BACH_XML_CLASSES = ClassMap(
    names=("Normal", "Benign", "Carcinoma in situ", "Carcinoma invasive"),
    colors=BACH_CLASSES.colors,
    severity=BACH_CLASSES.severity,
)
"""BACH classes under the label names BACH's ImageScope XML files use (ids as BACH_CLASSES)."""

LESION_LABELS = {1: "Benign", 2: "Carcinoma in situ", 3: "Carcinoma invasive"}
"""BACH class id -> label written in the XML."""

VERTEX_GRID = 0.25
"""Polygon vertices are rounded to multiples of this many level-0 pixels."""


@dataclass(frozen=True)
class SlideLayout:
    """Geometry of one synthetic slide, in level-0 pixels.

    Attributes:
        size: (width, height) of level 0 in pixels.
        mpp: µm per level-0 pixel.
        tissue: tissue outline polygons (label "tissue"); the rest is glass.
        lesions: BACH-labelled lesion polygons inside the tissue, non-overlapping;
            tissue outside them is normal.
    """

    size: IntPair
    mpp: float
    tissue: tuple[Annotation, ...]
    lesions: tuple[Annotation, ...]


def blob_ring(
    center: tuple[float, float],
    radii: tuple[float, float],
    rotation: float,
    harmonics: np.ndarray,
    phases: np.ndarray,
    n_vertices: int = 96,
) -> np.ndarray:
    """A perturbed ellipse: radius(φ) = r_ellipse(φ) * (1 + Σ_k a_k cos(k φ + p_k)).

    Args:
        center: (x, y) in pixels.
        radii: semi-axes (rx, ry) in pixels before rotation.
        rotation: rotation in radians.
        harmonics: amplitudes a_k for k = 2, 3, ... (keep Σ a_k < 1 to stay star-shaped).
        phases: phase p_k per harmonic, radians.
        n_vertices: ring resolution.

    Returns:
        (n_vertices, 2) float64 (x, y) open ring.
    """
    phi = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
    k = np.arange(2, 2 + len(harmonics))[:, None]
    waves = np.asarray(harmonics, np.float64)[:, None] * np.cos(
        k * phi + np.asarray(phases)[:, None]
    )
    scale = 1.0 + waves.sum(axis=0)
    x = radii[0] * np.cos(phi) * scale
    y = radii[1] * np.sin(phi) * scale
    c, s = math.cos(rotation), math.sin(rotation)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], axis=1)


def _random_blob(
    rng: np.random.Generator,
    center: tuple[float, float],
    radii: tuple[float, float],
    roughness: float,
    n_harmonics: int = 6,
) -> np.ndarray:
    k = np.arange(2, 2 + n_harmonics)
    amps = roughness * rng.uniform(0.3, 1.0, n_harmonics) / k**0.9
    amps *= min(1.0, 0.8 / max(amps.sum(), 1e-9))  # stay star-shaped
    phases = rng.uniform(0, 2 * np.pi, n_harmonics)
    return blob_ring(center, radii, rng.uniform(0, np.pi), amps, phases, 128)


def _snap(ring: np.ndarray) -> np.ndarray:
    return np.round(ring / VERTEX_GRID) * VERTEX_GRID


def _polygons(geom: object) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty else []
    if isinstance(geom, MultiPolygon):
        return [g for g in geom.geoms if not g.is_empty]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def make_tissue(size: IntPair, rng: np.random.Generator) -> Polygon | MultiPolygon:
    """Irregular tissue outline of one to three blobs covering 60-80 % of the slide."""
    w, h = size
    target = rng.uniform(0.62, 0.78) * w * h
    inset = 0.02 * min(w, h)
    frame = box(inset, inset, w - inset, h - inset)
    n_blobs = (
        int(rng.choice([1, 1, 2, 2, 3]))
        if max(w, h) > 1.6 * min(w, h)
        else int(rng.choice([1, 1, 1, 2]))
    )
    along_x = w >= h
    blobs = []
    for i in range(n_blobs):
        # Blobs sit side by side along the long axis, each in its own share of the slide.
        share = (w if along_x else h) / n_blobs
        c_long = share * (i + 0.5) + rng.uniform(-0.05, 0.05) * share
        c_short = (h if along_x else w) * rng.uniform(0.45, 0.55)
        center = (c_long, c_short) if along_x else (c_short, c_long)
        r_long, r_short = share * 0.5, (h if along_x else w) * 0.5
        radii = (r_long, r_short) if along_x else (r_short, r_long)
        blobs.append((center, radii, _random_blob(rng, (0.0, 0.0), (1.0, 1.0), 0.35)))

    def geometry(scale: float) -> Polygon | MultiPolygon:
        parts = []
        for (cx, cy), (rx, ry), unit in blobs:
            ring = np.stack([cx + unit[:, 0] * rx * scale, cy + unit[:, 1] * ry * scale], axis=1)
            parts.append(Polygon(ring).buffer(0))
        return shapely.union_all(parts).intersection(frame)

    lo, hi = 0.3, 2.0
    for _ in range(30):  # bisection on the blob scale for the target area
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if geometry(mid).area < target else (lo, mid)
    return geometry(0.5 * (lo + hi))


def make_lesions(
    tissue: Polygon | MultiPolygon, size: IntPair, mpp: float, rng: np.random.Generator
) -> list[Annotation]:
    """Non-overlapping lesion blobs of every BACH lesion class, inside the tissue.

    Radii are drawn log-uniformly up to ~1.2 mm (capped by the slide size) from ~130 µm for
    each class's first region and from a sixth of the maximum for the others; each class
    gets regions until it covers its target share of the tissue area (5-16 %).
    """
    min_side_um = min(size) * mpp
    r_min = min(130.0, 0.12 * min_side_um) / mpp
    r_max = max(r_min * 1.2, min(1200.0, 0.2 * min_side_um) / mpp)
    r_low = max(r_min, r_max / 6)  # most regions are large; the first ones may be small
    edge_gap = 25.0 / mpp
    inner = tissue.buffer(-edge_gap)
    shapely.prepare(inner)
    minx, miny, maxx, maxy = tissue.bounds
    placed: list[tuple[int, Polygon]] = []
    # class id -> (target share of the tissue area, boundary roughness, harmonics)
    plan = {3: (rng.uniform(0.10, 0.16), 0.55, 10), 2: (rng.uniform(0.06, 0.11), 0.25, 6)}
    plan[1] = (rng.uniform(0.05, 0.10), 0.3, 6)
    covered = dict.fromkeys(plan, 0.0)

    def try_place(cid: int, lo: float, hi: float, attempts: int) -> bool:
        _, roughness, n_harmonics = plan[cid]
        for attempt in range(attempts):
            top = max(lo, hi * 0.99**attempt)
            r = math.exp(rng.uniform(math.log(lo), math.log(top)))
            center = (rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            radii = (r, r * rng.uniform(0.6, 1.0))
            poly = Polygon(_snap(_random_blob(rng, center, radii, roughness, n_harmonics)))
            if not poly.is_valid or not inner.contains(poly):
                continue
            others = [p for _, p in placed]
            if others and shapely.distance(np.array(others), poly).min() < edge_gap:
                continue
            placed.append((cid, poly))
            covered[cid] += poly.area
            return True
        return False

    for cid in plan:  # every class at least once, whatever the slide size
        try_place(cid, r_min, r_max, 400)
    for _ in range(1000):
        todo = [c for c in plan if covered[c] < plan[c][0] * tissue.area]
        if not todo:
            break
        for cid in todo:
            if not try_place(cid, r_low, r_max, 30):
                covered[cid] = math.inf  # no room left for this class
    return [Annotation(LESION_LABELS[cid], np.asarray(p.exterior.coords)[:-1]) for cid, p in placed]


def make_layout(size: IntPair, mpp: float, seed: int) -> SlideLayout:
    """Tissue outline and lesion polygons of one synthetic slide.

    Args:
        size: (width, height) of level 0 in pixels.
        mpp: µm per level-0 pixel (lesion sizes are set in µm).
        seed: layout seed; the same seed always gives the same layout.
    """
    rng = np.random.default_rng([int(seed), 0x1A70])
    tissue = make_tissue(size, rng)
    lesions = make_lesions(tissue, size, mpp, rng)
    tissue_anns = tuple(
        Annotation(
            "tissue",
            _snap(np.asarray(p.exterior.coords)[:-1]),
            tuple(_snap(np.asarray(r.coords)[:-1]) for r in p.interiors),
        )
        for p in _polygons(tissue)
    )
    return SlideLayout((int(size[0]), int(size[1])), float(mpp), tissue_anns, tuple(lesions))
