"""``pathda segment`` killed mid-slide resumes from its committed rows: same output bytes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch
import zarr

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import InferenceCheckpoint, save_inference_checkpoint
from pathda.models import ModelInputConfig
from pathda.segment.grid import WINDOWS, footprint_weights, patch_origins
from pathda.segment.resume import first_patch_to_run
from pathda.segment.stitch import ProbabilityStitcher
from pathda.synth import synthesise_slides

SLIDE_MPP = 0.467
MODEL_MPP = 4 * SLIDE_MPP


def _stitch(origins, probs, shape, cell, patch, start_row=0, labels=None):
    rows = {}

    def sink(row, mean):
        rows.update({row + i: m.copy() for i, m in enumerate(mean.swapaxes(0, 1))})

    stitcher = ProbabilityStitcher(
        shape, probs.shape[1], cell, patch, WINDOWS["gaussian"], np.ones(shape, bool), sink=sink
    )
    if start_row:
        stitcher.labels[:start_row] = labels[:start_row]
        stitcher.start_at(start_row)
    for i in range(0, len(origins), 7):  # batches of 7
        stitcher.add(origins[i : i + 7], probs[i : i + 7])
    return stitcher.finish(), rows


def test_a_resumed_stitcher_finishes_with_the_same_rows():
    rng = np.random.default_rng(0)
    cell, patch = 16, 128.0
    shape = (40, 33)
    origins = patch_origins((33 * 16, 40 * 16), patch, 48.0)
    probs = rng.dirichlet(np.ones(4), len(origins)).astype(np.float32)
    labels, rows = _stitch(origins, probs, shape, cell, patch)
    for start_row in (1, 9, 17, 37):
        first = first_patch_to_run(origins, patch, cell, shape[0], start_row)
        assert 0 <= first < len(origins)
        # ``first`` is the first patch whose footprint reaches start_row (grid's rule).
        reach = [
            footprint_weights(y, patch, cell, shape[0], WINDOWS["uniform"]) for y in origins[:, 1]
        ]
        ends = np.array([r0 + len(w) for r0, w in reach])
        assert ends[first] > start_row
        assert (ends[:first] <= start_row).all()
        # Any earlier start works (their rows above start_row are dropped): a batch boundary.
        begin = first // 5 * 5
        got, got_rows = _stitch(
            origins[begin:], probs[begin:], shape, cell, patch, start_row, labels
        )
        assert np.array_equal(got, labels)
        assert sorted(got_rows) == list(range(start_row, shape[0]))
        for row, mean in got_rows.items():
            assert np.array_equal(mean, rows[row]), row  # bit-identical: same sums, same order
    assert first_patch_to_run(origins, patch, cell, shape[0], 0) == 0
    assert first_patch_to_run(origins, patch, cell, shape[0], shape[0]) == len(origins)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    (slide,) = synthesise_slides(root, n=1, size=(1536, 1536), mpp=SLIDE_MPP, quiet=True)
    torch.manual_seed(0)
    meta = InferenceCheckpoint(
        arch="resnet10t",
        class_map=BACH_CLASSES,
        mpp=MODEL_MPP,
        patch_size=64,
        input_config=ModelInputConfig((0.8, 0.6, 0.75), (0.15, 0.2, 0.15), (3, 64, 64)),
    )
    checkpoint = save_inference_checkpoint(root / "m.pt", create_backbone("resnet10t", 4), meta)
    config = root / "segment.yaml"
    # Commit after every band, small batches: many commit points for the kills to land in.
    config.write_text(
        json.dumps({"segment": {"resume_every_s": 0, "batch_size": 8, "num_workers": 0}})
    )
    return slide.image, checkpoint, config


def _command(inputs, out, mode):
    slide, checkpoint, config = inputs
    return [
        sys.executable, "-m", "pathda", "segment", str(slide), "--model", str(checkpoint),
        "--out", str(out), "--config", str(config), "--stride", "16", "--mode", mode,
        "--device", "cpu", "--quiet",
    ]  # fmt: skip


def _outputs(out, stem):
    folder = out / stem
    probs = zarr.open_array(folder / f"{stem}.probs.zarr", mode="r")[:]
    mask = tifffile.imread(folder / f"{stem}.mask.ome.tif")
    summary = json.loads((folder / f"{stem}.summary.json").read_text())
    return probs, mask, (folder / f"{stem}.geojson").read_bytes(), summary


def _committed(out, stem):
    try:
        state = out / f".{stem}.segment-resume" / "resume" / "state.json"
        return json.loads(state.read_text())["rows_done"]
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["patch", "dense"])
def test_kill_and_resume_gives_the_same_outputs(inputs, tmp_path, mode):
    stem = inputs[0].stem
    started = time.monotonic()
    subprocess.run(_command(inputs, tmp_path / "ref", mode), check=True)
    duration = time.monotonic() - started
    ref_probs, ref_mask, ref_geojson, _ = _outputs(tmp_path / "ref", stem)
    rng = random.Random(7 if mode == "patch" else 8)
    resumed_rows = []
    for trial in range(2):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen(_command(inputs, out, mode))
        # Startup varies a lot on a busy machine: the clock starts at the first commit.
        while _committed(out, stem) == 0 and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3 * duration))
        proc.send_signal(signal.SIGKILL)  # no-op if it already finished
        proc.wait()
        subprocess.run(_command(inputs, out, mode), check=True)
        probs, mask, geojson, summary = _outputs(out, stem)
        assert np.array_equal(probs, ref_probs)
        assert np.array_equal(mask, ref_mask)
        assert geojson == ref_geojson
        assert not (out / f".{stem}.segment-resume").exists()
        resumed_rows.append(summary["resumed_from_row"])
    print("resumed from rows:", resumed_rows)
    assert any(r > 0 for r in resumed_rows), resumed_rows


def test_changed_settings_start_from_zero(inputs, tmp_path):
    from pathda.segment import segment_slide

    slide, checkpoint, _ = inputs
    out = tmp_path / "o"
    stem = slide.stem
    options = {"stride": 32, "num_workers": 0, "quiet": True, "resume_every_s": 0}

    def failing_export(*args, **kwargs):
        raise RuntimeError("simulated crash after inference")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pathda.segment.pipeline.export_outputs", failing_export)
        with pytest.raises(RuntimeError):
            segment_slide(slide, checkpoint, out, **options)
    rows = _committed(out, stem)
    assert rows > 0  # committed rows are kept after a crash
    again = segment_slide(slide, checkpoint, out, **options)
    assert again.summary_data["resumed_from_row"] == rows
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pathda.segment.pipeline.export_outputs", failing_export)
        with pytest.raises(RuntimeError):
            segment_slide(slide, checkpoint, out, **options)
    other = segment_slide(slide, checkpoint, out, **{**options, "window": "uniform"})
    assert other.summary_data["resumed_from_row"] == 0
