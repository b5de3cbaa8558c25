"""BACH Part B score: hand-computed cases, bounds, and summing over blocks and tiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pathda.errors import LabelRangeError
from pathda.evaluation import bach_score, bach_terms
from pathda.evaluation.labels import row_blocks

RNG = np.random.default_rng(0)


def test_perfect_prediction_scores_one():
    truth = RNG.integers(0, 4, size=(40, 30), dtype=np.uint8)
    assert bach_score(truth.copy(), truth) == 1.0


def test_all_normal_prediction_of_all_invasive_truth_scores_zero():
    truth = np.full((5, 7), 3, dtype=np.uint8)
    pred = np.zeros_like(truth)
    # each pixel: |0 - 3| = 3 over max(3, 0) = 3
    assert bach_terms(pred, truth) == (3 * 35, 3 * 35)
    assert bach_score(pred, truth) == 0.0


def test_all_normal_against_all_normal_is_defined_as_one():
    zeros = np.zeros((4, 4), dtype=np.uint8)
    assert bach_terms(zeros, zeros) == (0, 0)
    assert bach_score(zeros, zeros) == 1.0


def test_mixed_2x3_example_by_hand():
    pred = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)
    truth = np.array([[0, 2, 2], [3, 0, 1]], dtype=np.uint8)
    # pixel (p, g): |p-g| / max(g, 3-g) if p>0 or g>0
    # (0,0): not counted       (1,2): 1 / 2      (2,2): 0 / 2
    # (3,3): 0 / 3             (3,0): 3 / 3      (0,1): 1 / 2
    # num = 1+0+0+3+1 = 5, den = 2+2+3+3+2 = 12, s = 1 - 5/12 = 7/12
    assert bach_terms(pred, truth) == (5, 12)
    assert bach_score(pred, truth) == pytest.approx(7 / 12)


def test_false_normal_costs_more_than_a_wrong_lesion_class():
    truth = np.full((2, 2), 3, dtype=np.uint8)
    assert bach_score(np.full_like(truth, 2), truth) == pytest.approx(1 - 1 / 3)
    assert bach_score(np.full_like(truth, 1), truth) == pytest.approx(1 - 2 / 3)
    assert bach_score(np.zeros_like(truth), truth) == 0.0


def test_each_counted_pixel_numerator_is_at_most_its_denominator():
    # The proof that s in [0, 1], checked over every (p, g) label pair.
    for p, g in itertools.product(range(4), repeat=2):
        num, den = bach_terms(np.array([[p]]), np.array([[g]]))
        assert 0 <= num <= den
        assert (den > 0) == (p > 0 or g > 0)


def test_random_scores_lie_in_unit_interval():
    for _ in range(20):
        pred = RNG.integers(0, 4, size=(16, 16))
        truth = RNG.integers(0, 4, size=(16, 16))
        assert 0.0 <= bach_score(pred, truth) <= 1.0


def test_terms_summed_over_tiles_equal_whole_slide_terms():
    pred = RNG.integers(0, 4, size=(60, 90), dtype=np.uint8)
    truth = RNG.integers(0, 4, size=(60, 90), dtype=np.uint8)
    tiles = [
        bach_terms(pred[r : r + 25, c : c + 40], truth[r : r + 25, c : c + 40])
        for r in range(0, 60, 25)
        for c in range(0, 90, 40)
    ]
    assert tuple(map(sum, zip(*tiles, strict=True))) == bach_terms(pred, truth)


def test_terms_over_several_row_blocks_match_a_direct_computation():
    # 1100 x 1000 exceeds one internal row block (1 Mi pixels).
    shape = (1100, 1000)
    assert len(list(row_blocks(shape))) > 1
    pred = RNG.integers(0, 4, size=shape, dtype=np.uint8)
    truth = RNG.integers(0, 4, size=shape, dtype=np.uint8)
    p, g = pred.astype(np.int64), truth.astype(np.int64)
    counted = (p > 0) | (g > 0)
    expected = (int(np.abs(p - g).sum()), int((np.maximum(g, 3 - g) * counted).sum()))
    assert bach_terms(pred, truth) == expected


def test_row_blocks_cover_every_row_once():
    blocks = list(row_blocks((10, 7), block_pixels=21))
    assert [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_labels_outside_0_to_3_are_refused():
    ok = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(LabelRangeError, match="label 4"):
        bach_terms(np.full((2, 2), 4, dtype=np.uint8), ok)
    with pytest.raises(LabelRangeError, match="label -1"):
        bach_terms(ok, np.full((2, 2), -1))


def test_shape_and_dtype_mismatches_are_programming_errors():
    with pytest.raises(ValueError, match="shape"):
        bach_terms(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        bach_terms(np.zeros((2, 2)), np.zeros((2, 2)))
