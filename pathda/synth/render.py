"""Render H&E tiles: tissue optical density per compartment, then Beer-Lambert and scanner.

A tile is rendered from a region = tile + margin, and every random choice is a function
of global coordinates (see noise.py), so rendering one big tile or four small ones gives
the same pixels (before JPEG). The label raster of the region comes from
``pathda.annotations.rasterise`` on the layout polygons, i.e. from the same polygons as
the XML annotation and the ground-truth mask.

Optical density (OD) recipe per compartment, hematoxylin (H) and eosin (E):
stroma = pink wavy collagen (E) with a faint H haze; epithelium = pale purple cytoplasm;
lumens, fat and glass = almost no stain; nuclei = strong H with chromatin texture.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from pathda.annotations import BACH_CLASSES, rasterise
from pathda.synth import structures as st
from pathda.synth.layout import TISSUE_CLASSES
from pathda.synth.noise import (
    fractal_grid,
    noise_grid,
    sensor_noise,
)
from pathda.synth.nuclei import Nuclei, grid_nuclei, make_nuclei, ring_nuclei, stamp_nuclei
from pathda.synth.scene import Scene
from pathda.synth.stroma import add_fat, add_nests, ragged_edge, stroma

Region = tuple[int, int, int, int]
"""(x0, y0, width, height) in level-0 pixels."""

_SALT_MOTTLE, _SALT_GRAIN, _SALT_SENSOR, _SALT_INFLAM = 221, 260, 270, 280


def tile_margin(scene: Scene) -> int:
    """Extra pixels rendered around a tile: largest nucleus window plus the blur support.

    The largest nucleus (invasive, 6.8 µm radius at aspect 0.55) reaches 12.4 µm + 1.5 px
    from its centre (nuclei.stamp_nuclei); nuclei centred outside the region are dropped.
    """
    blur = 3.0 * scene.px(scene.preset.blur_um)
    return math.ceil(scene.px(13.0) + blur + 3)


def render_tile(scene: Scene, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) of the level-0 rectangle at (x0, y0) (pixels).

    Pixels outside the slide are rendered as glass, so edge tiles can be full-size.
    """
    m = tile_margin(scene)
    region = (x0 - m, y0 - m, width + 2 * m, height + 2 * m)
    od_h, od_e = tissue_optical_density(scene, region)
    planes = stain_to_rgb(od_h, od_e, scene)
    # Blurring uniform glass changes nothing (the kernel sums to 1), so it is skipped.
    planes = scan(planes, scene, region, blur=bool(od_h.any() or od_e.any()))
    return np.ascontiguousarray(planes[:, m : m + height, m : m + width].transpose(1, 2, 0))


def stain_to_rgb(od_h: np.ndarray, od_e: np.ndarray, scene: Scene) -> np.ndarray:
    """Beer-Lambert: I = I0 * exp(-(OD_H * h + OD_E * e)); float32 planes (3, h, w), 0..255."""
    stains = scene.preset.stain_matrix()
    glass = scene.preset.background_rgb
    out = np.empty((3, *od_h.shape), np.float32)
    for c in range(3):
        od = od_h * stains[0, c] + od_e * stains[1, c]
        np.exp(-od, out=out[c])
        out[c] *= np.float32(glass[c])
    return out


def scan(planes: np.ndarray, scene: Scene, region: Region, blur: bool = True) -> np.ndarray:
    """Scanner effects of the domain on (3, h, w) float planes: colour, blur, noise -> uint8."""
    p = scene.preset
    if p.saturation != 1.0:
        grey = planes.mean(axis=0, keepdims=True)
        planes = grey + np.float32(p.saturation) * (planes - grey)
    if p.brightness:
        planes += np.float32(p.brightness)
    if blur and p.blur_um > 0:
        sigma = scene.px(p.blur_um)
        for c in range(3):
            planes[c] = gaussian_filter(planes[c], sigma, truncate=3.0)
    if p.noise_sigma > 0:
        x0, y0, w, h = region
        noise = sensor_noise(x0, y0, w, h, scene.seed, _SALT_SENSOR, channels=3)
        planes += np.float32(p.noise_sigma) * noise
    planes += np.float32(0.5)
    np.clip(planes, 0, 255, out=planes)
    return planes.astype(np.uint8)


def tissue_optical_density(scene: Scene, region: Region) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin OD maps (float32, (h, w)) of a region; zero on glass."""
    x0, y0, w, h = region
    tissue = rasterise(scene.layout.tissue, TISSUE_CLASSES, (h, w), 1.0, (x0, y0)) > 0
    if not tissue.any():
        return np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    tissue = ragged_edge(scene, region, tissue)
    label = rasterise(scene.layout.lesions, BACH_CLASSES, (h, w), 1.0, (x0, y0))
    zone = np.zeros((h, w), np.uint8)
    od_h, od_e, fibre_angle, desmo = stroma(scene, region)
    mottle = fractal_grid(x0, y0, w, h, scene.px(30.0), scene.seed, _SALT_MOTTLE, 2)
    present = np.bincount(label[tissue], minlength=4) > 0
    if present[0]:
        add_fat(scene, region, label == 0, od_h, od_e, zone)
    if present[3]:
        add_nests(scene, region, label == 3, od_h, od_e, zone, mottle)

    ext = scene.px(st.MAX_EXTENT_UM)
    bounds = (x0 - ext, y0 - ext, x0 + w + ext, y0 + h + ext)
    glands, holes, halos = [], [], []
    if present[0]:
        normal, lobules = st.normal_structures(scene, bounds)
        glands.append(normal)
        halos.append(lobules)
    if present[1]:
        glands.append(st.benign_glands(scene, bounds))
    if present[2]:
        ducts, crib = st.insitu_ducts(scene, bounds)
        glands.append(ducts)
        holes.append(crib)
    for lob in halos:
        _paint_halos(scene, region, label, lob, od_h, od_e, zone)
    allg = _visible(st.Ellipses.concat(glands), region) if glands else None
    if allg is not None and len(allg):
        _paint_glands(scene, region, label, allg, od_h, od_e, zone, mottle)
        for hole_set in holes:
            _paint_holes(region, hole_set, od_h, od_e, zone)

    grain = noise_grid(x0, y0, w, h, scene.px(0.9), scene.seed, _SALT_GRAIN)
    _paint_vessels(
        scene, region, _visible(st.vessels(scene, bounds), region), od_h, od_e, zone, grain
    )
    nuclei = _nuclei(scene, region, label, tissue, zone, fibre_angle, desmo, allg)
    stamp_nuclei(od_h, od_e, nuclei, (x0, y0), grain)
    # Fine granularity of all stain (cytoplasm and fibre texture at ~1 µm).
    fine = 0.88 + 0.24 * grain
    od_h *= fine * tissue
    od_e *= fine * tissue
    return od_h, od_e


def _visible(glands: st.Ellipses, region: Region) -> st.Ellipses:
    x0, y0, w, h = region
    r = np.maximum(glands.a, glands.b) * 1.2 + 4
    keep = (
        (glands.cx + r >= x0)
        & (glands.cx - r <= x0 + w)
        & (glands.cy + r >= y0)
        & (glands.cy - r <= y0 + h)
    )
    return glands.take(keep)


def _window(region: Region, cx: float, cy: float, radius: float):
    x0, y0, w, h = region
    c0 = max(math.floor(cx - radius) - x0, 0)
    c1 = min(math.ceil(cx + radius) - x0 + 1, w)
    r0 = max(math.floor(cy - radius) - y0, 0)
    r1 = min(math.ceil(cy + radius) - y0 + 1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    xs = (np.arange(c0, c1) + x0 + 0.5)[None, :]
    ys = (np.arange(r0, r1) + y0 + 0.5)[:, None]
    return (slice(r0, r1), slice(c0, c1)), xs, ys


def _paint_halos(scene, region, label, halos: st.Circles, od_h, od_e, zone) -> None:
    """Loose, paler intralobular stroma around lobules."""
    for cx, cy, r in zip(halos.cx, halos.cy, halos.r, strict=True):
        win = _window(region, cx, cy, r)
        if win is None:
            continue
        sl, xs, ys = win
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
        m = (d < 1) & (label[sl] == 0)
        od_e[sl][m] *= 0.55
        od_h[sl][m] += 0.04
        zone[sl][m] = st.Z_LOOSE


def _paint_glands(scene, region, label, g: st.Ellipses, od_h, od_e, zone, mottle) -> None:
    """Two passes so touching structures merge: basement membranes first, then interiors."""
    windows = []
    for i in range(len(g)):
        win = _window(region, g.cx[i], g.cy[i], max(g.a[i], g.b[i]) * 1.2 + scene.px(3.0))
        if win is None:
            windows.append(None)
            continue
        sl, xs, ys = win
        r = st.ellipse_radius(g, i, xs, ys)
        own = label[sl] == g.kind[i]
        windows.append((sl, r, own))
        membrane = own & (r < 1 + scene.px(2.2) / min(g.a[i], g.b[i]))
        od_e[sl][membrane] = np.maximum(od_e[sl][membrane], 0.6)
        od_h[sl][membrane] = 0.05
        zone[sl][membrane] = st.Z_MEMBRANE
    for i, item in enumerate(windows):
        if item is None:
            continue
        sl, r, own = item
        inside = own & (r < 1)
        mt = mottle[sl][inside]
        kind = g.kind[i]
        if kind == st.IN_SITU:
            od_e[sl][inside] = 0.2 + 0.1 * mt
            od_h[sl][inside] = 0.16 + 0.06 * mt
            zone[sl][inside] = np.where(r[inside] < 0.92, st.Z_DUCT_CELLS, st.Z_DUCT_RIM)
            if g.necrosis[i] > 0:
                dead = own & (r < g.necrosis[i])
                od_e[sl][dead] = 0.38 + 0.2 * mottle[sl][dead]
                od_h[sl][dead] = 0.1
                zone[sl][dead] = st.Z_NECROSIS
        else:
            od_e[sl][inside] = 0.27 + 0.1 * mt
            od_h[sl][inside] = 0.09 + 0.03 * mt
            zone[sl][inside] = st.Z_NORMAL_EPI if kind == st.NORMAL else st.Z_BENIGN_EPI
            lumen = own & (r < g.lumen[i])
            secretion = 0.12 if (g.gid[i] % 3 == 0 and kind == st.BENIGN) else 0.02
            od_e[sl][lumen] = secretion
            od_h[sl][lumen] = 0.01
            zone[sl][lumen] = st.Z_LUMEN


def _paint_vessels(scene, region, v: st.Ellipses, od_h, od_e, zone, grain) -> None:
    """Vessel walls and red cells, over stroma only."""
    for i in range(len(v)):
        wall = scene.px(1.6) / min(v.a[i], v.b[i])
        win = _window(region, v.cx[i], v.cy[i], max(v.a[i], v.b[i]) * 1.15 + 2)
        if win is None:
            continue
        sl, xs, ys = win
        r = st.ellipse_radius(v, i, xs, ys)
        free = (zone[sl] == st.Z_STROMA) | (zone[sl] == st.Z_LOOSE)
        inside = free & (r < 1 + wall)
        lumen = free & (r < 1 - wall)
        od_e[sl][inside] = 0.55
        od_h[sl][inside] = 0.08
        # Red cells: strongly eosinophilic, granular (cells ~7 µm); or an empty lumen.
        od_e[sl][lumen] = v.lumen[i] * (0.75 + 0.5 * grain[sl][lumen]) + 0.02
        od_h[sl][lumen] = 0.01
        zone[sl][inside] = st.Z_VESSEL


def _paint_holes(region, holes: st.Circles, od_h, od_e, zone) -> None:
    for cx, cy, r in zip(holes.cx, holes.cy, holes.r, strict=True):
        win = _window(region, cx, cy, r)
        if win is None:
            continue
        sl, xs, ys = win
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / r
        m = (d < 1) & (zone[sl] == st.Z_DUCT_CELLS)
        od_e[sl][m] = 0.03
        od_h[sl][m] = 0.01
        zone[sl][m] = st.Z_HOLE


def _nuclei(scene, region, label, tissue, zone, fibre_angle, desmo, glands) -> Nuclei:
    x0, y0, w, h = region
    parts = []
    if glands is not None and len(glands):
        # Where structures merged, one's ring can fall inside another's lumen or cells.
        banned = (st.Z_LUMEN, st.Z_HOLE, st.Z_NECROSIS, st.Z_DUCT_CELLS)
        epi = glands.take(glands.kind != st.IN_SITU)
        for kind in (st.NORMAL, st.BENIGN):
            gk = epi.take(epi.kind == kind)
            name = "normal" if kind == st.NORMAL else "benign"
            spacing = 8.5 if kind == st.NORMAL else 8.0
            ring = ring_nuclei(scene, gk, name, 300 + kind, (gk.lumen + 1) / 2, spacing, False)
            parts.append(ring.where_zone(zone, (x0, y0), banned))
        myo = ring_nuclei(scene, glands, "myo", 310, np.full(len(glands), 0.965), 13.0, True)
        parts.append(myo.where_zone(zone, (x0, y0), banned))
    stroma = tissue & ((zone == st.Z_STROMA) | (zone == st.Z_LOOSE))
    inflam = noise_grid(x0, y0, w, h, scene.px(150.0), scene.seed, _SALT_INFLAM)
    lymph_p = np.clip((inflam - 0.55) * 1.5, 0, 0.5) + 0.02 + 0.1 * desmo
    fib_p = 0.3 + 0.25 * desmo
    populations = [
        ("in_situ", 320, 9.5, (zone == st.Z_DUCT_CELLS) * np.float32(0.97), None),
        ("invasive", 321, 9.5, (zone == st.Z_NEST) * np.float32(0.95), None),
        ("invasive", 322, 30.0, ((label == 3) & stroma) * np.float32(0.35), None),
        ("fibroblast", 323, 20.0, stroma * fib_p, fibre_angle),
        ("lymphocyte", 324, 14.0, stroma * lymph_p, None),
        ("debris", 325, 6.0, (zone == st.Z_NECROSIS) * np.float32(0.6), None),
    ]
    for kind, salt, cell_um, accept, orient in populations:
        if accept.any():
            parts.append(grid_nuclei(scene, kind, salt, cell_um, region, accept, orient))
    if not parts:
        return make_nuclei(scene, "normal", *(np.zeros(0),) * 3, np.zeros((0, 8)))
    return Nuclei.concat(parts)
