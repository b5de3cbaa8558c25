"""Confusion matrix and the per-class overlap scores derived from it (pure numpy)."""

from __future__ import annotations

import numpy as np

from pathda.evaluation.labels import N_CLASSES, as_label_pair, check_labels, row_blocks


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Pixel counts per (true, predicted) label pair.

    Args:
        pred: predicted labels 0..n_classes-1, any integer dtype and shape.
        truth: true labels, same shape.
        n_classes: number of labels.

    Returns:
        (n_classes, n_classes) int64 array; rows are the truth, columns the
        prediction. Matrices of tiles or slides add up.

    Raises:
        LabelRangeError: a label outside 0..n_classes-1.
    """
    pred, truth = as_label_pair(pred, truth)
    n_pairs = n_classes * n_classes
    code_type = np.uint8 if n_pairs <= 256 else np.int64
    counts = np.zeros(n_pairs, dtype=np.int64)
    for rows in row_blocks(pred.shape):
        p, g = pred[rows], truth[rows]
        check_labels(p, n_classes, "prediction")
        check_labels(g, n_classes, "truth")
        code = g.astype(code_type) * code_type(n_classes) + p.astype(code_type)
        # A few SIMD equality counts beat np.bincount (which widens every pixel to intp)
        # for the 16 BACH label pairs.
        if n_pairs <= 64:
            counts += [np.count_nonzero(code == k) for k in range(n_pairs)]
        else:
            counts += np.bincount(code.ravel(), minlength=n_pairs)
    return counts.reshape(n_classes, n_classes)


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice ``2 TP / (2 TP + FP + FN)`` per class from a confusion matrix (rows = truth).

    Returns:
        float64 array of length n_classes; NaN for a class absent from both truth
        and prediction (the score is undefined there, not perfect nor zero).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * tp / (cm.sum(axis=0) + cm.sum(axis=1))


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union ``TP / (TP + FP + FN)`` per class (rows = truth).

    Returns:
        float64 array of length n_classes; NaN for a class absent from both sides.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (cm.sum(axis=0) + cm.sum(axis=1) - tp)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Fraction of pixels whose predicted label equals the true one; NaN for an empty matrix."""
    cm = np.asarray(confusion)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean per-class recall over the classes present in the truth (rows); NaN if none.

    Unlike ``pixel_accuracy`` it does not reward calling every rare-class sample the
    majority class.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))
