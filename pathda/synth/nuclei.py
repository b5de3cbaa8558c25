"""Cell nuclei: populations per tissue compartment and vectorised stamping.

Nuclei are irregular ellipses stamped into a hematoxylin optical-density map. Free
populations (tumour cells, fibroblasts, lymphocytes, debris) come from jittered global
grids, one candidate per cell keyed by (seed, salt, cell_x, cell_y); a candidate is kept
when the zone raster at its centre says it belongs there. Gland epithelium comes in rings
around each gland (see :func:`ring_nuclei`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pathda.synth.noise import hash_uniform
from pathda.synth.scene import Scene
from pathda.synth.structures import Ellipses, outline_points


@dataclass(frozen=True)
class Nuclei:
    """Struct-of-arrays of nuclei in level-0 pixels.

    a/b: semi-axes (px); theta: long-axis angle (rad); dark: hematoxylin OD at the centre;
    e2/p2/e3/p3: outline irregularity; vesicular: 0..1 pale centre with nucleolus;
    texture: chromatin granularity amplitude.
    """

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    dark: np.ndarray
    e2: np.ndarray
    p2: np.ndarray
    e3: np.ndarray
    p3: np.ndarray
    vesicular: np.ndarray
    texture: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    @staticmethod
    def concat(parts: list[Nuclei]) -> Nuclei:
        return Nuclei(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Nuclei.__dataclass_fields__)
        )

    def take(self, keep: np.ndarray) -> Nuclei:
        return Nuclei(*(getattr(self, f)[keep] for f in Nuclei.__dataclass_fields__))

    def where_zone(self, zone: np.ndarray, origin: tuple[int, int], banned: tuple[int, ...]):
        """Nuclei whose centre lies in the zone raster (origin = its top-left level-0 pixel)
        and not in a ``banned`` zone, e.g. ring nuclei of a gland swallowed by a merged one."""
        col = np.floor(self.cx).astype(np.int64) - origin[0]
        row = np.floor(self.cy).astype(np.int64) - origin[1]
        h, w = zone.shape
        keep = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        keep[keep] = ~np.isin(zone[row[keep], col[keep]], banned)
        return self.take(keep)


@dataclass(frozen=True)
class NucleusKind:
    """Morphology of one population, sizes in µm (radius = half the diameter)."""

    radius: tuple[float, float]
    aspect: tuple[float, float]
    dark: tuple[float, float]
    irregular: float
    vesicular_p: float
    texture: float


KINDS = {
    "normal": NucleusKind((2.9, 3.5), (0.75, 0.95), (0.85, 1.0), 0.03, 0.0, 0.12),
    "benign": NucleusKind((3.0, 3.6), (0.8, 0.95), (0.95, 1.1), 0.03, 0.0, 0.12),
    "myo": NucleusKind((4.0, 5.0), (0.3, 0.4), (0.95, 1.15), 0.02, 0.0, 0.1),
    "in_situ": NucleusKind((4.6, 6.4), (0.7, 1.0), (1.05, 1.5), 0.12, 0.25, 0.3),
    "invasive": NucleusKind((4.2, 6.8), (0.55, 1.0), (0.85, 1.5), 0.22, 0.45, 0.3),
    "fibroblast": NucleusKind((2.2, 3.0), (0.2, 0.32), (0.85, 1.1), 0.04, 0.0, 0.08),
    "lymphocyte": NucleusKind((2.3, 2.9), (0.85, 1.0), (1.45, 1.8), 0.04, 0.0, 0.1),
    "debris": NucleusKind((0.7, 2.0), (0.5, 1.0), (1.2, 1.7), 0.2, 0.0, 0.1),
}


def make_nuclei(
    scene: Scene, kind: str, cx: np.ndarray, cy: np.ndarray, theta: np.ndarray, u: np.ndarray
) -> Nuclei:
    """Nuclei of population ``kind`` at given centres; ``u`` holds >= 8 uniforms per nucleus."""
    k = KINDS[kind]
    radius = scene.px(k.radius[0] + (k.radius[1] - k.radius[0]) * u[:, 0])
    aspect = k.aspect[0] + (k.aspect[1] - k.aspect[0]) * u[:, 1]
    a = radius / np.sqrt(aspect)  # keep the area of a circle of ``radius``
    return Nuclei(
        cx=cx,
        cy=cy,
        a=a,
        b=a * aspect,
        theta=theta,
        dark=k.dark[0] + (k.dark[1] - k.dark[0]) * u[:, 2],
        e2=k.irregular * u[:, 3],
        p2=np.pi * u[:, 4],
        e3=0.7 * k.irregular * u[:, 5],
        p3=np.pi * u[:, 6],
        vesicular=(u[:, 7] < k.vesicular_p).astype(np.float64),
        texture=np.full(len(cx), k.texture),
    )


def grid_nuclei(
    scene: Scene,
    kind: str,
    salt: int,
    cell_um: float,
    region: tuple[int, int, int, int],
    accept: np.ndarray,
    orientation: np.ndarray | None = None,
) -> Nuclei:
    """One candidate nucleus per grid cell, kept with probability ``accept`` at its centre.

    Args:
        scene: the slide.
        kind: key of :data:`KINDS`.
        salt: per-population constant.
        cell_um: grid spacing in µm (about the nucleus-to-nucleus distance).
        region: (x0, y0, width, height) in level-0 px of the rasters ``accept``/``orientation``.
        accept: (height, width) float acceptance probability per pixel.
        orientation: (height, width) preferred long-axis angle (rad); random when None.
    """
    x0, y0, w, h = region
    cell = scene.px(cell_um)
    ix = np.arange(np.floor(x0 / cell), np.floor((x0 + w) / cell) + 1, dtype=np.int64)
    iy = np.arange(np.floor(y0 / cell), np.floor((y0 + h) / cell) + 1, dtype=np.int64)
    gx, gy = (g.ravel() for g in np.meshgrid(ix, iy))
    u = hash_uniform(scene.seed, salt, gx[:, None], gy[:, None], np.arange(11)[None, :])
    cx = (gx + 0.1 + 0.8 * u[:, 8]) * cell
    cy = (gy + 0.1 + 0.8 * u[:, 9]) * cell
    col = np.floor(cx).astype(np.int64) - x0
    row = np.floor(cy).astype(np.int64) - y0
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    keep = np.zeros(len(cx), bool)
    keep[inside] = u[inside, 10] < accept[row[inside], col[inside]]
    if orientation is None:
        theta = np.pi * u[keep, 4] * 2.0
    else:
        theta = orientation[row[keep], col[keep]] + 0.3 * (u[keep, 4] - 0.5)
    return make_nuclei(scene, kind, cx[keep], cy[keep], theta, u[keep])


def ring_nuclei(
    scene: Scene,
    glands: Ellipses,
    kind: str,
    salt: int,
    radius: np.ndarray,
    spacing_um: float,
    tangential: bool,
) -> Nuclei:
    """Nuclei evenly spaced around each gland at normalised radius ``radius`` (per gland)."""
    if len(glands) == 0:
        return make_nuclei(scene, kind, *(np.zeros(0),) * 3, np.zeros((0, 8)))
    mean_axis = np.sqrt((glands.a**2 + glands.b**2) / 2)
    count = np.maximum(3, np.round(2 * np.pi * radius * mean_axis / scene.px(spacing_um)))
    count = count.astype(np.int64)
    owner = np.repeat(np.arange(len(glands)), count)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    u = hash_uniform(
        scene.seed, salt, glands.gid[owner][:, None], j[:, None], np.arange(10)[None, :]
    )
    phi = 2 * np.pi * (j + 0.35 * (u[:, 8] - 0.5)) / count[owner]
    r = radius[owner] * (1 + 0.06 * (u[:, 9] - 0.5))
    cx, cy = outline_points(glands, owner, r, phi)
    # Angle of the outward normal, approximated by the direction from the centre.
    normal = np.arctan2(cy - glands.cy[owner], cx - glands.cx[owner])
    theta = normal + (np.pi / 2 if tangential else 0.0)
    return make_nuclei(scene, kind, cx, cy, theta, u)


def stamp_nuclei(
    od_h: np.ndarray,
    od_e: np.ndarray,
    nuclei: Nuclei,
    origin: tuple[int, int],
    grain: np.ndarray,
) -> None:
    """Paint nuclei into the hematoxylin/eosin OD maps in place (max-blend of nuclei).

    Args:
        od_h, od_e: (h, w) float32 OD maps of a region whose top-left pixel is ``origin``.
        nuclei: nuclei in level-0 pixels.
        origin: (x0, y0) level-0 pixel of the maps' top-left element.
        grain: (h, w) float32 chromatin texture in [0, 1] for the same region.
    """
    if len(nuclei) == 0:
        return
    h, w = od_h.shape
    nuc = np.zeros(h * w, np.float32)
    cover = np.zeros(h * w, np.float32)
    half_all = np.ceil(np.maximum(nuclei.a, nuclei.b) * 1.35 + 1.5).astype(np.int64)
    # Bucket by window size so small nuclei do not pay for the largest window.
    bucket = (np.ceil(half_all / 4) * 4).astype(np.int64)
    for half in np.unique(bucket):
        sel = np.flatnonzero(bucket == half)
        # Chunks of ~256k window pixels bound the temporaries (a dozen arrays per chunk).
        step = max(1, (1 << 18) // (2 * int(half) + 1) ** 2)
        for start in range(0, len(sel), step):
            chunk = sel[start : start + step]
            _stamp_bucket(nuc, cover, nuclei, chunk, int(half), origin, (h, w), grain)
    nuc = nuc.reshape(h, w)
    cover = cover.reshape(h, w)
    od_h *= 1.0 - cover
    od_h += nuc
    od_e *= 1.0 - 0.55 * cover


def _stamp_bucket(nuc, cover, n: Nuclei, sel, half, origin, shape, grain) -> None:
    h, w = shape
    offs = np.arange(-half, half + 1)
    px = np.floor(n.cx[sel]).astype(np.int64)[:, None, None] + offs[None, None, :]
    py = np.floor(n.cy[sel]).astype(np.int64)[:, None, None] + offs[None, :, None]
    dx = (px + 0.5 - n.cx[sel][:, None, None]).astype(np.float32)
    dy = (py + 0.5 - n.cy[sel][:, None, None]).astype(np.float32)
    c = np.cos(n.theta[sel]).astype(np.float32)[:, None, None]
    s = np.sin(n.theta[sel]).astype(np.float32)[:, None, None]
    a = n.a[sel].astype(np.float32)[:, None, None]
    b = n.b[sel].astype(np.float32)[:, None, None]
    un = (dx * c + dy * s) / a
    vn = (-dx * s + dy * c) / b
    rho2 = un * un + vn * vn + 1e-6
    rho = np.sqrt(rho2)
    p2 = (2 * n.p2[sel]).astype(np.float32)[:, None, None]
    p3 = (3 * n.p3[sel]).astype(np.float32)[:, None, None]
    cos2, sin2 = (un * un - vn * vn) / rho2, 2 * un * vn / rho2
    cos1, sin1 = un / rho, vn / rho
    bump = 1 + n.e2[sel].astype(np.float32)[:, None, None] * (cos2 * np.cos(p2) + sin2 * np.sin(p2))
    bump += n.e3[sel].astype(np.float32)[:, None, None] * (
        (cos1 * cos2 - sin1 * sin2) * np.cos(p3) + (sin1 * cos2 + cos1 * sin2) * np.sin(p3)
    )
    r = rho / bump
    # ~1 px anti-aliased edge: (1 - r) * b is roughly the distance to the outline in pixels.
    cov = np.clip((1.0 - r) * b + 0.5, 0.0, 1.0)
    col = px - origin[0]
    row = py - origin[1]
    valid = (cov > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    col, row = np.broadcast_to(col, cov.shape)[valid], np.broadcast_to(row, cov.shape)[valid]
    cov_v, r_v = cov[valid], r[valid]
    which = np.broadcast_to(np.arange(len(sel))[:, None, None], cov.shape)[valid]
    dark = n.dark[sel].astype(np.float32)[which]
    ves = n.vesicular[sel].astype(np.float32)[which]
    tex = n.texture[sel].astype(np.float32)[which]
    g = grain[row, col]
    # Darker rim (nuclear membrane); vesicular nuclei have a pale centre and a nucleolus.
    rim = np.clip((r_v - 0.65) / 0.3, 0.0, 1.0)
    profile = (1.0 - 0.45 * ves) + (0.1 + 0.4 * ves) * rim
    nucleolus = ves * np.clip(1.0 - r_v / 0.22, 0.0, 1.0) * 0.9
    value = dark * (profile * (1.0 + 2.0 * tex * (g - 0.5)) + nucleolus) * cov_v
    flat = row * w + col
    np.maximum.at(nuc, flat, value)
    np.maximum.at(cover, flat, cov_v)
