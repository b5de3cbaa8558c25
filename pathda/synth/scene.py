"""Per-slide rendering context: layout geometry prepared for fast point queries, scales in px.

Tile rendering asks two kinds of questions about the layout: "which class is each pixel"
(answered by ``pathda.annotations.rasterise`` on the layout polygons, see render.py) and
"may a gland of radius r sit at (x, y)" (answered here with shapely, on the same polygons).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon

from pathda.annotations import BACH_CLASSES
from pathda.synth.domains import DomainPreset
from pathda.synth.layout import SlideLayout


def _polygon(ann: object) -> Polygon:
    return Polygon(ann.exterior, [h for h in ann.holes])  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything a tile renderer needs about one slide.

    Attributes:
        layout: the slide's polygons.
        preset: its staining/scanning domain.
        seed: texture seed (cells, noise); independent of the domain.
        areas: BACH class id -> shapely geometry where that class is (0 = normal tissue).
        edges: class id -> boundary of ``areas[id]`` (for distance-to-edge queries).
        cache: per-slide values derived from the layout (e.g. principal ducts).
    """

    layout: SlideLayout
    preset: DomainPreset
    seed: int
    areas: dict[int, object] = field(repr=False)
    edges: dict[int, object] = field(repr=False)
    cache: dict[str, object] = field(default_factory=dict, repr=False)
    # GEOS prepared geometries are not safe to query from several threads at once.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def mpp(self) -> float:
        return self.layout.mpp

    def px(self, microns: float) -> float:
        """Convert a length in µm to level-0 pixels."""
        return microns / self.layout.mpp

    def room(self, class_id: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (level-0 px) from each point to the edge of class ``class_id``'s area.

        0 where the point is outside that area, so ``room > r`` means a disc of radius r
        centred there lies wholly inside the class.
        """
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        out = np.zeros(x.shape, np.float64)
        area = self.areas.get(class_id)
        if area is None or x.size == 0:
            return out
        with self._lock:
            inside = shapely.contains_xy(area, x, y)
            if inside.any():
                pts = shapely.points(x[inside], y[inside])
                out[inside] = shapely.distance(self.edges[class_id], pts)
        return out


def build_scene(layout: SlideLayout, preset: DomainPreset, seed: int) -> Scene:
    """Prepare the layout's class areas for point queries."""
    tissue = shapely.union_all([_polygon(a) for a in layout.tissue])
    by_class: dict[int, list[Polygon]] = {}
    for ann in layout.lesions:
        by_class.setdefault(BACH_CLASSES.id_of(ann.label), []).append(_polygon(ann))
    areas: dict[int, object] = {c: shapely.union_all(p) for c, p in by_class.items()}
    lesions = shapely.union_all(list(areas.values())) if areas else Polygon()
    areas[0] = tissue.difference(lesions)
    edges = {c: a.boundary for c, a in areas.items()}
    for geom in (*areas.values(), *edges.values()):
        shapely.prepare(geom)
    return Scene(layout, preset, int(seed), areas, edges)
