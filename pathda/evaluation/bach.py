"""The BACH Part B whole-slide segmentation score (Aresta et al., 2019), as pure numpy.

Labels: 0 normal, 1 benign, 2 in situ, 3 invasive. Over pixels i of one slide::

    s = 1 - sum_i |p_i - g_i| / sum_i max(g_i, 3 - g_i) * [p_i > 0 or g_i > 0]

The score is in [0, 1]: where a pixel counts, p in [0, 3] gives
``p - g <= 3 - g`` and ``g - p <= g``, so ``|p - g| <= max(g, 3 - g)``; where it
does not count, ``p = g = 0`` and its numerator term is 0 too. Hence
0 <= numerator <= denominator. When both slides are entirely normal the
denominator is 0 and the score is defined as 1 (nothing to find, nothing falsely found).

Both sums depend only on how many pixels have each (g, p) pair, so they are
computed from the confusion matrix: one pass over the pixels serves the score,
the accuracy and the Dice of every class.
"""

from __future__ import annotations

import numpy as np

from pathda.evaluation.confusion import confusion_matrix
from pathda.evaluation.labels import N_CLASSES

_LABELS = np.arange(N_CLASSES)
_TRUTH, _PRED = np.meshgrid(_LABELS, _LABELS, indexing="ij")  # [g, p] grids
_ERROR_WEIGHT = np.abs(_PRED - _TRUTH)
"""|p - g| for each (g, p): the numerator's term per pixel."""
_MAX_ERROR_WEIGHT = np.where(
    (_PRED > 0) | (_TRUTH > 0), np.maximum(_TRUTH, N_CLASSES - 1 - _TRUTH), 0
)
"""max(g, 3 - g) where p > 0 or g > 0, else 0: the denominator's term per pixel."""


def bach_terms_from_confusion(confusion: np.ndarray) -> tuple[int, int]:
    """Numerator and denominator of the BACH score from a 4 x 4 confusion matrix (rows = truth).

    Returns:
        ``(num, den)`` as Python ints, ``0 <= num <= den``.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.shape != (N_CLASSES, N_CLASSES):
        raise ValueError(f"BACH needs a {N_CLASSES} x {N_CLASSES} confusion matrix, got {cm.shape}")
    return int((cm * _ERROR_WEIGHT).sum()), int((cm * _MAX_ERROR_WEIGHT).sum())


def bach_terms(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """Numerator and denominator of the BACH score, summed over all pixels.

    Terms add up over tiles: the score of a slide cut into pieces is
    ``1 - sum(num) / sum(den)`` over its pieces. Memory stays bounded: pixels are
    counted in row blocks of about 1 Mi pixels.

    Args:
        pred: predicted labels 0..3, any integer dtype, any shape (e.g. (h, w) uint8).
        truth: true labels 0..3, same shape.

    Returns:
        ``(num, den)``: ``num = sum |p - g|`` and ``den = sum max(g, 3 - g)`` over
        pixels where ``p > 0`` or ``g > 0``; both Python ints, ``0 <= num <= den``.

    Raises:
        LabelRangeError: a label outside 0..3.
    """
    return bach_terms_from_confusion(confusion_matrix(pred, truth, N_CLASSES))


def score_from_terms(num: int, den: int) -> float:
    """``1 - num / den``; 1.0 when ``den == 0`` (all-normal truth and prediction)."""
    if den == 0:
        return 1.0
    return 1.0 - num / den


def bach_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """BACH Part B score of one slide, in [0, 1] (1 is perfect).

    When both ``pred`` and ``truth`` are entirely normal (label 0) the
    denominator is 0 and the score is defined as 1.0.

    Args:
        pred: predicted labels 0..3 (e.g. an (h, w) uint8 mask on the scoring grid).
        truth: true labels 0..3, same shape.

    Examples:
        >>> import numpy as np
        >>> bach_score(np.array([[0, 1, 2], [3, 3, 0]]), np.array([[0, 2, 2], [3, 0, 1]]))
        0.5833333333333333
    """
    return score_from_terms(*bach_terms(pred, truth))
