"""score maps prediction classes to the truth's BY NAME (a segment summary's class names)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.cli import main
from pathda.errors import UnknownClassError
from pathda.evaluation import score_predictions

TRUTH = np.array([[0, 0, 1, 1], [3, 3, 3, 0]], np.uint8)  # BACH ids: 3 = invasive


def _segment_output(root, class_names, labels):
    """A minimal complete ``pathda segment`` slide folder at mask downsample 16."""
    folder = root / "A01"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "A01.mask.ome.tif", labels.astype(np.uint8))
    summary = {
        "complete": True,
        "slide_dimensions": [16 * labels.shape[1], 16 * labels.shape[0]],
        "mask_downsample": 16,
        "mask": "A01.mask.ome.tif",
        "class_names": list(class_names),
    }
    (folder / "A01.summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def truth(tmp_path):
    path = tmp_path / "truth" / "A01_mask.png"
    path.parent.mkdir()
    Image.fromarray(TRUTH).save(path)
    return path


def test_three_class_model_is_scored_with_invasive_as_invasive(tmp_path, truth):
    three = ("normal", "benign", "invasive")
    pred = np.where(TRUTH == 3, 2, TRUTH)  # the same picture in the model's own ids
    folder = _segment_output(tmp_path / "seg", three, pred)
    report = score_predictions(folder, truth, downsample=16)
    (slide,) = report.slides
    assert slide.bach == 1.0  # read as BACH ids, its 2 would be "in situ" and score lower
    assert slide.confusion[3, 3] == np.count_nonzero(TRUTH == 3)


def test_bach_model_names_in_any_case_are_the_identity(tmp_path, truth):
    folder = _segment_output(tmp_path / "seg", ("Normal", "Benign", "In situ", "Invasive"), TRUTH)
    assert score_predictions(folder, truth, downsample=16).slides[0].bach == 1.0


def test_unmappable_class_is_refused_on_one_line_with_the_fix(tmp_path, truth, capsys):
    folder = _segment_output(tmp_path / "seg", ("normal", "tumour"), np.minimum(TRUTH, 1))
    with pytest.raises(UnknownClassError, match=r"unknown class 'tumour'"):
        score_predictions(folder, truth, downsample=16)
    args = ["score", "--pred", str(folder), "--truth", str(truth), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as info:
        main([*args, "-q"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "A01.summary.json (prediction class): unknown class 'tumour'" in err
    assert "--class-alias 'tumour=CLASS'" in err
    with pytest.raises(SystemExit) as info:
        main([*args, "--class-alias", "tumour=invasive", "-q"])
    assert info.value.code == 0
