"""``pathda segment`` on many slides: inputs checked first, failures reported at the end."""

from __future__ import annotations

import shutil

import pytest
import torch

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import InferenceCheckpoint, save_inference_checkpoint
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.models import ModelInputConfig
from pathda.segment.batch import check_slide_inputs
from pathda.synth import synthesise_slides


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    (slide,) = synthesise_slides(root / "a", n=1, size=(768, 768), quiet=True)
    torch.manual_seed(0)
    meta = InferenceCheckpoint(
        arch="resnet10t",
        class_map=BACH_CLASSES,
        mpp=1.868,
        patch_size=64,
        input_config=ModelInputConfig((0.8, 0.6, 0.75), (0.15, 0.2, 0.15), (3, 64, 64)),
    )
    checkpoint = save_inference_checkpoint(root / "m.pt", create_backbone("resnet10t", 4), meta)
    return slide.image, checkpoint


def _segment(slides, checkpoint, out):
    args = ["segment", *map(str, slides), "-m", str(checkpoint), "-o", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--workers", "0", "--device", "cpu", "--quiet"])
    return exit_info.value.code


def test_same_stem_from_two_folders_is_refused_before_any_work(inputs, tmp_path, capsys):
    slide, checkpoint = inputs
    twin = tmp_path / "b" / slide.name
    twin.parent.mkdir()
    shutil.copy(slide, twin)
    assert _segment([slide, twin], checkpoint, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "same output name" in err
    assert str(twin) in err
    assert str(slide) in err
    assert "\n" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="lab-a_00"):  # .ome.tif is the same stem
        check_slide_inputs([slide, tmp_path / "c" / "lab-a_00.ome.tif"], None)


def test_a_missing_slide_is_refused_before_any_work(inputs, tmp_path, capsys):
    slide, checkpoint = inputs
    assert _segment([slide, tmp_path / "nope.tif"], checkpoint, tmp_path / "out") == 2
    assert "nope.tif" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_slide_failing_mid_run_does_not_stop_the_others(inputs, tmp_path, capsys, fixtures_dir):
    # unreadable.svs opens and has a resolution (passes the checks) but cannot be decoded.
    slide, checkpoint = inputs
    broken = fixtures_dir / "openslide" / "unreadable.svs"
    out = tmp_path / "out"
    assert _segment([broken, slide], checkpoint, out) == 2
    err = capsys.readouterr().err
    assert "unreadable.svs: cannot decode" in err
    assert "1 of 2 slides failed" in err
    assert (out / slide.name.split(".")[0] / f"{slide.name.split('.')[0]}.summary.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["lab-a_00"]
