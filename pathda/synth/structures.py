"""Glandular structures: normal ducts and lobules, benign acini, in situ ducts.

Each structure is an irregular ellipse generated from a coarse global grid: every grid
cell draws its own parameters from ``hash_uniform(seed, salt, cell_x, cell_y, k)``, so a
tile sees the same structures as its neighbours as long as it looks at every cell within
the largest structure radius of its region. Structures only go where the whole ellipse
fits inside the right class area (``Scene.room``), so the drawn tissue matches the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.ops import polylabel

from pathda.synth.noise import hash_uniform
from pathda.synth.scene import Scene

# Structure kinds (also the class id whose area they must lie in; vessels lie anywhere).
NORMAL, BENIGN, IN_SITU, VESSEL = 0, 1, 2, 5

# Zone codes painted into the per-pixel zone raster; nuclei populations look them up.
Z_STROMA, Z_NORMAL_EPI, Z_BENIGN_EPI, Z_DUCT_CELLS, Z_NECROSIS = 0, 1, 2, 3, 4
Z_HOLE, Z_LUMEN, Z_MEMBRANE, Z_DUCT_RIM, Z_NEST, Z_FAT, Z_LOOSE = 5, 6, 7, 8, 9, 10, 11
Z_VESSEL = 12

_SALT_NORMAL, _SALT_BENIGN, _SALT_INSITU, _SALT_ACINI, _SALT_HOLES = 101, 102, 103, 104, 105
_SALT_VESSEL = 106

# Largest extent (µm) of any structure from its grid point: bounds how far a tile looks.
MAX_EXTENT_UM = 250.0


@dataclass(frozen=True)
class Ellipses:
    """Struct-of-arrays of irregular ellipses in level-0 pixels.

    r(φ) = ellipse(a, b, theta) * (1 + e2 cos 2(φ - p2) + e3 cos 3(φ - p3)); ``gid`` is a
    global id used to key per-structure randomness; ``lumen``/``necrosis`` are fractions
    of the radius.
    """

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    e2: np.ndarray
    p2: np.ndarray
    e3: np.ndarray
    p3: np.ndarray
    kind: np.ndarray
    gid: np.ndarray
    lumen: np.ndarray
    necrosis: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    @staticmethod
    def concat(parts: list[Ellipses]) -> Ellipses:
        return Ellipses(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Ellipses.__dataclass_fields__)
        )

    def take(self, keep: np.ndarray) -> Ellipses:
        return Ellipses(*(getattr(self, f)[keep] for f in Ellipses.__dataclass_fields__))


@dataclass(frozen=True)
class Circles:
    """Cribriform holes / lobule halos: centres and radii in level-0 pixels."""

    cx: np.ndarray
    cy: np.ndarray
    r: np.ndarray


def _cells(bounds: tuple[float, float, float, float], cell: float) -> tuple[np.ndarray, ...]:
    x0, y0, x1, y1 = bounds
    ix = np.arange(np.floor(x0 / cell), np.floor(x1 / cell) + 1, dtype=np.int64)
    iy = np.arange(np.floor(y0 / cell), np.floor(y1 / cell) + 1, dtype=np.int64)
    gx, gy = np.meshgrid(ix, iy)
    return gx.ravel(), gy.ravel()


def _draws(scene: Scene, salt: int, ix: np.ndarray, iy: np.ndarray, n: int) -> np.ndarray:
    k = np.arange(n, dtype=np.int64)
    return hash_uniform(scene.seed, salt, ix[:, None], iy[:, None], k[None, :])


def _ellipses(cx, cy, a, b, u_shape: np.ndarray, kind: int, gid, lumen, necrosis=None) -> Ellipses:
    n = len(cx)
    return Ellipses(
        cx=np.asarray(cx, np.float64),
        cy=np.asarray(cy, np.float64),
        a=np.asarray(a, np.float64),
        b=np.asarray(b, np.float64),
        theta=np.pi * u_shape[:, 0],
        e2=0.08 * u_shape[:, 1],
        p2=np.pi * u_shape[:, 2],
        e3=0.05 * u_shape[:, 3],
        p3=np.pi * u_shape[:, 4],
        kind=np.full(n, kind, np.int64),
        gid=np.asarray(gid, np.int64),
        lumen=np.asarray(lumen, np.float64),
        necrosis=np.zeros(n) if necrosis is None else np.asarray(necrosis, np.float64),
    )


def normal_structures(scene: Scene, bounds) -> tuple[Ellipses, Circles]:
    """Normal terminal ducts (single glands) and lobules (clusters of small acini + halo)."""
    cell = scene.px(380.0)
    ix, iy = _cells(bounds, cell)
    u = _draws(scene, _SALT_NORMAL, ix, iy, 12)
    cx = (ix + 0.2 + 0.6 * u[:, 2]) * cell
    cy = (iy + 0.2 + 0.6 * u[:, 3]) * cell
    present = u[:, 0] < 0.5
    room = np.where(present, scene.room(NORMAL, cx, cy), 0.0)
    duct = present & (u[:, 1] < 0.35)
    lobule = present & ~duct
    parts = []
    # Ducts: one gland with a thin epithelium around an open lumen.
    a = scene.px(28.0) + scene.px(30.0) * u[:, 4]
    b = a * (0.55 + 0.45 * u[:, 5])
    ok = duct & (room > a + scene.px(12.0))
    thick = scene.px(9.0 + 3.0 * u[:, 6])
    lumen = np.clip(1.0 - thick / np.maximum(b, 1.0), 0.15, 0.8)
    gid = (ix * 1_000_003 + iy) * 64
    parts.append(_ellipses(cx[ok], cy[ok], a[ok], b[ok], u[ok, 7:12], NORMAL, gid[ok], lumen[ok]))
    # Lobules: acini on a sunflower spiral inside the lobule radius.
    big_r = np.minimum(scene.px(65.0) + scene.px(45.0) * u[:, 4], room - scene.px(10.0))
    ok = lobule & (big_r > scene.px(35.0))
    halos = Circles(cx[ok], cy[ok], big_r[ok] * 1.08)
    n_acini = (7 + np.floor(9 * u[:, 5])).astype(np.int64)[ok]
    owner = np.repeat(np.arange(ok.sum()), n_acini)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(n_acini) - n_acini, n_acini)
    lcx, lcy, lr, lgid = cx[ok][owner], cy[ok][owner], big_r[ok][owner], gid[ok][owner]
    n = n_acini[owner]
    v = hash_uniform(scene.seed, _SALT_ACINI, lgid[:, None], j[:, None], np.arange(8)[None, :])
    rho = lr * 0.78 * np.sqrt((j + 0.5) / n)
    phi = j * 2.39996 + 2 * np.pi * u[ok, 6][owner]
    spacing = lr * 0.78 * np.sqrt(np.pi / n)
    acx = lcx + rho * np.cos(phi) + (v[:, 0] - 0.5) * 0.2 * spacing
    acy = lcy + rho * np.sin(phi) + (v[:, 1] - 0.5) * 0.2 * spacing
    aa = np.minimum(scene.px(10.0) + scene.px(7.0) * v[:, 2], 0.42 * spacing)
    ab = aa * (0.7 + 0.3 * v[:, 3])
    lumen = np.clip(1.0 - scene.px(7.5) / ab, 0.12, 0.6)
    parts.append(_ellipses(acx, acy, aa, ab, v[:, 3:8], NORMAL, lgid + 1 + j, lumen))
    return Ellipses.concat(parts), halos


def benign_glands(scene: Scene, bounds) -> Ellipses:
    """Crowded, regular small glands with open lumens (adenosis-like)."""
    cell = scene.px(50.0)
    ix, iy = _cells(bounds, cell)
    u = _draws(scene, _SALT_BENIGN, ix, iy, 12)
    # Odd rows shifted by half a cell (hexagonal packing) plus jitter hide the lattice;
    # close neighbours touch and merge into branching glands, as in adenosis.
    cx = (ix + 0.3 + 0.5 * (iy % 2) + 0.4 * u[:, 2]) * cell
    cy = (iy + 0.3 + 0.4 * u[:, 3]) * cell
    a = scene.px(13.0) + scene.px(9.0) * u[:, 4]
    b = a * (0.72 + 0.28 * u[:, 5])
    present = u[:, 0] < 0.88
    room = np.where(present, scene.room(BENIGN, cx, cy), 0.0)
    ok = present & (room > a + scene.px(5.0))
    thick = scene.px(6.5 + 3.5 * u[:, 6])
    lumen = np.clip(1.0 - thick / b, 0.15, 0.75)
    gid = (ix * 1_000_003 + iy) * 64 + 7
    return _ellipses(cx[ok], cy[ok], a[ok], b[ok], u[ok, 7:12], BENIGN, gid[ok], lumen[ok])


def insitu_ducts(scene: Scene, bounds) -> tuple[Ellipses, Circles]:
    """Enlarged ducts filled with atypical cells; some with comedo necrosis or cribriform holes.

    Every in situ region gets one principal duct as large as fits (up to 220 µm radius)
    at its most interior point; a dense grid of smaller ducts fills the rest. Touching
    ducts merge into branching duct systems, so the area is mostly ducts, not stroma.
    """
    cell = scene.px(70.0)
    ix, iy = _cells(bounds, cell)
    u = _draws(scene, _SALT_INSITU, ix, iy, 16)
    cx = (ix + 0.2 + 0.6 * u[:, 2]) * cell
    cy = (iy + 0.2 + 0.6 * u[:, 3]) * cell
    present = u[:, 0] < 0.92
    room = np.where(present, scene.room(IN_SITU, cx, cy), 0.0)
    a = np.minimum(scene.px(32.0) + scene.px(40.0) * u[:, 4], room - scene.px(5.0))
    b = a * (0.7 + 0.3 * u[:, 5])
    ok = present & (b > scene.px(16.0))
    gid = (ix * 1_000_003 + iy) * 64 + 13
    zeros = np.zeros(ok.sum())
    grid = _ellipses(cx[ok], cy[ok], a[ok], b[ok], u[ok, 11:16], IN_SITU, gid[ok], zeros)
    ducts = Ellipses.concat([_principal_ducts(scene), grid])
    x0, y0, x1, y1 = bounds
    ducts = ducts.take((ducts.cx >= x0) & (ducts.cx <= x1) & (ducts.cy >= y0) & (ducts.cy <= y1))
    # Per-duct pattern from its own id: comedo necrosis in large ducts, else cribriform.
    v = hash_uniform(scene.seed, _SALT_HOLES, ducts.gid[:, None], -1, np.arange(4)[None, :])
    small = np.minimum(ducts.a, ducts.b)
    necrotic = (v[:, 0] < 0.3) & (small > scene.px(45.0))
    ducts = Ellipses(
        **{f: getattr(ducts, f) for f in Ellipses.__dataclass_fields__ if f != "necrosis"},
        necrosis=np.where(necrotic, 0.3 + 0.2 * v[:, 1], 0.0),
    )
    crib = ~necrotic & (v[:, 2] < 0.5)
    n_holes = 3 + np.floor(7 * v[crib, 3]) * np.maximum(1.0, small[crib] / scene.px(60.0)) ** 2
    n_holes = n_holes.astype(np.int64)
    owner = np.flatnonzero(crib).repeat(n_holes)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(n_holes) - n_holes, n_holes)
    w = hash_uniform(
        scene.seed, _SALT_HOLES, ducts.gid[owner][:, None], j[:, None], np.arange(2)[None, :]
    )
    rho = 0.68 * np.sqrt((j + 0.5) / n_holes.repeat(n_holes))
    phi = j * 2.39996 + 2 * np.pi * w[:, 0]
    hx, hy = outline_points(ducts, owner, rho, phi)
    return ducts, Circles(hx, hy, scene.px(6.0) + scene.px(8.0) * w[:, 1])


def _principal_ducts(scene: Scene) -> Ellipses:
    """One large duct per in situ region, at its pole of inaccessibility (cached per scene)."""
    cached = scene.cache.get("principal_ducts")
    if cached is not None:
        return cached
    centres, radii = [], []
    area = scene.areas.get(IN_SITU)
    for poly in getattr(area, "geoms", [area] if area is not None else []):
        if poly.is_empty:
            continue
        centre = polylabel(poly, tolerance=1.0)
        centres.append((centre.x, centre.y))
        radii.append(shapely.distance(poly.exterior, centre))
    n = len(centres)
    xy = np.array(centres, np.float64).reshape(n, 2)
    gid = -(np.arange(n, dtype=np.int64) + 1) * 64
    u = hash_uniform(scene.seed, _SALT_INSITU, gid[:, None], np.arange(6)[None, :])
    a = np.minimum(np.array(radii) * 0.9 - scene.px(4.0), scene.px(220.0))
    b = a * (0.85 + 0.15 * u[:, 0])
    keep = b > scene.px(16.0)
    ducts = _ellipses(
        xy[:, 0], xy[:, 1], a, b, u[:, 1:6] * [1, 0.5, 1, 0.5, 1], IN_SITU, gid, np.zeros(n)
    )
    ducts = ducts.take(keep)
    scene.cache["principal_ducts"] = ducts
    return ducts


def vessels(scene: Scene, bounds) -> Ellipses:
    """Small blood vessels: thin wall, lumen empty or packed with red cells (``lumen`` = fill).

    They are painted only over stroma pixels, so they never cut through other structures.
    """
    cell = scene.px(120.0)
    ix, iy = _cells(bounds, cell)
    u = _draws(scene, _SALT_VESSEL, ix, iy, 12)
    ok = u[:, 0] < 0.7
    cx = (ix + 0.1 + 0.8 * u[:, 2]) * cell
    cy = (iy + 0.1 + 0.8 * u[:, 3]) * cell
    a = scene.px(5.0) + scene.px(12.0) * u[:, 4] ** 2
    b = a * (0.45 + 0.55 * u[:, 5])
    fill = np.where(u[:, 6] < 0.6, 0.6 + 0.4 * u[:, 7], 0.0)
    gid = (ix * 1_000_003 + iy) * 64 + 29
    return _ellipses(cx[ok], cy[ok], a[ok], b[ok], u[ok, 7:12], VESSEL, gid[ok], fill[ok])


def ellipse_radius(e: Ellipses, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Normalised radius of points (x, y) in structure ``i`` (1 on its outline), float32."""
    dx, dy = x - e.cx[i], y - e.cy[i]
    c, s = np.cos(e.theta[i]), np.sin(e.theta[i])
    un = (dx * c + dy * s) / e.a[i]
    vn = (-dx * s + dy * c) / e.b[i]
    rho2 = un * un + vn * vn + 1e-12
    rho = np.sqrt(rho2)
    cos2, sin2 = (un * un - vn * vn) / rho2, 2 * un * vn / rho2
    cos1, sin1 = un / rho, vn / rho
    cos3 = cos1 * cos2 - sin1 * sin2
    sin3 = sin1 * cos2 + cos1 * sin2
    p2, p3 = 2 * e.p2[i], 3 * e.p3[i]
    bump = 1 + e.e2[i] * (cos2 * np.cos(p2) + sin2 * np.sin(p2))
    bump += e.e3[i] * (cos3 * np.cos(p3) + sin3 * np.sin(p3))
    return (rho / bump).astype(np.float32)


def outline_points(e: Ellipses, idx: np.ndarray, r: np.ndarray, phi: np.ndarray):
    """Level-0 (x, y) of points at normalised radius ``r``, angle ``phi`` of structures ``idx``."""
    bump = 1 + e.e2[idx] * np.cos(2 * (phi - e.p2[idx])) + e.e3[idx] * np.cos(3 * (phi - e.p3[idx]))
    un, vn = r * bump * np.cos(phi), r * bump * np.sin(phi)
    u, v = un * e.a[idx], vn * e.b[idx]
    c, s = np.cos(e.theta[idx]), np.sin(e.theta[idx])
    return e.cx[idx] + u * c - v * s, e.cy[idx] + u * s + v * c
