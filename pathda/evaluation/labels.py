"""Label arrays: validation against the BACH classes, and row blocks for bounded memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pathda.annotations.classmap import BACH_CLASSES
from pathda.errors import LabelRangeError

N_CLASSES = len(BACH_CLASSES.names)  # the BACH metric is defined on these four classes

# Pixels per block: about 1 Mi keeps each temporary within the CPU cache-friendly range
# and the memory use flat whatever the slide size.
BLOCK_PIXELS = 1 << 20


def row_blocks(shape: tuple[int, int], block_pixels: int = BLOCK_PIXELS) -> Iterator[slice]:
    """Yield row slices of a 2-D ``shape`` covering about ``block_pixels`` pixels each."""
    rows, cols = shape
    step = max(1, block_pixels // max(cols, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def as_label_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred`` and ``truth`` as 2-D integer arrays of one shape (views where possible).

    Raises:
        ValueError: shapes differ or dtypes are not integer (a programming error).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    for name, arr in (("pred", pred), ("truth", truth)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if pred.ndim != 2:
        cols = pred.shape[-1] if pred.ndim else 1
        pred, truth = pred.reshape(-1, cols), truth.reshape(-1, cols)
    return pred, truth


def check_labels(labels: np.ndarray, n_classes: int = N_CLASSES, what: str = "mask") -> None:
    """Raise ``LabelRangeError`` naming ``what`` if ``labels`` leaves 0..n_classes-1."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        names = ", ".join(f"{i} {name}" for i, name in enumerate(BACH_CLASSES.names[:n_classes]))
        raise LabelRangeError(
            f"{what}: label {bad} found; labels must be 0..{n_classes - 1} ({names})"
        )
