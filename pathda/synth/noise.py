"""Deterministic randomness as pure functions of global coordinates.

Everything random in a synthetic slide is drawn from ``hash_uniform(seed, *keys)``, a
counter-based generator (splitmix64 mixing), keyed by the slide seed, a per-purpose salt
and integer global coordinates (a grid cell, a pixel). Any tile therefore sees exactly
the values its neighbours see, which is what makes textures continuous across tiles.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / float(1 << 53)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


def hash_uint64(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """64-bit hash of (seed, keys...) element-wise; keys broadcast against each other."""
    with np.errstate(over="ignore"):
        h = _splitmix(np.asarray(np.uint64(seed & 0xFFFFFFFFFFFFFFFF)))
        for key in keys:
            k = np.asarray(key).astype(np.int64).view(np.uint64)
            h = _splitmix(h ^ k)
    return h


def hash_uniform(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform float64 in [0, 1) for each element of the broadcast keys."""
    return (hash_uint64(seed, *keys) >> _S11).astype(np.float64) * _TO_UNIT


def hash_normal(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Standard normal float64 per element (Box-Muller on two hashed uniforms)."""
    u1 = hash_uniform(seed, *keys, 1)
    u2 = hash_uniform(seed, *keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def noise_grid(
    x0: int, y0: int, width: int, height: int, scale: float, seed: int, salt: int
) -> np.ndarray:
    """Smooth value noise in [0, 1] on a pixel grid, as float32 (height, width).

    Lattice values sit every ``scale`` pixels in global level-0 coordinates and are
    interpolated with a smoothstep, so any sub-rectangle gives identical values.

    Args:
        x0, y0: global level-0 pixel of the grid's top-left element.
        width, height: grid size in pixels.
        scale: lattice spacing in level-0 pixels (feature size).
        seed, salt: slide seed and a per-field constant.
    """
    xs = (np.arange(x0, x0 + width, dtype=np.float64) + 0.5) / scale
    ys = (np.arange(y0, y0 + height, dtype=np.float64) + 0.5) / scale
    ix = np.floor(xs).astype(np.int64)
    iy = np.floor(ys).astype(np.int64)
    fx = _smooth(xs - ix).astype(np.float32)
    fy = _smooth(ys - iy).astype(np.float32)
    gx = np.arange(ix[0], ix[-1] + 2)
    gy = np.arange(iy[0], iy[-1] + 2)
    lattice = hash_uniform(seed, salt, gx[None, :], gy[:, None]).astype(np.float32)
    cx, cy = ix - gx[0], iy - gy[0]
    # Separable: interpolate along x on the small lattice, then along y with row gathers.
    along_x = lattice[:, cx] * (1 - fx) + lattice[:, cx + 1] * fx
    top = np.take(along_x, cy, axis=0)
    out = np.take(along_x, cy + 1, axis=0)
    out -= top
    out *= fy[:, None]
    out += top
    return out


def noise_points(x: np.ndarray, y: np.ndarray, scale: float, seed: int, salt: int) -> np.ndarray:
    """The field of :func:`noise_grid` evaluated at arbitrary level-0 points (float64).

    ``x``/``y`` are pixel-grid coordinates: pixel (i, j) of ``noise_grid`` is the point
    (x0 + i, y0 + j).
    """
    xs = (np.asarray(x, dtype=np.float64) + 0.5) / scale
    ys = (np.asarray(y, dtype=np.float64) + 0.5) / scale
    ix, iy = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = _smooth(xs - ix), _smooth(ys - iy)

    def lat(dx: int, dy: int) -> np.ndarray:
        return hash_uniform(seed, salt, ix + dx, iy + dy)

    top = lat(0, 0) * (1 - fx) + lat(1, 0) * fx
    bottom = lat(0, 1) * (1 - fx) + lat(1, 1) * fx
    return top * (1 - fy) + bottom * fy


def fractal_grid(
    x0: int,
    y0: int,
    width: int,
    height: int,
    scale: float,
    seed: int,
    salt: int,
    octaves: int = 3,
) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers (scale halving, weight halving), in [0, 1]."""
    total = np.zeros((height, width), np.float32)
    weight_sum = 0.0
    for o in range(octaves):
        w = 0.5**o
        total += w * noise_grid(x0, y0, width, height, scale / 2**o, seed, salt * 16 + o)
        weight_sum += w
    return total / weight_sum


def pixel_noise(
    x0: int, y0: int, width: int, height: int, seed: int, salt: int, channels: int = 1
) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise per global pixel and channel, (channels, h, w).

    Triangular distribution (sum of two uniforms): close enough to Gaussian for sensor
    noise and grain, and four 16-bit uniforms come out of each 64-bit hash.
    """
    xs = np.arange(x0, x0 + width, dtype=np.int64)
    ys = np.arange(y0, y0 + height, dtype=np.int64)
    out = np.empty((channels, height, width), np.float32)
    scale = np.float32(np.sqrt(6.0) / 65536.0)
    for c0 in range(0, channels, 2):
        bits = hash_uint64(seed, salt, c0, xs[None, :], ys[:, None])
        parts = [
            ((bits >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.float32) for k in range(4)
        ]
        out[c0] = (parts[0] + parts[1] - 65535.0) * scale
        if c0 + 1 < channels:
            out[c0 + 1] = (parts[2] + parts[3] - 65535.0) * scale
    return out


SENSOR_PERIOD = 509
"""Period (px) of :func:`sensor_noise`; prime, so it never lines up with tiles."""


@functools.lru_cache(maxsize=8)
def _noise_texture(seed: int, salt: int, channels: int) -> np.ndarray:
    tex = pixel_noise(0, 0, SENSOR_PERIOD, SENSOR_PERIOD, seed, salt, channels)
    tex.flags.writeable = False
    return tex


def sensor_noise(
    x0: int, y0: int, width: int, height: int, seed: int, salt: int, channels: int = 3
) -> np.ndarray:
    """:func:`pixel_noise` tiled with period ``SENSOR_PERIOD`` px: same statistics, much cheaper.

    A repeat every 509 px of i.i.d. grain is invisible, and the value is still a function
    of the global pixel, so tiles stay seamless.
    """
    tex = _noise_texture(seed, salt, channels)
    rows = np.arange(y0, y0 + height) % SENSOR_PERIOD
    cols = np.arange(x0, x0 + width) % SENSOR_PERIOD
    return np.take(np.take(tex, rows, axis=1), cols, axis=2)


def cell_points(
    x0: int, y0: int, width: int, height: int, cell: float, seed: int, salt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Jittered points of the Worley grid around a region: (px, py) 2-D level-0 arrays.

    Covers every cell overlapping the region plus a ring of one cell, i.e. every point
    that can be nearest or second-nearest to a pixel of the region.
    """
    ix0, ix1 = math.floor((x0 + 0.5) / cell), math.floor((x0 + width - 0.5) / cell)
    iy0, iy1 = math.floor((y0 + 0.5) / cell), math.floor((y0 + height - 0.5) / cell)
    gx = np.arange(ix0 - 1, ix1 + 2, dtype=np.int64)
    gy = np.arange(iy0 - 1, iy1 + 2, dtype=np.int64)
    px = (gx[None, :] + 0.1 + 0.8 * hash_uniform(seed, salt, gx[None, :], gy[:, None], 0)) * cell
    py = (gy[:, None] + 0.1 + 0.8 * hash_uniform(seed, salt, gx[None, :], gy[:, None], 1)) * cell
    return px, py


def cell_distances(
    x0: int, y0: int, width: int, height: int, cell: float, seed: int, salt: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Worley noise: distances (px) to the nearest and second-nearest jittered grid point.

    One point per ``cell`` x ``cell`` square of the global level-0 grid; useful for
    polygonal cells such as adipocytes (membrane where ``f2 - f1`` is small).

    Returns:
        f1, f2: (height, width) float32 distances in pixels.
        nearest: (height, width) flat index of the nearest point into the point table.
        points: (px, py) point table, 2-D arrays of level-0 coordinates.
    """
    xs = np.arange(x0, x0 + width, dtype=np.float64) + 0.5
    ys = np.arange(y0, y0 + height, dtype=np.float64) + 0.5
    ix = np.floor(xs / cell).astype(np.int64)
    iy = np.floor(ys / cell).astype(np.int64)
    gx = np.arange(ix[0] - 1, ix[-1] + 2)
    gy = np.arange(iy[0] - 1, iy[-1] + 2)
    px, py = cell_points(x0, y0, width, height, cell, seed, salt)
    # Squared distances in float32; columns are gathered on the small point table first so
    # the full-size gathers are whole-row copies.
    xs32 = xs.astype(np.float32)[None, :]
    ys32 = ys.astype(np.float32)[:, None]
    px32, py32 = px.astype(np.float32), py.astype(np.float32)
    f1 = np.full((height, width), np.inf, np.float32)
    f2 = np.full((height, width), np.inf, np.float32)
    nearest = np.zeros((height, width), np.int32)
    cx, cy = ix - gx[0], iy - gy[0]
    for dx in (-1, 0, 1):
        cols = cx + dx
        dx2 = (xs32 - px32[:, cols]) ** 2  # (len(gy), width)
        ppy = py32[:, cols]
        for dy in (-1, 0, 1):
            rows = cy + dy
            d = dx2[rows] + (ys32 - ppy[rows]) ** 2
            f2 = np.minimum(f2, np.maximum(f1, d))
            closer = d < f1
            nearest = np.where(closer, (rows * len(gx))[:, None] + cols[None, :], nearest)
            f1 = np.minimum(f1, d)
    return np.sqrt(f1), np.sqrt(f2), nearest, (px, py)
