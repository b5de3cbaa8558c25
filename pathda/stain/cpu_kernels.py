"""Fused CPU kernels for the batched stain normalisers: numba, one tile at a time, GIL released.

Why: on CPU, torch runs Macenko as ~40 tensor operations, each a full pass over the batch in
memory (~9 ms per 256 x 256 tile on 2 cores; the closed-form lasso alone costs ~2 ms). The
arithmetic is ~1 MFLOP per tile, so a few fused loops that keep a tile in cache, laid out as
planes so that LLVM vectorises them, are an order of magnitude faster. The kernels follow the
torch path step by step (same masks, same exact lasso, same percentiles, same fallbacks),
accumulate in float64 and store per-pixel intermediates in float32; the torch path stays the
reference and the CUDA implementation.

Tricks that replace expensive per-pixel work without changing results beyond float rounding:
- percentiles select the exact order statistics: a histogram over the values' range, one pass
  collecting the bins that hold the wanted ranks, and a sort of those only (no full sort);
- angles are ordered by a branch-free "diamond" pseudo-angle, monotone in ``atan2``; only the
  selected order statistics are turned into true angles;
- ``exp`` is a branch-free polynomial (relative error < 3e-7), so reconstruction vectorises.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

HIST_BINS = 4096
"""Bins of the order-statistic histograms (more bins: less to sort, more to scan)."""

_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""Lets LLVM vectorise and reorder sums; no 'nnan'/'ninf', the finiteness checks must hold."""

_FASTMATH_FINITE = _FASTMATH | {"nnan", "ninf"}
"""For loops whose inputs are finite by construction: min/max reductions vectorise too."""

_BACKGROUND = 10.0
"""Pseudo-angle stored for non-tissue pixels: above every real one (those lie in [-2, 2])."""


@njit(inline="always")
def _exp_neg(x):
    """``exp(-x)`` for ``0 <= x``, relative error < 3e-7, branch-free so loops vectorise.

    ``(exp(-x/8))^8`` with a degree-9 Taylor polynomial on [0, 0.75] (x is capped at 6, where
    255 * exp(-6) < 1 already truncates to 0).
    """
    y = min(x, 6.0) * 0.125
    p = 1.0 - y * (1.0 - y * (1 / 2 - y * (1 / 6 - y * (1 / 24 - y * (1 / 120 - y * (
        1 / 720 - y * (1 / 5040 - y * (1 / 40320 - y * (1 / 362880)))))))))  # fmt: skip
    p = p * p
    p = p * p
    return p * p


@njit(inline="always")
def _pseudo_angle(x, y):
    """A number in [-2, 2] that orders directions (x, y) as ``atan2(y, x)`` does."""
    q = y / max(abs(x) + abs(y), 1e-300)
    return q if x >= 0.0 else (2.0 - q if y >= 0.0 else -2.0 - q)


@njit(inline="always")
def _angle_of_pseudo(a):
    """``atan2`` of a direction with pseudo-angle ``a`` (inverse of ``_pseudo_angle``)."""
    if a > 1.0:
        q = 2.0 - a
        return math.atan2(q, -(1.0 - q))
    if a < -1.0:
        q = -2.0 - a
        return math.atan2(q, -(1.0 + q))
    return math.atan2(a, 1.0 - abs(a))


@njit(inline="always")
def _bin(value, vmin, vmax, scale, bins):
    """Histogram bin of ``value``; values above ``vmax`` (background) go to bin ``bins``."""
    if value > vmax:
        return bins
    return min(int((value - vmin) * scale), bins - 1)


@njit(nogil=True, cache=True, error_model="numpy")
def _histogram(values, vmin, vmax, hist):
    """Counts of ``values`` in ``len(hist) - 1`` equal bins over [vmin, vmax], plus overflow.

    The bin index is monotone in the value, so ranks can be located bin by bin.
    """
    hist[:] = 0
    bins = hist.shape[0] - 1
    scale = bins / (vmax - vmin) if vmax > vmin else 0.0
    for i in range(values.shape[0]):
        hist[_bin(values[i], vmin, vmax, scale, bins)] += 1


@njit(nogil=True, cache=True, error_model="numpy")
def _order_stats(values, n, q, vmin, vmax, hist, buf):
    """The two order statistics around rank ``q (n - 1)`` of the values in [vmin, vmax].

    ``hist`` must hold ``_histogram(values, vmin, vmax)``; ``buf`` is float scratch. Returns
    (lower, upper, fraction): ``lower + fraction * (upper - lower)`` is ``np.percentile``'s
    linear interpolation. Only the one or two bins holding the ranks are sorted.
    """
    position = q * (n - 1)
    k = min(max(math.floor(position), 0), n - 1)
    k1 = min(k + 1, n - 1)
    frac = position - k
    if vmax <= vmin:
        return np.float64(vmin), np.float64(vmin), frac
    bins = hist.shape[0] - 1
    scale = bins / (vmax - vmin)
    bk, bk1, below_k, total = -1, bins - 1, 0, 0
    for b in range(bins):
        if bk < 0 and total + hist[b] > k:
            bk, below_k = b, total
        if total + hist[b] > k1:
            bk1 = b
            break
        total += hist[b]
    m = 0
    for i in range(values.shape[0]):
        b = _bin(values[i], vmin, vmax, scale, bins)
        if bk <= b <= bk1:
            buf[m] = values[i]
            m += 1
    chosen = np.sort(buf[:m])
    return np.float64(chosen[k - below_k]), np.float64(chosen[k1 - below_k]), frac


@njit(nogil=True, cache=True, error_model="numpy")
def _od_planes(rgb, od_table, y_shares, dark_limit, od_threshold, od, tissue):
    """OD planes ``(3, P)`` and tissue weights (1/0) of one tile; (lightness, tissue) counts."""
    n_light = 0
    n_tissue = 0
    for p in range(rgb.shape[0]):
        r, g, b = rgb[p, 0], rgb[p, 1], rgb[p, 2]
        light = y_shares[r] + y_shares[256 + g] + y_shares[512 + b] < dark_limit
        o0, o1, o2 = od_table[r], od_table[g], od_table[b]
        od[0, p], od[1, p], od[2, p] = o0, o1, o2
        keep = light and (od_threshold <= 0.0 or min(o0, o1, o2) > od_threshold)
        tissue[p] = 1.0 if keep else 0.0
        n_light += light
        n_tissue += keep
    return n_light, n_tissue


@njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _tissue_covariance(od, tissue, n):
    """Sample covariance ``(3, 3)`` of the ``n`` tissue pixels' OD (float64 moments)."""
    s0 = s1 = s2 = s00 = s01 = s02 = s11 = s12 = s22 = 0.0
    for p in range(od.shape[1]):
        w = np.float64(tissue[p])
        o0, o1, o2 = od[0, p] * w, od[1, p] * w, od[2, p] * w
        s0 += o0
        s1 += o1
        s2 += o2
        s00 += o0 * o0
        s01 += o0 * o1
        s02 += o0 * o2
        s11 += o1 * o1
        s12 += o1 * o2
        s22 += o2 * o2
    sums = np.array([s0, s1, s2])
    second = np.array([[s00, s01, s02], [s01, s11, s12], [s02, s12, s22]])
    return (second - np.outer(sums, sums) / n) / (n - 1)


@njit(nogil=True, cache=True, fastmath=_FASTMATH_FINITE, error_model="numpy")
def _pseudo_angles(od, tissue, plane, angles):
    """Pseudo-angles of the OD in ``plane`` ``(3, 2)``; background gets ``_BACKGROUND``.

    Branches are written as 0/1 blends (exact for finite values) so the loop vectorises.
    """
    x0, x1, x2 = plane[0, 0], plane[1, 0], plane[2, 0]
    y0, y1, y2 = plane[0, 1], plane[1, 1], plane[2, 1]
    for p in range(od.shape[1]):
        o0, o1, o2 = np.float64(od[0, p]), np.float64(od[1, p]), np.float64(od[2, p])
        x = o0 * x0 + o1 * x1 + o2 * x2
        y = o0 * y0 + o1 * y1 + o2 * y2
        q = y / max(abs(x) + abs(y), 1e-300)
        right, up = np.float64(x >= 0.0), np.float64(y >= 0.0)
        a = right * q + (1.0 - right) * (up * (2.0 - q) + (1.0 - up) * (-2.0 - q))
        t = np.float64(tissue[p])
        angles[p] = t * a + (1.0 - t) * _BACKGROUND


@njit(nogil=True, cache=True, error_model="numpy")
def _range(values, above):
    """(min, max) of the ``values`` that are not above ``above`` (+inf for all)."""
    low, high = np.inf, -np.inf
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        if v <= above:
            low = min(low, v)
            high = max(high, v)
    return low, high


@njit(nogil=True, cache=True, fastmath=_FASTMATH_FINITE, error_model="numpy")
def _lasso(od, weights, offsets, norms, conc):
    """Exact non-negative two-stain lasso per pixel (see ``stain_concentrations``).

    ``weights`` ``(4, 3)`` and ``offsets`` ``(4,)``: rows 0-1 one stain alone, rows 2-3 both.
    Writes ``conc`` ``(2, P)``. The case split is written as 0/1 blends so the loop vectorises.
    """
    # Scalars, not array reads, inside the loop: LLVM cannot prove they do not alias ``conc``.
    w00, w01, w02, f0 = weights[0, 0], weights[0, 1], weights[0, 2], offsets[0]
    w10, w11, w12, f1 = weights[1, 0], weights[1, 1], weights[1, 2], offsets[1]
    w20, w21, w22, f2 = weights[2, 0], weights[2, 1], weights[2, 2], offsets[2]
    w30, w31, w32, f3 = weights[3, 0], weights[3, 1], weights[3, 2], offsets[3]
    n0, n1 = norms[0], norms[1]
    for p in range(od.shape[1]):
        o0, o1, o2 = np.float64(od[0, p]), np.float64(od[1, p]), np.float64(od[2, p])
        a0 = max(o0 * w00 + o1 * w01 + o2 * w02 - f0, 0.0)
        a1 = max(o0 * w10 + o1 * w11 + o2 * w12 - f1, 0.0)
        b0 = o0 * w20 + o1 * w21 + o2 * w22 - f2
        b1 = o0 * w30 + o1 * w31 + o2 * w32 - f3
        both = np.float64((b0 > 0.0) & (b1 > 0.0))
        first = np.float64(a0 * n0 >= a1 * n1)  # a lone stain's objective is -(|s| c)^2 / 2
        conc[0, p] = both * b0 + (1.0 - both) * first * a0
        conc[1, p] = both * b1 + (1.0 - both) * (1.0 - first) * a1


@njit(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def _reconstruct_plane(conc, t0, t1, plane):
    """One RGB channel, ``floor(255 exp(-(c0 t0 + c1 t1)))`` clamped to [0, 255], as uint8."""
    for p in range(conc.shape[1]):
        x = max(np.float64(conc[0, p]) * t0 + np.float64(conc[1, p]) * t1, 0.0)
        plane[p] = np.int32(min(255.0 * _exp_neg(x), 255.0))


@njit(nogil=True, cache=True, error_model="numpy")
def _interleave(planes, dst):
    for p in range(dst.shape[0]):
        dst[p, 0], dst[p, 1], dst[p, 2] = planes[0, p], planes[1, p], planes[2, p]


@njit(nogil=True, cache=True, error_model="numpy")
def _lasso_weights(stains, regulariser):
    """Weights ``(4, 3)``, offsets ``(4,)`` and row norms ``(2,)`` of the two-stain lasso."""
    g00 = max(stains[0] @ stains[0], 1e-12)
    g11 = max(stains[1] @ stains[1], 1e-12)
    g01 = stains[0] @ stains[1]
    det = max(g00 * g11 - g01 * g01, 1e-12)
    weights = np.empty((4, 3))
    weights[0] = stains[0] / g00
    weights[1] = stains[1] / g11
    weights[2] = (g11 * stains[0] - g01 * stains[1]) / det
    weights[3] = (g00 * stains[1] - g01 * stains[0]) / det
    lam = regulariser
    offsets = np.array([lam / g00, lam / g11, lam * (g11 - g01) / det, lam * (g00 - g01) / det])
    return weights, offsets, np.array([math.sqrt(g00), math.sqrt(g11)])


@njit(nogil=True, cache=True, error_model="numpy")
def _macenko_stains(od, tissue, n_tissue, angular_q, angles, hist, buf):
    """Stain matrix ``(2, 3)`` (unit rows, H first) and whether the tissue spans a plane."""
    stains = np.zeros((2, 3))
    evals, evecs = np.linalg.eigh(_tissue_covariance(od, tissue, n_tissue))
    if not (evals[2] > 0 and evals[1] > 1e-3 * evals[2]):
        return stains, False
    # Plane of the two leading eigenvectors, each with a non-negative red component.
    plane = np.empty((3, 2))
    for k in range(2):
        vec = evecs[:, 2 - k]
        plane[:, k] = -vec if vec[0] < 0 else vec
    _pseudo_angles(od, tissue, plane, angles)
    amin, amax = _range(angles, _BACKGROUND - 1)
    _histogram(angles, amin, amax, hist)
    for e in range(2):
        q = 1.0 - angular_q if e == 0 else angular_q
        low, high, frac = _order_stats(angles, n_tissue, q, amin, amax, hist, buf)
        low, high = _angle_of_pseudo(low), _angle_of_pseudo(high)
        angle = low + frac * (high - low)
        stains[e] = math.cos(angle) * plane[:, 0] + math.sin(angle) * plane[:, 1]
    if stains[0, 0] < stains[1, 0]:  # haematoxylin (the larger red OD) first
        stains = stains[::-1].copy()
    for e in range(2):
        stains[e] /= max(math.sqrt(stains[e] @ stains[e]), 1e-12)
    return stains, True


@njit(nogil=True, cache=True, error_model="numpy")
def macenko_tiles(
    tiles,
    out,
    fallback,
    od_table,
    y_shares,
    dark_limit,
    ref_stains,
    ref_max,
    min_tissue_fraction,
    od_threshold,
    angular_q,
    concentration_q,
    regulariser,
    max_cos,
    max_scale,
):
    """Macenko-normalise uint8 tiles ``(N, P, 3)`` into ``out``; ``fallback[i]`` marks copies.

    Mirrors ``MacenkoNormaliser``'s torch path (``macenko_stain_matrix``,
    ``StainSeparationNormaliser._separate`` and ``_reconstruct``) with its fallback rules.
    """
    n_px = tiles.shape[1]
    od = np.empty((3, n_px), np.float32)
    tissue = np.empty(n_px, np.float32)
    angles = np.empty(n_px, np.float32)
    conc = np.empty((2, n_px), np.float32)
    planes = np.empty((3, n_px), np.uint8)
    buf = np.empty(n_px, np.float32)
    hist = np.empty(HIST_BINS + 1, np.int64)
    for t in range(tiles.shape[0]):
        fallback[t] = True
        n_light, n_tissue = _od_planes(
            tiles[t], od_table, y_shares, dark_limit, od_threshold, od, tissue
        )
        if n_light < 2 or n_light < min_tissue_fraction * n_px or n_tissue < 2:
            continue
        stains, spans_plane = _macenko_stains(od, tissue, n_tissue, angular_q, angles, hist, buf)
        if not spans_plane:
            continue
        cos_angle = abs(stains[0] @ stains[1])
        if not (cos_angle < max_cos and np.isfinite(stains).all()):
            continue
        weights, offsets, norms = _lasso_weights(stains, regulariser)
        _lasso(od, weights, offsets, norms, conc)
        max_conc = np.empty(2)
        for k in range(2):
            low, high = _range(conc[k], np.inf)
            _histogram(conc[k], low, high, hist)
            low, high, frac = _order_stats(conc[k], n_px, concentration_q, low, high, hist, buf)
            max_conc[k] = low + frac * (high - low)
        scale = ref_max / max_conc
        if not ((scale >= 1 / max_scale) & (scale <= max_scale)).all():
            continue
        for c in range(3):
            t0, t1 = scale[0] * ref_stains[0, c], scale[1] * ref_stains[1, c]
            _reconstruct_plane(conc, t0, t1, planes[c])
        _interleave(planes, out[t])
        fallback[t] = False
    for t in range(tiles.shape[0]):  # tiles that fall back are returned unchanged
        if fallback[t]:
            out[t] = tiles[t]


@njit(nogil=True, cache=True)
def count_lab_levels(lab, hist):
    """``hist[i, c, level]``: pixel counts of 8-bit LAB tiles ``(N, P, 3)``; hist is zeroed."""
    hist[:] = 0
    for t in range(lab.shape[0]):
        for p in range(lab.shape[1]):
            hist[t, 0, lab[t, p, 0]] += 1
            hist[t, 1, lab[t, p, 1]] += 1
            hist[t, 2, lab[t, p, 2]] += 1


@njit(nogil=True, cache=True)
def apply_level_tables(lab, tables, out):
    """``out[i, p, c] = tables[i, c, lab[i, p, c]]`` for uint8 ``(N, P, 3)`` tiles."""
    for t in range(lab.shape[0]):
        for p in range(lab.shape[1]):
            out[t, p, 0] = tables[t, 0, lab[t, p, 0]]
            out[t, p, 1] = tables[t, 1, lab[t, p, 1]]
            out[t, p, 2] = tables[t, 2, lab[t, p, 2]]


_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _executor(workers: int) -> ThreadPoolExecutor:
    """A thread pool of ``workers`` threads, rebuilt after a fork (DataLoader workers)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != workers:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, "pathda-stain"))
        return _pool[2]


def run_over_tiles(kernel: Callable, workers: int, *arrays: np.ndarray, args: tuple = ()) -> None:
    """Call ``kernel(*slices, *args)`` on ``workers`` contiguous slices of the tile arrays.

    The kernels release the GIL, so the slices run in parallel on the pool's threads.
    """
    n = arrays[0].shape[0]
    workers = max(1, min(workers, n))
    if workers == 1:
        kernel(*arrays, *args)
        return
    bounds = np.linspace(0, n, workers + 1).astype(int)
    pool = _executor(workers)
    futures = [
        pool.submit(kernel, *(a[lo:hi] for a in arrays), *args)
        for lo, hi in itertools.pairwise(bounds)
    ]
    for future in futures:
        future.result()
