"""``segment.precision``: float32, bf16 autocast (on the CPU too, when asked) and ``auto``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from test_segment_pipeline import SMALL_TISSUE, make_meta, write_slide

from pathda.adapt import create_backbone
from pathda.checkpoint import save_inference_checkpoint
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.segment import SegmentConfig, segment_slide
from pathda.segment.engine import autocast_dtype, compute_record

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_auto_is_bf16_on_cuda_and_float32_on_the_cpu():
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("auto", CUDA) is torch.bfloat16
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("float32", CUDA) is None
    assert compute_record("auto", CPU) == {"device": "cpu", "autocast": "float32"}
    assert compute_record("bf16", CPU) == {"device": "cpu", "autocast": "bfloat16"}
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        SegmentConfig(precision="fp16")


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_slide(tmp_path_factory.mktemp("slide") / "p.tif")


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    model = create_backbone("resnet10t", 4).eval()
    with torch.no_grad():  # confident outputs (a random net's are near uniform), as a trained one's
        model.get_classifier().weight.mul_(30)
    return model, make_meta()


MODES = {"patch": {}, "dense": {"mode": "dense", "margin_px": 32, "tile_px": 128}}


@pytest.mark.parametrize("mode", list(MODES))
def test_bf16_on_the_cpu_runs_in_bf16_and_stays_close_to_float32(tmp_path, slide, loaded, mode):
    runs = {}
    for precision in ("float32", "bf16"):
        result = segment_slide(
            slide, loaded, tmp_path / precision, num_workers=0, quiet=True, tissue=SMALL_TISSUE,
            precision=precision, **MODES[mode],
        )  # fmt: skip
        probs = zarr.open_array(result.folder / "p.probs.zarr", mode="r")[:]
        runs[precision] = result.summary_data, result.labels, np.asarray(probs, np.float64)
    (s32, labels32, p32), (s16, labels16, p16) = runs["float32"], runs["bf16"]
    assert s32["compute"] == {"device": "cpu", "autocast": "float32"}
    assert s16["compute"] == {"device": "cpu", "autocast": "bfloat16"}
    assert s16["config"]["precision"] == "bf16"
    diff = np.abs(p16 - p32)
    # bf16 keeps 8 significant bits: through this random 10-layer net the probabilities move
    # by far less than 0.05 (~0.005 measured), but they do move, so bf16 really ran ...
    assert 0 < diff.max() < 0.05
    # ... and the labels of cells whose two best classes are not nearly tied agree.
    top2 = np.sort(p32, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 0.05
    assert clear.sum() > 0
    np.testing.assert_array_equal(labels16[clear], labels32[clear])


def test_cli_precision_flag_and_a_bad_value(tmp_path, slide, loaded, capsys):
    checkpoint = save_inference_checkpoint(tmp_path / "m.pt", *loaded)
    args = ["segment", str(slide), "--model", str(checkpoint), "--workers", "0", "-q"]
    config = tmp_path / "segment.yaml"
    config.write_text(json.dumps({"segment": {"tissue": SMALL_TISSUE}}))
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "o"), "--config", str(config), "--precision", "bf16"])
    assert exit_info.value.code == 0
    summary = json.loads((tmp_path / "o" / "p" / "p.summary.json").read_text())
    assert summary["compute"]["autocast"] == "bfloat16"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "o2"), "--precision", "half"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "precision 'half'" in err
    assert "\n" not in err
    assert not (tmp_path / "o2" / "p").exists()
