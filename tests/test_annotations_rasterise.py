"""Rasterising polygons: pixel-centre convention, holes, overlaps, windows, downsampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from pathda.annotations import (
    BACH_CLASSES,
    Annotation,
    annotation_bounds,
    check_within_slide,
    polygon_mask,
    rasterise,
)
from pathda.errors import AnnotationError, UnknownClassError


def square(label: str, x0: float, y0: float, x1: float, y1: float, holes=()) -> Annotation:
    return Annotation(label, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], holes)


def ring(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def random_polygon(rng: np.random.Generator, centre, radius, n=12) -> np.ndarray:
    """A star-shaped (simple) polygon with float vertices."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.3, 1.0, n) * radius
    return np.asarray(centre) + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def test_square_covers_its_pixel_count():
    out = rasterise([square("invasive", 3, 2, 13, 7)], BACH_CLASSES, (20, 20))
    assert out.dtype == np.uint8
    assert out.shape == (20, 20)
    assert (out == 3).sum() == 10 * 5
    assert (out[2:7, 3:13] == 3).all()


def test_shared_edge_is_claimed_once():
    a = square("benign", 0, 0, 5, 10)
    b = square("benign", 5, 0, 10, 10)
    assert (polygon_mask(a, (10, 10)) & polygon_mask(b, (10, 10))).sum() == 0
    assert (polygon_mask(a, (10, 10)) | polygon_mask(b, (10, 10))).all()


def test_hole_is_background():
    ann = square("benign", 0, 0, 10, 10, holes=(ring(2, 3, 6, 8),))
    out = rasterise([ann], BACH_CLASSES, (10, 10), background=0)
    assert (out == 1).sum() == 100 - 4 * 5
    assert (out[3:8, 2:6] == 0).all()


def test_background_value():
    out = rasterise([square("benign", 0, 0, 2, 2)], BACH_CLASSES, (4, 4), background=7)
    assert (out == 7).sum() == 12


def test_higher_severity_wins_regardless_of_order():
    big = square("benign", 0, 0, 10, 10)
    small = square("carcinoma in situ", 2, 2, 6, 6)
    for anns in ([big, small], [small, big]):
        out = rasterise(anns, BACH_CLASSES, (10, 10))
        assert (out == 2).sum() == 16
        assert (out == 1).sum() == 84


def test_severity_is_configurable():
    benign_on_top = BACH_CLASSES.__class__(
        BACH_CLASSES.names, BACH_CLASSES.colors, BACH_CLASSES.aliases, severity=(0, 9, 2, 3)
    )
    big = square("benign", 0, 0, 10, 10)
    small = square("in situ", 2, 2, 6, 6)
    out = rasterise([small, big], benign_on_top, (10, 10))
    assert (out == 1).all()


def test_same_class_overlap_is_a_union_not_xor():
    a = square("invasive", 0, 0, 6, 6)
    b = square("invasive", 3, 3, 9, 9)
    out = rasterise([a, b], BACH_CLASSES, (10, 10))
    assert (out == 3).sum() == 36 + 36 - 9


def test_matches_point_in_polygon_reference():
    rng = np.random.default_rng(0)
    anns = [Annotation("benign", random_polygon(rng, (40, 30), 25, n=20)) for _ in range(3)]
    d, origin, shape = 1.5, (3.25, -2.0), (50, 70)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    centres = np.stack([origin[0] + (cols + 0.5) * d, origin[1] + (rows + 0.5) * d], -1)
    for ann in anns:
        expected = MplPath(ann.exterior).contains_points(centres.reshape(-1, 2))
        got = polygon_mask(ann, shape, downsample=d, origin=origin)
        assert np.array_equal(got.ravel(), expected)


def test_window_equals_crop_of_full_raster():
    rng = np.random.default_rng(1)
    anns = [
        Annotation(label, random_polygon(rng, rng.uniform(20, 180, 2), rng.uniform(10, 60), 30))
        for label in ("benign", "in situ", "invasive", "benign", "in situ")
    ]
    d = 2.0
    full = rasterise(anns, BACH_CLASSES, (100, 100), downsample=d)
    for r0, c0, h, w in [(0, 0, 100, 100), (10, 20, 32, 32), (70, 75, 30, 25), (37, 5, 1, 60)]:
        window = rasterise(anns, BACH_CLASSES, (h, w), downsample=d, origin=(c0 * d, r0 * d))
        assert np.array_equal(window, full[r0 : r0 + h, c0 : c0 + w])


def test_window_outside_every_polygon_is_background():
    out = rasterise([square("benign", 0, 0, 10, 10)], BACH_CLASSES, (8, 8), origin=(500, 500))
    assert (out == 0).all()


def test_downsample_consistency_on_aligned_squares():
    anns = [square("benign", 0, 0, 64, 32), square("invasive", 16, 8, 48, 24)]
    fine = rasterise(anns, BACH_CLASSES, (32, 64))
    for d in (2, 4, 8):
        coarse = rasterise(anns, BACH_CLASSES, (32 // d, 64 // d), downsample=d)
        # Aligned squares: every coarse pixel equals the fine pixel at its centre.
        assert np.array_equal(coarse, fine[d // 2 :: d, d // 2 :: d])
        assert (coarse == 3).sum() * d * d == (fine == 3).sum()


def test_polygon_partly_outside_window_is_clipped():
    out = rasterise([square("benign", -5, -5, 5, 5)], BACH_CLASSES, (10, 10))
    assert (out == 1).sum() == 25


def test_unknown_label_lists_known_classes():
    with pytest.raises(UnknownClassError, match=r"normal, benign, in situ, invasive"):
        rasterise([square("Tumour", 0, 0, 2, 2)], BACH_CLASSES, (4, 4), source="a.xml")


def test_bad_arguments():
    with pytest.raises(AnnotationError, match="downsample"):
        rasterise([], BACH_CLASSES, (4, 4), downsample=0)


def test_clip_warn_bounds_warns_with_source():
    ann = square("benign", 90, 0, 120, 10)
    with pytest.warns(UserWarning, match=r"slide\.xml.*clipped"):
        rasterise(
            [ann], BACH_CLASSES, (10, 10), clip_warn_bounds=(0, 0, 100, 100), source="slide.xml"
        )


def test_annotation_bounds():
    anns = [square("benign", 1, 2, 3, 4), square("benign", -1, 5, 2, 9)]
    assert annotation_bounds(anns) == (-1.0, 2.0, 3.0, 9.0)
    with pytest.raises(AnnotationError):
        annotation_bounds([])


def test_check_within_slide():
    inside = square("benign", 10, 10, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_within_slide([inside], (100, 100), "ok.xml")
    with pytest.warns(UserWarning, match=r"part\.xml"):
        check_within_slide([inside, square("benign", 90, 90, 120, 95)], (100, 100), "part.xml")
    with pytest.raises(AnnotationError, match=r"out\.xml.*wholly outside"):
        check_within_slide([inside, square("benign", 200, 200, 300, 300)], (100, 100), "out.xml")


def test_diamond_with_vertices_on_pixel_centres_covers_its_area():
    # Vertices on pixel centres put centres exactly on edges and vertices; the half-open
    # rule must then give exactly the area (10 x 10 diagonals -> 50 px).
    diamond = Annotation("benign", [(5.5, 0.5), (10.5, 5.5), (5.5, 10.5), (0.5, 5.5)])
    mask = polygon_mask(diamond, (12, 12))
    assert mask.sum() == 50
    assert mask.sum(axis=1).tolist() == [0, 2, 4, 6, 8, 10, 8, 6, 4, 2, 0, 0]
