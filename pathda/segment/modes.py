"""Prediction modes of ``segment_slide``: what is read and run through the model, and how
the model's outputs become per-patch probabilities for the stitcher.

``patch`` (the reference) reads and classifies every patch on its own; ``dense`` reads
blocks of n x n patches and runs the classifier fully convolutionally over them
(``pathda.segment.dense``). Both hand the stitcher the plan's patches in the plan's
row-major order, so one loop (``inference``) drives either. A mode set up for a resumed
run starts at the batch (patch) or band (dense) holding patch ``first``, so its units
hold the same patches as an uninterrupted run's: same arithmetic, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pathda.checkpoint import InferenceCheckpoint
from pathda.segment.blocks import BlockLayout, block_dataset, grid_cells
from pathda.segment.config import SegmentConfig
from pathda.segment.dataset import SlidePatchDataset
from pathda.segment.dense import build_dense_classifier
from pathda.segment.plan import SegmentPlan
from pathda.segment.stitch import ProbabilityStitcher


class PredictionMode(Protocol):
    """What the shared prediction loop needs from a mode.

    Attributes:
        model: runs as ``model(x, *model_args)`` on a batch of units
            (``engine.predict_batches``).
        model_args: extra arguments of the model's forward.
        units: the units (patches or blocks) as a dataset read at the model mpp.
        batch_size: units per forward pass.
        start: patches of the plan finished before this run's first unit.
    """

    model: torch.nn.Module
    model_args: tuple[int, ...]
    units: SlidePatchDataset
    batch_size: int
    start: int

    def hand_over(
        self, indices: np.ndarray, probs: np.ndarray, stitcher: ProbabilityStitcher
    ) -> int:
        """Give the stitcher what units ``indices`` completed; return their patch count."""
        ...

    def finish(self, stitcher: ProbabilityStitcher) -> None:
        """Give the stitcher what is still held back."""
        ...


@dataclass(frozen=True)
class PatchMode:
    """Reference mode: every patch read and classified on its own.

    A unit is a patch; ``probs`` are (B, C), in batches of ``cfg.batch_size`` patches.
    """

    model: torch.nn.Module
    model_args: tuple[int, ...]
    units: SlidePatchDataset
    batch_size: int
    start: int
    origins: np.ndarray  # (N, 2) level-0 origins of this run's patches

    @classmethod
    def build(
        cls,
        slide_path: Path,
        model: torch.nn.Module,
        meta: InferenceCheckpoint,
        cfg: SegmentConfig,
        plan: SegmentPlan,
        first: int,
    ) -> PatchMode:
        start = first // cfg.batch_size * cfg.batch_size
        origins = plan.origins[start:]
        units = SlidePatchDataset(slide_path, origins, meta.patch_size, meta.mpp, cfg.slide_mpp)
        return cls(model, (), units, cfg.batch_size, start, origins)

    def hand_over(
        self, indices: np.ndarray, probs: np.ndarray, stitcher: ProbabilityStitcher
    ) -> int:
        stitcher.add(self.origins[indices], probs)
        return len(indices)

    def finish(self, stitcher: ProbabilityStitcher) -> None:
        pass  # nothing is held back


@dataclass
class DenseMode:
    """Dense mode: blocks of n x n patches through the fully convolutional classifier.

    A unit is a block; ``probs`` are (1, n, n, C). A block's probabilities are held until
    its band of ``n`` patch rows is complete, then the band's patches are handed over.
    """

    model: torch.nn.Module
    model_args: tuple[int, ...]
    units: SlidePatchDataset
    batch_size: int
    start: int
    origins: np.ndarray  # (N, 2) level-0 origins of this run's patches
    cells: np.ndarray  # (N, 2) their (row, column) in the patch grid
    band_of_patch: np.ndarray  # (N,) block row of each; non-decreasing (origins are row-major)
    blocks: np.ndarray  # (M, 2) (block row, block column) of the units, row-major
    patches_in_block: np.ndarray  # (M,) how many of this run's patches each block holds
    patches_per_side: int
    band: int  # block row being collected
    band_probs: dict[int, np.ndarray] = field(default_factory=dict)  # block column -> (n, n, C)

    @classmethod
    def build(
        cls,
        slide_path: Path,
        model: torch.nn.Module,
        meta: InferenceCheckpoint,
        cfg: SegmentConfig,
        plan: SegmentPlan,
        first: int,
    ) -> DenseMode:
        patch_px = meta.patch_size
        dense = build_dense_classifier(model, meta, plan.stride_px)
        scale = plan.patch_l0 / patch_px
        cells = grid_cells(plan.origins, plan.stride_px * scale)
        layout = BlockLayout.fit(
            cfg.tile_px, patch_px, plan.stride_px, cfg.margin_px, scale, int(cells.max()) + 1
        )
        n = layout.patches_per_side
        start = int(np.searchsorted(cells[:, 0] // n, cells[first, 0] // n))
        origins, cells = plan.origins[start:], cells[start:]
        blocks, patches_in_block = layout.blocks_with_patches(cells)
        units = block_dataset(slide_path, layout, blocks, meta.mpp, cfg.slide_mpp)
        return cls(
            dense, (cfg.margin_px,), units, 1, start, origins, cells, cells[:, 0] // n, blocks,
            patches_in_block, n, int(blocks[0, 0]),
        )  # fmt: skip

    def hand_over(
        self, indices: np.ndarray, probs: np.ndarray, stitcher: ProbabilityStitcher
    ) -> int:
        n_patches = 0
        for index, grid_probs in zip(indices.tolist(), probs, strict=True):
            block_row, block_col = self.blocks[index].tolist()
            if block_row != self.band:
                self._hand_over_band(stitcher)
                self.band = block_row
            self.band_probs[block_col] = grid_probs
            n_patches += int(self.patches_in_block[index])
        return n_patches

    def finish(self, stitcher: ProbabilityStitcher) -> None:
        self._hand_over_band(stitcher)

    def _hand_over_band(self, stitcher: ProbabilityStitcher) -> None:
        n = self.patches_per_side
        lo, hi = np.searchsorted(self.band_of_patch, [self.band, self.band + 1])
        rows, cols = self.cells[lo:hi, 0] - self.band * n, self.cells[lo:hi, 1]
        pairs = zip(rows.tolist(), cols.tolist(), strict=True)
        probs = np.stack([self.band_probs[c // n][r, c % n] for r, c in pairs])
        stitcher.add(self.origins[lo:hi], probs)
        self.band_probs.clear()


ModeBuilder = Callable[
    [Path, torch.nn.Module, InferenceCheckpoint, SegmentConfig, SegmentPlan, int], PredictionMode
]

PREDICTION_MODES: dict[str, ModeBuilder] = {"patch": PatchMode.build, "dense": DenseMode.build}
"""Builders by ``SegmentConfig.mode`` name (the names of ``config.MODES``)."""
