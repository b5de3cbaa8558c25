"""segment refuses, before reading, what tile refuses and grids that would not fit in memory."""

from __future__ import annotations

import pytest
import torch

from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.models import ModelInputConfig, create_backbone
from pathda.segment import segment_slide
from pathda.slide import base

MODEL_MPP = 1.868  # tile's default --mpp, so both commands read at the same resolution


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    meta = InferenceCheckpoint(
        arch="resnet10t",
        class_map=BACH_CLASSES,
        mpp=MODEL_MPP,
        patch_size=32,
        input_config=ModelInputConfig((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, 32, 32)),
    )
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    return save_inference_checkpoint(path, create_backbone("resnet10t", 4), meta)


def _error_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if not line.startswith("pathda: warning:")]
    assert len(errors) == 1  # one error line (the 72 dpi warning may precede it)
    assert errors[0].startswith("pathda: error:")
    return errors[0]


def test_72_dpi_placeholder_is_refused_by_segment_as_by_tile(
    fixtures_dir, checkpoint, tmp_path, capsys
):
    slide = fixtures_dir / "openslide" / "boxes.tiff"  # its TIFF resolution is 72 dpi
    tile_err = _error_line(["tile", str(slide), "--out", str(tmp_path / "t.zarr")], capsys)
    seg_args = ["segment", str(slide), "--model", str(checkpoint), "--out", str(tmp_path / "s")]
    segment_err = _error_line(seg_args, capsys)
    assert segment_err == tile_err
    assert "352.8 µm/px" in segment_err
    assert "--slide-mpp" in segment_err
    assert not (tmp_path / "s").exists()


def test_output_grid_over_the_memory_limit_is_refused_before_reading(
    fixtures_dir, checkpoint, tmp_path, monkeypatch
):
    slide = fixtures_dir / "openslide" / "boxes.tiff"
    loaded = load_inference_checkpoint(checkpoint)
    opts = {"slide_mpp": 0.5, "output_downsample": 1, "num_workers": 0, "quiet": True}

    def no_reading(*args, **kwargs):
        raise AssertionError("the slide was read before the grid was checked")

    with monkeypatch.context() as patch:
        patch.setattr(base.Slide, "thumbnail", no_reading)
        with pytest.raises(ConfigError) as info:
            segment_slide(slide, loaded, tmp_path / "o", max_grid_mb=0.5, **opts)
    message = str(info.value)
    assert message.startswith(f"{slide}: the output grid of 300 x 250 cells")
    assert "over the 0.5 MB limit" in message
    assert "`output_downsample`" in message
    assert not (tmp_path / "o").exists()
    # The default limit lets the same grid through.
    result = segment_slide(slide, loaded, tmp_path / "o", **opts)
    assert result.labels.shape == (250, 300)
