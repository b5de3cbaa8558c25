"""Lenient reading: line regions skipped, self-crossing polygons repaired, empty files flagged."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from shapely.geometry import Polygon

from pathda.annotations import BACH_CLASSES, rasterise, read_annotations
from pathda.annotations.repair import repair_annotations
from pathda.errors import AllRegionsSkippedWarning, AnnotationError

SQUARE = [(0, 0), (40, 0), (40, 40), (0, 40)]
BOWTIE = [(0, 0), (40, 40), (40, 0), (0, 40)]  # crosses itself at (20, 20)
# An outline that runs around a square and then doubles back over part of it: even-odd
# filling would leave the doubly enclosed 10 x 20 strip empty.
LOOP = [(0, 0), (40, 0), (40, 40), (10, 40), (10, -10), (20, -10), (20, 20), (0, 20)]


def _xml(*regions: tuple[str, str, list]) -> str:
    body = ""
    for text, kind, points in regions:
        vertices = "".join(f"<Vertex X='{x}' Y='{y}'/>" for x, y in points)
        body += f"<Region Type='{kind}' Text='{text}'><Vertices>{vertices}</Vertices></Region>"
    return f"<Annotations><Annotation><Regions>{body}</Regions></Annotation></Annotations>"


def _geojson(*rings: list) -> str:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[*map(list, r), list(r[0])]]},
            "properties": {"classification": {"name": "Invasive"}},
        }
        for r in rings
    ]
    return json.dumps({"type": "FeatureCollection", "features": features})


def _read(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anns = read_annotations(path)
    return anns, [str(w.message) for w in caught]


def test_ruler_and_arrow_regions_are_skipped_with_one_warning(tmp_path):
    path = tmp_path / "a.xml"
    ruler, arrow = [(0, 0), (50, 50)], [(5, 5), (9, 9)]
    path.write_text(_xml(("Invasive", "0", SQUARE), ("", "4", ruler), ("", "3", arrow)))
    anns, messages = _read(path)
    assert [a.label for a in anns] == ["Invasive"]
    assert len(messages) == 1
    assert "2 ruler/arrow region(s)" in messages[0]


def test_a_two_vertex_area_region_is_still_an_error(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(_xml(("Invasive", "0", [(0, 0), (50, 50)])))
    with pytest.raises(AnnotationError, match="at least 3 vertices"):
        read_annotations(path)


@pytest.mark.parametrize("name", ["a.xml", "a.geojson"])
def test_self_intersecting_polygons_are_repaired_with_one_warning(tmp_path, name):
    path = tmp_path / name
    rings = (BOWTIE, LOOP, SQUARE)
    if name.endswith(".xml"):
        path.write_text(_xml(*(("Invasive", "0", r) for r in rings)))
    else:
        path.write_text(_geojson(*rings))
    anns, messages = _read(path)
    assert len(messages) == 1
    assert "2 self-intersecting polygon(s) repaired" in messages[0]
    assert all(Polygon(a.exterior, a.holes).is_valid for a in anns)
    assert len(anns) == 2 + 1 + 1  # the bow-tie splits into its two triangles
    assert sorted(Polygon(a.exterior).area for a in anns[:2]) == pytest.approx([400, 400])
    # The loop covers every pixel its outline winds around, however often.
    labels = rasterise(anns[2:3], BACH_CLASSES, (50, 40), origin=(0, -10)) > 0
    winding = _winding_numbers(np.array(LOOP, float), (50, 40), origin=(0, -10))
    np.testing.assert_array_equal(labels, winding != 0)
    assert (np.abs(winding) == 2).any()  # ... including where it winds twice (even-odd: empty)


def _winding_numbers(ring: np.ndarray, shape, origin) -> np.ndarray:
    """Winding number of ``ring`` around each pixel centre of a (rows, cols) grid."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    px, py = (xs + origin[0]).ravel()[:, None], (ys + origin[1]).ravel()[:, None]
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    side = (x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)  # > 0: point left of the edge
    up = (y0 <= py) & (y1 > py) & (side > 0)
    down = (y0 > py) & (y1 <= py) & (side < 0)
    return (up.sum(axis=1) - down.sum(axis=1)).reshape(shape)


def test_repair_keeps_valid_annotations_as_they_are():
    from pathda.annotations import Annotation

    ann = Annotation("benign", np.array(SQUARE, float))
    out, n = repair_annotations([ann])
    assert out[0] is ann
    assert n == 0


def test_a_file_whose_regions_were_all_skipped_warns_and_strict_refuses(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(_xml(("", "4", [(0, 0), (50, 50)]), ("", "0", SQUARE)))  # ruler, unlabelled
    with pytest.warns(AllRegionsSkippedWarning, match=r"all 2 region\(s\) were skipped") as rec:
        assert read_annotations(path) == []
    assert [w.message.path for w in rec if w.category is AllRegionsSkippedWarning] == [str(path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AnnotationError, match="all 2 region"):
            read_annotations(path, strict=True)
    (tmp_path / "empty.xml").write_text("<Annotations/>")  # no regions at all: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_annotations(tmp_path / "empty.xml") == []
