"""Tiles ("blocks") of the patch grid for dense inference: pure geometry and a block reader.

A block holds ``n x n`` patches of the sliding-window grid: patch (row r, column c) of
the slide starts at level-0 ``(round(c * stride_l0), round(r * stride_l0))`` (as in
``grid.patch_origins``), so block ``(R, C)`` holds grid rows ``R*n .. R*n + n - 1`` and
columns ``C*n .. C*n + n - 1``. It is read as one region at the model's mpp, of side
``(n - 1) * stride + patch + 2 * margin`` model px, starting ``margin`` model px above
and left of its first patch. Blocks without any tissue patch are never read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathda.errors import ConfigError
from pathda.segment.dataset import SlidePatchDataset


def grid_cells(origins: np.ndarray, stride_l0: float) -> np.ndarray:
    """(N, 2) (row, column) grid cells of level-0 patch origins made by ``grid.patch_origins``."""
    return np.rint(np.asarray(origins, np.float64)[:, ::-1] / stride_l0).astype(np.int64)


@dataclass(frozen=True)
class BlockLayout:
    """How the patch grid is cut into blocks (all sizes in px at the model mpp).

    Attributes:
        patch_px: patch side.
        stride_px: step between patches.
        margin_px: context read around the block's patches on every side.
        patches_per_side: ``n``, patches per block row and column.
        scale: level-0 px per model px.
    """

    patch_px: int
    stride_px: int
    margin_px: int
    patches_per_side: int
    scale: float

    @classmethod
    def fit(
        cls,
        tile_px: int,
        patch_px: int,
        stride_px: int,
        margin_px: int,
        scale: float,
        max_patches: int | None = None,
    ) -> BlockLayout:
        """The layout with the most patches per block whose read side is <= ``tile_px``;
        given the grid's extent ``max_patches``, the fewest blocks covering it, evenly sized
        (a 23-patch grid with room for 16 gets two blocks of 12, not 16 + 7 padded to 16)."""
        n = (tile_px - 2 * margin_px - patch_px) // stride_px + 1
        if n < 1:
            raise ConfigError(
                f"dense tile {tile_px} px cannot hold one {patch_px}-px patch with a "
                f"{margin_px}-px margin on each side; raise --tile to at least "
                f"{patch_px + 2 * margin_px}"
            )
        if max_patches:  # as few blocks as the tile allows, evenly sized: less read past the grid
            n = math.ceil(max_patches / math.ceil(max_patches / n))
        return cls(patch_px, stride_px, margin_px, int(n), float(scale))

    @property
    def side_px(self) -> int:
        """Side of a block read, model px."""
        return (self.patches_per_side - 1) * self.stride_px + self.patch_px + 2 * self.margin_px

    def blocks_with_patches(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, 2) (block row, block column) holding any of ``cells``, row-major, and
        (M,) how many of ``cells`` each holds."""
        return np.unique(cells // self.patches_per_side, axis=0, return_counts=True)

    def read_location(self, block: np.ndarray) -> tuple[int, int]:
        """Level-0 (x, y) top-left corner of a block's read (may lie outside the slide)."""
        first = np.asarray(block, np.float64) * self.patches_per_side * self.stride_px
        x, y = (first[::-1] - self.margin_px) * self.scale
        return round(x), round(y)


def block_dataset(
    slide_path: str | Path,
    layout: BlockLayout,
    blocks: np.ndarray,
    mpp: float,
    slide_mpp: float | None = None,
) -> SlidePatchDataset:
    """Blocks as a dataset of ``(index, (3, side, side) uint8)`` read at the model's ``mpp``.

    Args:
        slide_path: the slide file.
        layout: the block layout.
        blocks: (M, 2) (block row, block column) to read, in this order.
        mpp: µm/px the model was trained at.
        slide_mpp: level-0 µm/px forced on the slide, or None.
    """
    locations = np.array([layout.read_location(b) for b in blocks], np.int64).reshape(-1, 2)
    return SlidePatchDataset(slide_path, locations, layout.side_px, mpp, slide_mpp)
