"""One slide-stem rule for every command: tile's annotation lookup, segment's folder, score."""

from __future__ import annotations

import json

import pytest

import pathda.segment.pipeline as segment_pipeline
from pathda.evaluation.sources import discover_sources, pair_sources
from pathda.slide.naming import slide_stem
from pathda.tiling.manifest import find_annotation

SQUARE = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 9], [0, 0]]]},
    "properties": {"classification": {"name": "Invasive"}},
}


@pytest.mark.parametrize(
    ("name", "stem"),
    [("A01.svs", "A01"), ("X.ome.tif", "X"), ("X.OME.TIFF", "X"), ("A.v2.tif", "A.v2")],
)
def test_slide_stem(name, stem):
    assert slide_stem(name) == stem


def test_segment_names_its_folder_by_the_shared_rule():
    assert segment_pipeline.slide_stem is slide_stem


@pytest.mark.parametrize("annotation", ["X.xml", "X.ome.xml", "X.geojson", "X.json"])
def test_one_annotation_file_serves_tile_and_score(tmp_path, annotation):
    slide = tmp_path / "X.ome.tif"
    slide.write_bytes(b"")
    ann = tmp_path / annotation
    ann.write_text(json.dumps(SQUARE) if "json" in annotation else "<Annotations/>")
    assert find_annotation(slide, None) == ann
    [truth] = discover_sources([ann], "truth")
    assert (truth.kind, truth.path, truth.stem) == ("annotations", ann, slide_stem(slide))


def test_score_pairs_an_ome_slide_output_with_its_ome_xml(tmp_path):
    folder = tmp_path / "seg" / "X"
    folder.mkdir(parents=True)
    (folder / "X.mask.ome.tif").write_bytes(b"")
    summary = {"slide_dimensions": [96, 64], "mask_downsample": 16, "mask": "X.mask.ome.tif"}
    (folder / "X.summary.json").write_text(json.dumps({**summary, "complete": True}))
    (tmp_path / "X.ome.xml").write_text("<Annotations/>")
    preds = discover_sources([tmp_path / "seg"], "prediction")
    truths = discover_sources([tmp_path / "X.ome.xml"], "truth")
    pairs, unmatched = pair_sources(preds, truths)
    assert [(p.stem, t.stem) for p, t in pairs] == [("X", "X")]
    assert not unmatched


def test_a_json_that_is_not_geojson_is_not_an_annotation(tmp_path):
    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"")
    (tmp_path / "s.json").write_text(json.dumps({"pathda_version": "0", "config": {}}))
    assert find_annotation(slide, None) is None
    (tmp_path / "s.json").write_text("{broken")  # a broken annotation is read (and reported)
    assert find_annotation(slide, None) == tmp_path / "s.json"
