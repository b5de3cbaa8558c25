"""Background tissue fields: collagen stroma, desmoplasia, adipose tissue, invasive nests.

All fields are functions of global level-0 coordinates (see noise.py), computed on a
region (x0, y0, width, height) and returned as float32 OD maps of that region.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from pathda.annotations import BACH_CLASSES, rasterise
from pathda.synth import structures as st
from pathda.synth.layout import TISSUE_CLASSES
from pathda.synth.noise import (
    cell_distances,
    cell_points,
    fractal_grid,
    hash_uniform,
    noise_grid,
    noise_points,
)
from pathda.synth.scene import Scene

Region = tuple[int, int, int, int]
"""(x0, y0, width, height) in level-0 pixels."""

# Normal collagen, desmoplastic (invasive) and loose (benign) stroma: eosin OD,
# hematoxylin OD, and how much the bundle pattern modulates eosin. Desmoplasia is paler,
# bluish and homogeneous.
_COLLAGEN = (0.58, 0.04, 0.6)
_DESMOPLASIA = (0.34, 0.13, 0.25)
_LOOSE = (0.42, 0.08, 0.35)  # benign (fibroadenoma-like) intralobular stroma: pale, loose

_SALT_FIBRE, _SALT_MOTTLE, _SALT_CLEFT, _SALT_FAT, _SALT_NEST = 200, 220, 230, 240, 250
_SALT_DENSITY, _SALT_EDGE = 290, 295
EDGE_SIGMA_UM = 15.0
"""Blur (µm) of the tissue outline that sets how deep its border frays."""
_N_FIBRE_LAYERS = 3

DESMOPLASIA_SIGMA_UM = 25.0
"""Width (Gaussian sigma, µm) of the stroma transition across an invasive boundary."""

_COARSE = 8  # level-0 px per cell of the coarse grid the soft class weight is blurred on


def stroma(scene: Scene, region: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wavy collagen bundles with fine striations; desmoplastic near invasion, loose in benign.

    A few fibre layers of fixed orientation are blended with weights that let one
    dominate locally; each layer is a sinusoid of the position across the fibres,
    domain-warped at two scales so bundles wander, vary in width and merge.

    Returns:
        od_h, od_e: (h, w) float32 OD maps.
        fibre_angle: (h, w) float32 direction of the fibres (rad), for fibroblasts.
        desmoplasia: (h, w) float32 in [0, 1], smoothed invasive-class weight.
    """
    x0, y0, w, h = region
    seed = scene.seed
    xs = np.arange(x0, x0 + w, dtype=np.float64) + 0.5
    ys = np.arange(y0, y0 + h, dtype=np.float64) + 0.5
    theta0 = float(np.pi * hash_uniform(seed, _SALT_FIBRE, 0))
    bundle_wl, fine_wl = scene.px(16.0), scene.px(3.2)
    weights, bundles, fines = [], [], []
    for k in range(_N_FIBRE_LAYERS):
        t = theta0 + k * np.pi / _N_FIBRE_LAYERS
        warp = 2.4 * noise_grid(x0, y0, w, h, scene.px(40.0), seed, _SALT_FIBRE + 1 + k)
        warp += 0.7 * noise_grid(x0, y0, w, h, scene.px(11.0), seed, _SALT_FIBRE + 20 + k)
        phase = _linear_phase(xs, ys, t, bundle_wl) + warp
        bundles.append(np.clip(np.sin(np.float32(2 * np.pi) * phase) * 1.2 + 0.5, 0.0, 1.0))
        fine = _linear_phase(xs, ys, t, fine_wl) + warp * np.float32(bundle_wl / fine_wl)
        fines.append(np.sin(np.float32(2 * np.pi) * fine))
        weights.append(noise_grid(x0, y0, w, h, scene.px(220.0), seed, _SALT_FIBRE + 10 + k) ** 4)
    total = sum(weights) + np.float32(1e-6)
    bundle = sum(wk * bk for wk, bk in zip(weights, bundles, strict=True)) / total
    fine = sum(wk * fk for wk, fk in zip(weights, fines, strict=True)) / total
    # Fibres run perpendicular to the phase gradient of the locally dominant layer.
    fibre_angle = np.full((h, w), theta0 + np.pi / 2, np.float32)
    best = weights[0]
    for k in range(1, _N_FIBRE_LAYERS):
        wins = weights[k] > best
        fibre_angle[wins] = theta0 + k * np.pi / _N_FIBRE_LAYERS + np.pi / 2
        best = np.maximum(best, weights[k])

    desmo = soft_class_weight(scene, region, 3, DESMOPLASIA_SIGMA_UM)
    loose = soft_class_weight(scene, region, 1, DESMOPLASIA_SIGMA_UM)
    e0, h0, contrast = (
        np.float32(c) + (np.float32(d) - np.float32(c)) * desmo + (np.float32(b) - c) * loose
        for c, d, b in zip(_COLLAGEN, _DESMOPLASIA, _LOOSE, strict=True)
    )
    mottle = fractal_grid(x0, y0, w, h, scene.px(45.0), seed, _SALT_MOTTLE, 3)
    density = noise_grid(x0, y0, w, h, scene.px(160.0), seed, _SALT_DENSITY)
    # Gaps between bundles are open (white) in some places and filled in others.
    openness = np.clip(
        (noise_grid(x0, y0, w, h, scene.px(30.0), seed, _SALT_CLEFT) - 0.3) * 2, 0, 1
    )
    contrast = contrast * (0.4 + 0.6 * openness)
    od_e = e0 * (1 - contrast + contrast * bundle) * (0.92 + 0.08 * fine)
    od_e *= (0.65 + 0.7 * mottle) * (0.7 + 0.6 * density)
    od_h = h0 * (0.7 + 0.6 * mottle)
    return od_h.astype(np.float32), od_e.astype(np.float32), fibre_angle, desmo


def _linear_phase(xs: np.ndarray, ys: np.ndarray, theta: float, wavelength: float) -> np.ndarray:
    """(x cos θ + y sin θ) / wavelength mod 1 as float32, exact for large coordinates."""
    px = np.mod(xs * math.cos(theta) / wavelength, 1.0).astype(np.float32)
    py = np.mod(ys * math.sin(theta) / wavelength, 1.0).astype(np.float32)
    return py[:, None] + px[None, :]


def soft_class_weight(scene: Scene, region: Region, class_id: int, sigma_um: float) -> np.ndarray:
    """Gaussian-smoothed indicator of one BACH lesion class, float32 (h, w) in [0, 1]."""
    anns = [a for a in scene.layout.lesions if BACH_CLASSES.id_of(a.label) == class_id]
    return soft_mask(scene, region, anns, BACH_CLASSES, sigma_um)


def soft_mask(scene: Scene, region: Region, annotations, class_map, sigma_um: float) -> np.ndarray:
    """Gaussian-smoothed indicator of the union of ``annotations``, float32 (h, w) in [0, 1].

    The indicator is rasterised (``pathda.annotations.rasterise``) on a coarse grid
    aligned to global multiples of ``_COARSE`` px, blurred there and interpolated
    bilinearly, so neighbouring tiles agree exactly.
    """
    x0, y0, w, h = region
    sigma = scene.px(sigma_um) / _COARSE
    pad = math.ceil(3 * sigma) + 2
    gx0, gy0 = math.floor(x0 / _COARSE) - pad, math.floor(y0 / _COARSE) - pad
    gx1, gy1 = math.ceil((x0 + w) / _COARSE) + pad, math.ceil((y0 + h) / _COARSE) + pad
    if not annotations:
        return np.zeros((h, w), np.float32)
    coarse = rasterise(
        list(annotations),
        class_map,
        (gy1 - gy0, gx1 - gx0),
        float(_COARSE),
        (gx0 * _COARSE, gy0 * _COARSE),
    )
    if coarse.all() or not coarse.any():  # uniform: blurring changes nothing
        return np.full((h, w), 1.0 if coarse.all() else 0.0, np.float32)
    coarse = coarse > 0
    smooth = gaussian_filter(coarse.astype(np.float32), sigma, truncate=3.0)
    # Coarse cell (i, j) has its centre at level-0 ((gx0 + j + 0.5) * C, (gy0 + i + 0.5) * C).
    u = (np.arange(x0, x0 + w) + 0.5) / _COARSE - 0.5 - gx0
    v = (np.arange(y0, y0 + h) + 0.5) / _COARSE - 0.5 - gy0
    j, i = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = (u - j).astype(np.float32), (v - i).astype(np.float32)
    along = smooth[:, j] * (1 - fu) + smooth[:, j + 1] * fu
    top = np.take(along, i, axis=0)
    out = np.take(along, i + 1, axis=0)
    out -= top
    out *= fv[:, None]
    out += top
    return out


def add_fat(scene: Scene, region: Region, normal: np.ndarray, od_h, od_e, zone) -> None:
    """Adipose lobules in normal tissue: empty polygonal cells with thin pink membranes."""
    x0, y0, w, h = region
    cell = scene.px(60.0)
    # Fat or not is decided per adipocyte (at its Worley point), so lobules have cell edges.
    px, py = cell_points(x0, y0, w, h, cell, scene.seed, _SALT_FAT)
    lobe = noise_points(px, py, scene.px(300.0), scene.seed, _SALT_FAT + 1) > 0.72
    if not lobe.any():
        return
    f1, f2, nearest, _ = cell_distances(x0, y0, w, h, cell, scene.seed, _SALT_FAT)
    fat = lobe.ravel()[nearest] & normal
    if not fat.any():
        return
    membrane = (f2 - f1) < scene.px(1.4)
    od_e[fat] = np.where(membrane[fat], 0.5, 0.015)
    od_h[fat] = np.where(membrane[fat], 0.04, 0.004)
    zone[fat] = st.Z_FAT


def add_nests(scene: Scene, region: Region, invasive: np.ndarray, od_h, od_e, zone, mottle) -> None:
    """Invasive tumour nests and cords with retraction clefts, in desmoplastic stroma."""
    x0, y0, w, h = region
    coarse = noise_grid(x0, y0, w, h, scene.px(80.0), scene.seed, _SALT_NEST)
    fine = noise_grid(x0, y0, w, h, scene.px(22.0), scene.seed, _SALT_NEST + 1)
    n = 0.62 * coarse + 0.38 * fine
    nest = invasive & (n > 0.52)
    cleft = invasive & (n > 0.505) & ~nest
    od_e[cleft] *= 0.2
    od_h[cleft] *= 0.2
    od_e[nest] = 0.2 + 0.14 * mottle[nest]
    od_h[nest] = 0.15 + 0.08 * mottle[nest]
    zone[nest] = st.Z_NEST
    zone[cleft] = st.Z_LUMEN


def ragged_edge(scene: Scene, region: Region, tissue: np.ndarray) -> np.ndarray:
    """Tissue mask with a frayed border: eroded by 0-20 µm, varying along the edge.

    Keeps a tissue pixel when the blurred tissue indicator exceeds a noisy threshold, so
    only pixels near the outline can go (lesions sit >= 25 µm inside the tissue).
    """
    x0, y0, w, h = region
    soft = soft_mask(scene, region, scene.layout.tissue, TISSUE_CLASSES, EDGE_SIGMA_UM)
    if soft.min() >= 1.0:
        return tissue
    fray = fractal_grid(x0, y0, w, h, scene.px(30.0), scene.seed, _SALT_EDGE, 2)
    return tissue & (soft > 0.5 + 0.4 * np.clip(fray * 1.6 - 0.3, 0.0, 1.0))
