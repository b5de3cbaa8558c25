"""Blend patch probabilities into the mask grid, holding only a band of rows in memory.

Patches arrive row-major (sorted by level-0 y, then x). A mask row whose centre
lies above the current patch row's top edge can receive no more contributions, so
it is finalised (weighted sums / weights, argmax) and released.

Memory for a 100k x 80k level-0 px slide at 0.25 µm/px, model at 0.5 µm/px, 224-px
patches, stride 112 (224 level-0 px), default mask downsample 56 (1786 x 1429 cells):
the band holds ``(classes + 1) * (ceil(448 / 56) + 2) * 1786 * 4`` bytes = 0.36 MB, the
uint8 label mask 2.6 MB, the zarr chunk-row buffer 3.7 MB. At ``--output-downsample 16``
(6250 x 5000 cells): band 3.8 MB, labels 31 MB; a full float32 accumulator would have
been 625 MB. Nothing ever exists at full resolution.
Probabilities go to a float16 zarr array, written one chunk-row at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pathda._types import IntPair
from pathda.segment.grid import WindowFunction, footprint_weights

RowSink = Callable[[int, np.ndarray], None]
"""Receives (first row, (C, n, W) float32 mean probabilities; all 0 where uncovered)."""

PROBS_CHUNK = 256
"""Rows and columns per zarr chunk of the probability grid."""


class ProbabilityStitcher:
    """Weighted overlap averaging of per-patch class probabilities.

    Args:
        shape: (height, width) of the mask grid in cells.
        num_classes: length of each probability vector.
        mask_downsample: level-0 pixels per mask cell.
        patch_l0: patch side in level-0 pixels.
        window: blending window (see ``grid.WINDOWS``).
        tissue: (height, width) bool; cells outside tissue are labelled 0 whatever the model says.
        sink: called with every finalised band of mean probabilities (e.g. a zarr writer).

    Attributes:
        labels: (height, width) uint8 argmax labels; 0 (normal) where no patch covered a cell.
        covered: (height, width) bool, True where at least one patch contributed.
    """

    def __init__(
        self,
        shape: IntPair,
        num_classes: int,
        mask_downsample: float,
        patch_l0: float,
        window: WindowFunction,
        tissue: np.ndarray,
        sink: RowSink | None = None,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.labels = np.zeros(self.shape, dtype=np.uint8)
        self.covered = np.zeros(self.shape, dtype=bool)
        self._cell = float(mask_downsample)
        self._patch = float(patch_l0)
        self._window = window
        self._tissue = tissue
        self._sink = sink
        # Rows one patch can touch past the first unfinished row, plus rounding slack.
        self._band_rows = math.ceil(patch_l0 / mask_downsample) + 2
        self._sums = np.zeros((num_classes, self._band_rows, self.shape[1]), np.float32)
        self._weights = np.zeros((self._band_rows, self.shape[1]), np.float32)
        self._band_start = 0
        self._last_y: float = -math.inf
        self._x_cache: dict[int, tuple[int, np.ndarray]] = {}

    def add(self, origins: np.ndarray, probs: np.ndarray) -> None:
        """Add a batch of patches.

        Args:
            origins: (B, 2) level-0 (x, y) patch origins, continuing the row-major order.
            probs: (B, C) class probabilities (rows sum to 1).
        """
        for (x, y), p in zip(origins.tolist(), np.asarray(probs, np.float32), strict=True):
            if y < self._last_y:
                raise ValueError("patches must arrive sorted by y (row-major)")
            if y > self._last_y:
                self._finalise_rows_before(math.ceil(y / self._cell - 0.5))
                self._last_y = y
                self._rows = footprint_weights(
                    y, self._patch, self._cell, self.shape[0], self._window
                )
            r0, wy = self._rows
            if r0 < self._band_start:  # only when resumed: those rows are finished
                r0, wy = self._band_start, wy[self._band_start - r0 :]
            c0, wx = self._columns(x)
            if not len(wy) or not len(wx):
                continue
            w2d = np.outer(wy, wx).astype(np.float32)
            rs = slice(r0 - self._band_start, r0 - self._band_start + len(wy))
            cs = slice(c0, c0 + len(wx))
            self._weights[rs, cs] += w2d
            self._sums[:, rs, cs] += p[:, None, None] * w2d

    def start_at(self, row: int) -> None:
        """Treat rows above ``row`` as finished (resuming; their labels are set by the caller).

        Patches may then start anywhere above ``row``; their contributions to finished
        rows are dropped, so feeding every patch that reaches ``row`` gives the same sums.
        """
        if self._band_start != 0 or self._last_y != -math.inf:
            raise ValueError("start_at must be called before any patch is added")
        self._band_start = int(row)

    def finish(self) -> np.ndarray:
        """Finalise every remaining row and return the label mask."""
        self._finalise_rows_before(self.shape[0])
        return self.labels

    def _columns(self, x: int) -> tuple[int, np.ndarray]:
        cols = self._x_cache.get(x)
        if cols is None:
            cols = footprint_weights(x, self._patch, self._cell, self.shape[1], self._window)
            self._x_cache[x] = cols
        return cols

    def _finalise_rows_before(self, row: int) -> None:
        row = min(row, self.shape[0])
        n = min(row - self._band_start, self._band_rows)
        if n <= 0:
            return
        start = self._band_start
        weights = self._weights[:n]
        covered = weights > 0
        mean = np.divide(
            self._sums[:, :n], weights, out=np.zeros_like(self._sums[:, :n]), where=covered
        )
        keep = covered & self._tissue[start : start + n]
        self.labels[start : start + n] = np.where(keep, mean.argmax(axis=0), 0)
        self.covered[start : start + n] = covered
        if self._sink is not None:
            self._sink(start, mean)
        # Shift the band up; rows between the band and ``row`` were never touched (all zero).
        self._sums[:, : self._band_rows - n] = self._sums[:, n:]
        self._sums[:, self._band_rows - n :] = 0
        self._weights[: self._band_rows - n] = self._weights[n:]
        self._weights[self._band_rows - n :] = 0
        self._band_start = max(row, start + n)


class ZarrProbabilityWriter:
    """A :data:`RowSink` storing mean probabilities as a (C, H, W) float16 zarr array.

    Rows are buffered per chunk-row so each chunk is written once. Uncovered cells stay 0.
    """

    def __init__(
        self,
        path: str | Path,
        num_classes: int,
        shape: IntPair,
        attributes: dict[str, Any],
        *,
        existing: bool = False,
    ) -> None:
        h, w = shape
        if existing:  # resuming: the array and its attributes were made by the first run
            self.array = zarr.open_array(str(path), mode="r+")
        else:
            self.array = self._create(path, num_classes, shape, attributes)
        self._rows = min(PROBS_CHUNK, h)
        self._block = -1
        self._buffer = np.zeros((num_classes, self._rows, w), np.float16)

    @staticmethod
    def _create(
        path: str | Path, num_classes: int, shape: IntPair, attributes: dict[str, Any]
    ) -> zarr.Array:
        h, w = shape
        return zarr.create_array(
            store=str(path),
            shape=(num_classes, h, w),
            chunks=(num_classes, min(PROBS_CHUNK, h), min(PROBS_CHUNK, w)),
            dtype="float16",
            fill_value=0,
            dimension_names=("class", "y", "x"),
            attributes=attributes,
        )

    def __call__(self, row: int, mean: np.ndarray) -> None:
        for offset in range(mean.shape[1]):
            block, r = divmod(row + offset, self._rows)
            if block != self._block:
                self.flush()
                self._block = block
            self._buffer[:, r] = mean[:, offset]

    def write_through(self, rows_done: int) -> None:
        """Write the buffered rows before ``rows_done`` now, keeping them buffered
        (the chunk-row is written again, whole, when it is complete)."""
        if self._block < 0:
            return
        start = self._block * self._rows
        stop = min(rows_done, start + self._rows, self.array.shape[1])
        if stop > start:
            self.array[:, start:stop] = self._buffer[:, : stop - start]

    def resume(self, rows_done: int) -> None:
        """Continue after ``rows_done`` finished rows already in the array (a resumed run)."""
        block, offset = divmod(rows_done, self._rows)
        if offset:
            self._block = block
            start = block * self._rows
            self._buffer[:, :offset] = self.array[:, start : start + offset]

    def flush(self) -> None:
        """Write the buffered chunk-row (call once more after the last rows)."""
        if self._block < 0:
            return
        start = self._block * self._rows
        stop = min(start + self._rows, self.array.shape[1])
        self.array[:, start:stop] = self._buffer[:, : stop - start]
        self._buffer[:] = 0
        self._block = -1
