"""Finding prediction/truth inputs and pairing them by slide stem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathda.errors import ScoreInputError
from pathda.evaluation.sources import discover_sources, label_stem, pair_sources


def _png(path: Path, shape=(4, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(path)
    return path


def _segment_folder(root: Path, stem: str, complete: object = True) -> Path:
    folder = root / stem
    _png(folder / f"{stem}.mask.ome.tif")  # contents are not read by discovery
    summary = {
        "slide": f"/slides/{stem}.svs",
        "slide_dimensions": [96, 64],
        "mpp": 0.5,
        "mask_downsample": 16,
        "mask": f"{stem}.mask.ome.tif",
        "complete": complete,
    }
    (folder / f"{stem}.summary.json").write_text(json.dumps(summary))
    return folder


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("A01.xml", "A01"),
        ("A01.geojson", "A01"),
        ("A01_mask.png", "A01"),
        ("A01-mask.tif", "A01"),
        ("A01.mask.ome.tif", "A01"),
        ("A01.ome.tiff", "A01"),
        ("A01.ome.xml", "A01"),
        ("A01.OME.geojson", "A01"),
        ("A01.ome_mask.png", "A01"),
        ("A01.summary.json", "A01"),
        ("slide.v2.PNG", "slide.v2"),
        ("mask.png", "mask"),
    ],
)
def test_label_stem(name, stem):
    assert label_stem(name) == stem


def test_folder_with_segment_outputs_and_loose_files(tmp_path):
    _segment_folder(tmp_path, "A01")
    _png(tmp_path / "A02_mask.png")
    (tmp_path / "A03.xml").write_text("<Annotations/>")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".A04_mask.png.123.partial").write_text("in progress")
    found = {s.stem: s for s in discover_sources([tmp_path], "prediction")}
    assert sorted(found) == ["A01", "A02", "A03"]
    a01 = found["A01"]
    assert (a01.kind, a01.level0_size, a01.mask_downsample, a01.mpp) == (
        "segment",
        (96, 64),
        16.0,
        0.5,
    )
    assert a01.mask_path == tmp_path / "A01" / "A01.mask.ome.tif"
    assert found["A02"].kind == "mask"
    assert found["A03"].kind == "annotations"


def test_slide_folder_itself_is_accepted_and_its_mask_not_counted_twice(tmp_path):
    folder = _segment_folder(tmp_path, "A01")
    # segment also writes these beside the summary; they are its outputs, not more inputs
    (folder / "A01.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (folder / "A01.xml").write_text("<Annotations/>")
    [source] = discover_sources([folder], "prediction")
    assert source.kind == "segment"


@pytest.mark.parametrize("complete", [False, None, "yes"])
def test_partial_segment_output_is_refused(tmp_path, complete):
    _segment_folder(tmp_path, "A01", complete=complete)
    with pytest.raises(ScoreInputError, match=r"A01\.summary\.json: segment output is incomplete"):
        discover_sources([tmp_path], "prediction")


def test_segment_folder_without_summary_is_refused(tmp_path):
    _png(tmp_path / "A01" / "A01.mask.ome.tif")
    with pytest.raises(ScoreInputError, match="without a summary"):
        discover_sources([tmp_path], "prediction")


def test_summary_naming_a_missing_mask_is_refused(tmp_path):
    folder = _segment_folder(tmp_path, "A01")
    (folder / "A01.mask.ome.tif").unlink()
    with pytest.raises(ScoreInputError, match="not found"):
        discover_sources([folder / "A01.summary.json"], "prediction")


def test_bad_paths(tmp_path):
    with pytest.raises(ScoreInputError, match="not found"):
        discover_sources([tmp_path / "nope.png"], "truth")
    (tmp_path / "a.csv").write_text("")
    with pytest.raises(ScoreInputError, match="unknown truth file type"):
        discover_sources([tmp_path / "a.csv"], "truth")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScoreInputError, match="no truth found"):
        discover_sources([empty], "truth")


def test_pairing_by_stem_and_unmatched_inputs(tmp_path):
    preds = discover_sources([_png(tmp_path / f"{s}_mask.png") for s in ("A01", "A02")], "p")
    truths = [*discover_sources([_png(tmp_path / "t" / "A01.png")], "t")]
    (tmp_path / "A03.xml").write_text("")
    truths += discover_sources([tmp_path / "A03.xml"], "t")
    with pytest.raises(ScoreInputError, match=r"A02_mask\.png.*A03\.xml.*`allow_missing`"):
        pair_sources(preds, truths)
    pairs, unmatched = pair_sources(preds, truths, allow_missing=True)
    assert [(p.stem, t.stem) for p, t in pairs] == [("A01", "A01")]
    assert sorted(s.path.name for s in unmatched) == ["A02_mask.png", "A03.xml"]


def test_no_common_stem_fails_even_with_allow_missing(tmp_path):
    preds = discover_sources([_png(tmp_path / "A01.png")], "p")
    truths = discover_sources([_png(tmp_path / "t" / "B01.png")], "t")
    with pytest.raises(ScoreInputError, match="no slide stem matches") as info:
        pair_sources(preds, truths, allow_missing=True)
    assert "allow_missing" not in str(info.value)  # it was given; advising it again is no help


def test_two_inputs_for_one_slide_are_refused(tmp_path):
    preds = discover_sources([_png(tmp_path / "A01.png"), _png(tmp_path / "A01_mask.tif")], "p")
    with pytest.raises(ScoreInputError, match="two prediction inputs for slide 'A01'"):
        pair_sources(preds, preds[:1])
