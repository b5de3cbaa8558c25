"""Confusion matrix, Dice, IoU and accuracy on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.evaluation import confusion_matrix, dice_per_class, iou_per_class, pixel_accuracy

PRED = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)
TRUTH = np.array([[0, 2, 2], [3, 0, 1]], dtype=np.uint8)


def test_confusion_rows_are_truth_columns_prediction():
    # truth 0 -> pred 0, 3; truth 1 -> pred 0; truth 2 -> pred 1, 2; truth 3 -> pred 3
    expected = [[1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(PRED, TRUTH), expected)


def test_dice_iou_accuracy_by_hand():
    cm = confusion_matrix(PRED, TRUTH)
    # class: TP, truth count, pred count -> Dice 2TP/(t+p), IoU TP/(t+p-TP)
    # 0: 1, 2, 2 -> 1/2, 1/3;  1: 0, 1, 1 -> 0, 0;  2: 1, 2, 1 -> 2/3, 1/2;  3: 1, 1, 2 -> 2/3, 1/2
    np.testing.assert_allclose(dice_per_class(cm), [1 / 2, 0, 2 / 3, 2 / 3])
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 0, 1 / 2, 1 / 2])
    assert pixel_accuracy(cm) == pytest.approx(3 / 6)


def test_class_absent_from_both_sides_is_nan_not_zero():
    pred = np.array([[0, 3, 3]])
    truth = np.array([[0, 3, 0]])
    dice = dice_per_class(confusion_matrix(pred, truth))
    assert np.isnan(dice[1])
    assert np.isnan(dice[2])
    np.testing.assert_allclose(dice[[0, 3]], [2 / 3, 2 / 3])
    assert np.isnan(iou_per_class(confusion_matrix(pred, truth))[1])


def test_confusion_of_tiles_adds_up():
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 4, size=(50, 40), dtype=np.uint8)
    truth = rng.integers(0, 4, size=(50, 40), dtype=np.uint8)
    parts = confusion_matrix(pred[:20], truth[:20]) + confusion_matrix(pred[20:], truth[20:])
    np.testing.assert_array_equal(parts, confusion_matrix(pred, truth))
    assert parts.sum() == pred.size


def test_empty_matrix_accuracy_is_nan():
    assert np.isnan(pixel_accuracy(np.zeros((4, 4), dtype=np.int64)))
