"""Pure geometry of the tile grid, tissue fractions and patch label rules.

Units: a grid cell (row r, column c) is a patch of ``patch_size`` pixels at the target
resolution; its top-left corner is at ``c * stride`` target pixels, i.e. level-0 pixel
``round(c * stride * downsample)``, where ``downsample`` = target µm/px / slide µm/px.
Rasters (tissue mask, label image) cover the slide at their own downsample ``d``: raster
pixel (i, j) covers level-0 x in [j*d, (j+1)*d), y in [i*d, (i+1)*d).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from pathda._types import IntPair
from pathda.errors import ConfigError

LabelRule = Literal["centre", "majority"]
REJECTED = -2  # label of a tile the majority rule drops (no class covers min_fraction)


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """A regular grid of patches over one slide.

    Attributes:
        downsample: level-0 pixels per target pixel.
        patch_size: patch side, target pixels.
        stride: step between patches, target pixels.
        rows, cols: grid cells that fit wholly inside the slide.
    """

    downsample: float
    patch_size: int
    stride: int
    rows: int
    cols: int

    @property
    def footprint(self) -> float:
        """Patch side in level-0 pixels."""
        return self.patch_size * self.downsample

    def origins(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 (x, y) int64 top-left corners of cells (rows, cols)."""
        step = self.stride * self.downsample
        x = np.rint(np.asarray(cols, np.float64) * step).astype(np.int64)
        y = np.rint(np.asarray(rows, np.float64) * step).astype(np.int64)
        return x, y


def make_grid(
    dimensions: IntPair, slide_mpp: float, target_mpp: float, patch_size: int, stride: int
) -> TileGrid:
    """Grid of ``patch_size`` px patches every ``stride`` px at ``target_mpp`` µm/px.

    Args:
        dimensions: slide (width, height) in level-0 pixels.
        slide_mpp: level-0 µm/px.
        target_mpp: µm/px of the patches.
        patch_size: patch side in pixels at ``target_mpp``.
        stride: step in pixels at ``target_mpp`` (< patch_size: overlapping patches).
    """
    if patch_size < 1 or stride < 1:
        raise ConfigError(f"patch size and stride must be >= 1 px, got {patch_size}, {stride}")
    if not (slide_mpp > 0 and target_mpp > 0):
        raise ConfigError(f"mpp must be positive, got slide {slide_mpp}, target {target_mpp}")
    downsample = target_mpp / slide_mpp
    # A small tolerance so float noise (e.g. 4 * 0.467 / 0.467) does not drop the last cell.
    width_t = math.floor(dimensions[0] / downsample + 1e-6)
    height_t = math.floor(dimensions[1] / downsample + 1e-6)

    def count(extent: int) -> int:
        return 0 if extent < patch_size else (extent - patch_size) // stride + 1

    return TileGrid(downsample, patch_size, stride, count(height_t), count(width_t))


def window_sums(
    values: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray, footprint: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of a raster under each patch, and the number of raster pixels summed.

    A patch covers level-0 [x, x + footprint) (same in y); its window is the raster
    pixels whose index rounds from those bounds (at least one pixel), clipped to the raster.

    Args:
        values: (H, W) raster at ``downsample`` (level-0 px per raster px).
        x, y: (n,) level-0 top-left corners.
        footprint: patch side in level-0 pixels.
    """
    h, w = values.shape
    integral = np.zeros((h + 1, w + 1), np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(values, axis=0, dtype=np.float64), axis=1)

    def span(start: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.rint(np.asarray(start, np.float64) / downsample).astype(np.int64)
        hi = np.rint((np.asarray(start, np.float64) + footprint) / downsample).astype(np.int64)
        hi = np.maximum(hi, lo + 1)
        return np.clip(lo, 0, limit), np.clip(hi, 0, limit)

    c0, c1 = span(x, w)
    r0, r1 = span(y, h)
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return total, (r1 - r0) * (c1 - c0)


def tissue_fractions(
    mask: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray, footprint: float
) -> np.ndarray:
    """(n,) float32 share of each patch covered by a boolean tissue ``mask`` (0..1)."""
    total, area = window_sums(mask.astype(np.uint8), downsample, x, y, footprint)
    return np.where(area > 0, total / np.maximum(area, 1), 0.0).astype(np.float32)


def centre_labels(
    labels: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray, footprint: float
) -> np.ndarray:
    """(n,) int16 label of the raster pixel under each patch centre."""
    h, w = labels.shape
    col = np.floor((np.asarray(x, np.float64) + footprint / 2) / downsample).astype(np.int64)
    row = np.floor((np.asarray(y, np.float64) + footprint / 2) / downsample).astype(np.int64)
    return labels[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)].astype(np.int16)


def majority_labels(
    labels: np.ndarray,
    downsample: float,
    x: np.ndarray,
    y: np.ndarray,
    footprint: float,
    n_classes: int,
    min_fraction: float,
) -> np.ndarray:
    """(n,) int16 most frequent class under each patch, or ``REJECTED`` when it covers
    less than ``min_fraction`` of the patch. Ties go to the lower class id."""
    counts = []
    area = None
    for k in range(n_classes):
        total, area = window_sums(labels == k, downsample, x, y, footprint)
        counts.append(total)
    if area is None or len(x) == 0:
        return np.zeros(len(x), np.int16)
    stacked = np.stack(counts)
    best = np.argmax(stacked, axis=0)
    share = stacked[best, np.arange(len(best))] / np.maximum(area, 1)
    return np.where(share + 1e-9 >= min_fraction, best, REJECTED).astype(np.int16)


def patch_labels(
    labels: np.ndarray,
    downsample: float,
    x: np.ndarray,
    y: np.ndarray,
    footprint: float,
    rule: LabelRule,
    n_classes: int,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Labels by ``rule`` ("centre" or "majority"); see ``centre_labels``/``majority_labels``."""
    if rule == "centre":
        return centre_labels(labels, downsample, x, y, footprint)
    if rule == "majority":
        return majority_labels(labels, downsample, x, y, footprint, n_classes, min_fraction)
    raise ConfigError(f"unknown label rule {rule!r}; choose centre or majority")


def block_order(rows: np.ndarray, cols: np.ndarray, block_cells: int) -> np.ndarray:
    """Permutation putting cells in read-block order.

    Blocks are ``block_cells`` x ``block_cells`` grid cells, visited row-major; cells
    inside a block are row-major too. Each block becomes one read of the slide.
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    return np.lexsort((cols, rows, cols // block_cells, rows // block_cells))


def block_cells_for(patch_size: int, stride: int, block_px: int, budget_bytes: int) -> int:
    """Grid cells per block side: a block spans about ``block_px`` target pixels and its
    patches take at most ``budget_bytes`` (uint8 RGB), and it is at least one cell."""
    by_size = max(1, block_px // stride)
    by_memory = max(1, math.isqrt(max(1, budget_bytes // (patch_size * patch_size * 3))))
    return min(by_size, by_memory)


def block_starts(rows: np.ndarray, cols: np.ndarray, block_cells: int) -> np.ndarray:
    """Indices where a new block begins in cells already in ``block_order``, plus the end."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if len(rows) == 0:
        return np.zeros(1, np.int64)
    key = (rows // block_cells) * (1 << 31) + cols // block_cells
    change = np.flatnonzero(np.diff(key)) + 1
    return np.concatenate([[0], change, [len(key)]]).astype(np.int64)
