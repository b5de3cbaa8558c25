"""Segmentation outputs: label mask OME-TIFF, GeoJSON polygons, overlay PNG."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pytest
import tifffile
from shapely.geometry import Polygon, box, shape

from pathda.annotations import BACH_CLASSES, write_geojson
from pathda.segment.export_geojson import label_regions
from pathda.segment.export_tiff import write_label_ome_tiff
from pathda.segment.grid import label_areas_l0
from pathda.segment.overlay import blend_labels


def _ring_labels() -> np.ndarray:
    labels = np.zeros((60, 80), np.uint8)
    labels[10:40, 10:50] = 3  # invasive ring ...
    labels[18:30, 20:36] = 0  # ... around a normal hole
    labels[45:55, 60:75] = 2  # an in-situ block
    labels[2, 70] = 1  # a one-cell benign speck
    return labels


def test_ring_region_keeps_its_hole_and_is_valid():
    ds = 16
    regions = label_regions(_ring_labels(), ds, BACH_CLASSES, min_area_px=2 * ds * ds)
    by_label = {r.label: r for r in regions}
    assert sorted(by_label) == ["in situ", "invasive"]  # the 1-cell speck is below min area
    ring = by_label["invasive"]
    assert len(ring.holes) == 1
    poly = Polygon(ring.exterior, ring.holes)
    assert poly.is_valid
    # level-0 pixels: cells 10..50 x 10..40 span x 160..800, y 160..640
    assert ring.bounds == pytest.approx((160, 160, 800, 640))
    assert poly.area == pytest.approx((30 * 40 - 12 * 16) * ds * ds)
    assert Polygon(ring.holes[0]).bounds == pytest.approx((320, 288, 576, 480))


def test_regions_per_connected_component_and_normal_flag():
    labels = np.zeros((20, 20), np.uint8)
    labels[2:6, 2:6] = 3
    labels[10:14, 10:14] = 3
    labels[6:8, 6:8] = 3  # touches the first block only diagonally: its own region
    regions = label_regions(labels, 1, BACH_CLASSES)
    assert [r.label for r in regions] == ["invasive"] * 3
    with_normal = label_regions(labels, 1, BACH_CLASSES, include_normal=True)
    normal = [r for r in with_normal if r.label == "normal"]
    assert len(normal) == 1
    # 4-connected regions have 8-connected holes: the diagonal pair makes one hole
    assert len(normal[0].holes) == 2
    assert Polygon(normal[0].exterior, normal[0].holes).is_valid


def test_geojson_is_qupath_feature_collection(tmp_path):
    regions = label_regions(_ring_labels(), 8, BACH_CLASSES)
    write_geojson(tmp_path / "s.geojson", regions, BACH_CLASSES)
    data = json.loads((tmp_path / "s.geojson").read_text())
    assert data["type"] == "FeatureCollection"
    feature = next(
        f for f in data["features"] if f["properties"]["classification"]["name"] == "Invasive"
    )
    names = {f["properties"]["classification"]["name"] for f in data["features"]}
    assert names == {"Invasive", "In situ", "Benign"}  # as QuPath users (and the README) name them
    assert feature["properties"]["objectType"] == "annotation"
    assert feature["properties"]["classification"]["color"] == list(BACH_CLASSES.colors[3])
    geom = shape(feature["geometry"])
    assert geom.is_valid
    assert len(geom.interiors) == 1


def test_mask_ome_tiff_opens_in_tifffile_and_openslide(tmp_path):
    labels = np.zeros((700, 1000), np.uint8)
    labels[100:300, 200:600] = 3
    labels[400:500, 50:90] = 1
    path = write_label_ome_tiff(tmp_path / "s.mask.ome.tif", labels, 7.472, BACH_CLASSES.names)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert [lvl.shape for lvl in series.levels] == [(700, 1000), (350, 500), (175, 250)]
        assert series.dtype == np.uint8
        np.testing.assert_array_equal(series.asarray(), labels)
        np.testing.assert_array_equal(series.levels[1].asarray(), labels[::2, ::2])
        assert 'PhysicalSizeX="7.472"' in tif.ome_metadata
        assert 'PhysicalSizeY="7.472"' in tif.ome_metadata
        assert tif.pages[0].is_tiled
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (1000, 700)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(7.472)
        region = np.asarray(slide.read_region((200, 100), 0, (4, 4)))
        assert (region[..., 0] == 3).all()


def test_overlay_tints_only_non_normal_labels():
    thumb = np.full((30, 40, 3), 200, np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    labels[:, 40:] = 3  # right half invasive
    out = blend_labels(thumb, labels, BACH_CLASSES, alpha=0.5)
    np.testing.assert_array_equal(out[:, :20], thumb[:, :20])
    expected = np.round(0.5 * 200 + 0.5 * np.array(BACH_CLASSES.colors[3]))
    np.testing.assert_array_equal(out[:, 20:], np.broadcast_to(expected, (30, 20, 3)))


def test_regions_are_clipped_to_the_slide():
    # 10 x 9 px slide at 4 px per cell: a 3 x 3 mask whose last row and column stick out
    labels = np.full((3, 3), 3, np.uint8)
    [region] = label_regions(labels, 4, BACH_CLASSES, slide_size=(10, 9))
    assert region.bounds == pytest.approx((0, 0, 10, 9))
    [unclipped] = label_regions(labels, 4, BACH_CLASSES)
    assert unclipped.bounds == pytest.approx((0, 0, 12, 12))  # what the mask alone implies
    expected = Polygon(unclipped.exterior).intersection(box(0, 0, 10, 9))
    assert Polygon(region.exterior).symmetric_difference(expected).area == pytest.approx(0)


def test_label_areas_count_only_the_slide():
    labels = np.array([[1, 1, 2], [0, 3, 3], [2, 2, 2]], np.uint8)
    areas = label_areas_l0(labels, 4, 4, (10, 9))  # cells: columns 4, 4, 2; rows 4, 4, 1
    np.testing.assert_allclose(areas, [16, 32, 8 + 10, 16 + 8])
    assert areas.sum() == pytest.approx(90)
    where = np.zeros((3, 3), bool)
    where[2] = True
    np.testing.assert_allclose(label_areas_l0(labels, 4, 4, (10, 9), where=where), [0, 0, 10, 0])
    # a mask coarser than the slide: one cell, the slide's area
    assert label_areas_l0(np.ones((1, 1), np.uint8), 2, 100000, (400, 300))[1] == 120000
