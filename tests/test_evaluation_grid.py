"""Scoring-grid geometry: sizes, nearest-neighbour indices, aspect checks."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.errors import ScoreInputError
from pathda.evaluation.grid import (
    aspect_difference,
    grid_shape,
    nearest_indices,
    parse_size,
    size_matches,
)


def test_parse_size():
    assert parse_size("40000x30000") == (40000, 30000)
    assert parse_size(" 5 X 3 ") == (5, 3)
    for bad in ("40000", "0x5", "axb", "4x-3"):
        with pytest.raises(ScoreInputError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_grid_covers_partial_edge_pixels():
    assert grid_shape((400, 300), 16) == (19, 25)  # ceil(300/16), ceil(400/16)
    assert grid_shape((10, 10), 100) == (1, 1)


def test_nearest_indices_sample_pixel_centres():
    np.testing.assert_array_equal(nearest_indices(3, 4.0, 12), [2, 6, 10])
    np.testing.assert_array_equal(nearest_indices(4, 0.5, 2), [0, 0, 1, 1])
    # a source one pixel short is clipped, not read out of bounds
    np.testing.assert_array_equal(nearest_indices(3, 1.0, 2), [0, 1, 1])


def test_aspect_and_size_checks():
    assert aspect_difference((400, 300), (100, 75)) == pytest.approx(0)
    assert aspect_difference((400, 300), (100, 80)) == pytest.approx(1 / 15)  # (4/3) / (5/4) - 1
    assert size_matches((101, 75), (100.0, 75.0), 0.01)
    assert not size_matches((103, 75), (100.0, 75.0), 0.01)
