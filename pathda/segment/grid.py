"""Sliding-window geometry and blending weights: pure functions, no I/O.

Three pixel grids meet here:

* level 0 of the slide (``slide mpp`` µm/px), where patch origins live;
* the model grid (``model mpp`` µm/px), where a patch is ``patch_size`` px wide;
  one model pixel is ``model_mpp / slide_mpp`` level-0 pixels;
* the mask grid, one cell per ``mask_downsample`` level-0 pixels, where patch
  probabilities are blended and labels are written.

A patch classifier gives one probability vector per patch. It is spread over the
mask cells whose *centres* lie inside the patch footprint, each weighted by a
separable window (uniform or Gaussian), and every cell ends as the weighted mean
of the patches that cover it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pathda._types import IntPair
from pathda.errors import ConfigError
from pathda.registry import Registry

WindowFunction = Callable[[np.ndarray], np.ndarray]
"""Maps relative positions u in [0, 1) across a patch to positive weights."""

# Gaussian sigma as a fraction of the patch side. A patch label describes the whole
# patch, so the window is wider than nnU-Net's 1/8: the edge weight is exp(-2) ~ 0.14.
_GAUSSIAN_SIGMA = 0.25

WINDOWS: Registry[WindowFunction] = Registry("blending window")
"""Blending windows by name; every weight is > 0 so each covered cell gets a mean."""


@WINDOWS.register("uniform")
def uniform_window(u: np.ndarray) -> np.ndarray:
    """Weight 1 everywhere."""
    return np.ones_like(u, dtype=np.float64)


@WINDOWS.register("gaussian")
def gaussian_window(u: np.ndarray) -> np.ndarray:
    """Gaussian centred on the patch, sigma ``_GAUSSIAN_SIGMA`` of its side."""
    return np.exp(-0.5 * ((u - 0.5) / _GAUSSIAN_SIGMA) ** 2)


def get_window(name: str) -> WindowFunction:
    """The window registered as ``name``; unknown names list the valid ones."""
    return WINDOWS.get(name)


def patch_origins(slide_size: IntPair, patch_l0: float, stride_l0: float) -> np.ndarray:
    """Top-left corners of a sliding window covering the whole slide, row-major.

    Args:
        slide_size: (width, height) of level 0 in pixels.
        patch_l0: patch side in level-0 pixels (may be fractional after resampling).
        stride_l0: step between patches in level-0 pixels, > 0 and <= ``patch_l0``.

    Returns:
        (N, 2) int64 (x, y) level-0 origins sorted by y, then x. The last column and
        row may stick out of the slide (reads there are white), so every level-0
        pixel lies in at least one patch.
    """
    if not 0 < stride_l0 <= patch_l0:
        raise ConfigError(f"stride ({stride_l0:g} px) must be in (0, patch size {patch_l0:g} px]")
    axes = [_axis_starts(int(n), patch_l0, stride_l0) for n in slide_size]
    ys, xs = np.meshgrid(axes[1], axes[0], indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _axis_starts(length: int, patch: float, stride: float) -> np.ndarray:
    steps = max(0, math.ceil((length - patch) / stride - 1e-9)) + 1
    return np.round(np.arange(steps) * stride).astype(np.int64)


def mask_shape(slide_size: IntPair, mask_downsample: int) -> IntPair:
    """(height, width) of the mask grid covering ``slide_size`` (w, h) at ``mask_downsample``."""
    w, h = slide_size
    return math.ceil(h / mask_downsample), math.ceil(w / mask_downsample)


def grid_memory_bytes(shape: tuple[int, int], n_classes: int) -> int:
    """Working memory of an output grid of ``shape`` cells, for refusing absurd ones early.

    Per cell: the uint8 labels, the coverage and tissue masks (1 byte each), one bool mask
    per class while regions are traced for export, and a float32 per class of headroom for
    the blended band and the overlay.
    """
    per_cell = 3 + n_classes * (1 + 4)
    return int(shape[0]) * int(shape[1]) * per_cell


def default_mask_downsample(stride_l0: float, cells_per_stride: int = 4) -> int:
    """Level-0 pixels per mask cell: ``cells_per_stride`` cells per stride step, at least 1.

    One cell per stride would make blocky regions; four lets the Gaussian window
    interpolate between neighbouring patch predictions. For a 0.25 µm/px slide
    read at 1 µm/px with 224-px patches and stride 112 (448 level-0 px), this gives
    112 level-0 px (28 µm) per cell: a 100k x 80k slide becomes a 893 x 715 mask.
    """
    return max(1, round(stride_l0 / cells_per_stride))


def footprint_weights(
    start_l0: float, length_l0: float, cell_l0: float, n_cells: int, window: WindowFunction
) -> tuple[int, np.ndarray]:
    """1-D weights of the mask cells whose centres lie in ``[start, start + length)``.

    Args:
        start_l0: patch start in level-0 pixels.
        length_l0: patch side in level-0 pixels.
        cell_l0: mask cell side in level-0 pixels (the mask downsample).
        n_cells: cells along this axis of the mask (cells beyond it are cut off).
        window: blending window evaluated at each centre's relative position.

    Returns:
        (first cell index, float64 weights); the weights may be empty at the slide edge.
    """
    first = max(0, math.ceil(start_l0 / cell_l0 - 0.5))
    stop = min(n_cells, math.ceil((start_l0 + length_l0) / cell_l0 - 0.5))
    if stop <= first:
        return first, np.zeros(0)
    centres = (np.arange(first, stop) + 0.5) * cell_l0
    return first, window((centres - start_l0) / length_l0)


def resample_nearest(
    mask: np.ndarray, src_downsample: float, dst_shape: IntPair, dst_downsample: float
) -> np.ndarray:
    """Sample a coarse mask at the centres of another grid's cells (nearest neighbour).

    Args:
        mask: (h, w) array, one pixel per ``src_downsample`` level-0 pixels.
        src_downsample: level-0 pixels per source pixel.
        dst_shape: (height, width) of the destination grid.
        dst_downsample: level-0 pixels per destination cell.
    """
    rows = _nearest_index(dst_shape[0], dst_downsample, src_downsample, mask.shape[0])
    cols = _nearest_index(dst_shape[1], dst_downsample, src_downsample, mask.shape[1])
    return mask[np.ix_(rows, cols)]


def _nearest_index(n: int, dst_ds: float, src_ds: float, src_n: int) -> np.ndarray:
    centres = (np.arange(n) + 0.5) * dst_ds
    return np.clip(np.floor(centres / src_ds).astype(np.int64), 0, src_n - 1)


def cell_sides_in_slide(n_cells: int, cell_l0: float, length_l0: int) -> np.ndarray:
    """Level-0 length of each mask cell along one axis that lies inside ``[0, length_l0)``.

    The last cell of a mask usually sticks out of the slide (``mask_shape`` rounds up);
    its side is cut at the slide's edge, and cells wholly outside get 0.
    """
    starts = np.arange(n_cells, dtype=np.float64) * cell_l0
    return np.clip(float(length_l0) - starts, 0.0, float(cell_l0))


def label_areas_l0(
    labels: np.ndarray,
    n_classes: int,
    mask_downsample: float,
    slide_size: IntPair,
    where: np.ndarray | None = None,
    block_cells: int = 1 << 20,
) -> np.ndarray:
    """Level-0 px² of each class in a label mask, counting only the part inside the slide.

    Args:
        labels: (height, width) class ids, one cell per ``mask_downsample`` level-0 px.
        n_classes: length of the result (ids >= it are not counted).
        mask_downsample: level-0 pixels per mask cell.
        slide_size: (width, height) of level 0 in pixels; cells are clipped to it, so the
            padding of the last row and column never counts, however coarse the mask.
        where: optional (height, width) bool; cells where it is False are not counted.
        block_cells: cells per block of rows (bounds the float64 temporaries).

    Returns:
        (n_classes,) float64 areas in level-0 px²; their sum is at most width x height.
    """
    heights = cell_sides_in_slide(labels.shape[0], mask_downsample, slide_size[1])
    widths = cell_sides_in_slide(labels.shape[1], mask_downsample, slide_size[0])
    areas = np.zeros(n_classes, dtype=np.float64)
    step = max(1, block_cells // max(labels.shape[1], 1))
    for top in range(0, labels.shape[0], step):
        rows = slice(top, top + step)
        ids = labels[rows].astype(np.int64)
        weight = heights[rows, None] * widths[None, :]
        keep = ids < n_classes
        if where is not None:
            keep &= where[rows]
        areas += np.bincount(ids[keep], weights=weight[keep], minlength=n_classes)[:n_classes]
    return areas
