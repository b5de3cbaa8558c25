"""Inference checkpoint round trip and validation errors."""

from __future__ import annotations

import pytest
import torch

from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    CHECKPOINT_FORMAT,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.errors import CheckpointError, PathdaError


def _meta(**overrides):
    meta = {
        "arch": "resnet10t",
        "num_classes": 4,
        "timm_kwargs": {},
        "class_map": BACH_CLASSES.to_dict(),
        "mpp": 1.868,
        "patch_size": 32,
        "stain": None,
        "normalise": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "provenance": {"test": True},
    }
    meta.update(overrides)
    return meta


@pytest.fixture(scope="module")
def backbone():
    from pathda.adapt import create_backbone

    torch.manual_seed(0)
    return create_backbone("resnet10t", 4, weights=None).eval()


def test_round_trip_gives_same_outputs(tmp_path, backbone):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _meta())
    model, meta = load_inference_checkpoint(path, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x))
    assert meta["format"] == CHECKPOINT_FORMAT
    assert meta["mpp"] == pytest.approx(1.868)
    assert "state_dict" not in meta
    assert not model.training


def test_class_count_mismatch_names_the_file(tmp_path, backbone):
    with pytest.raises(CheckpointError, match=r"m.pt.*5 classes.*4"):
        save_inference_checkpoint(tmp_path / "m.pt", backbone, _meta(num_classes=5))
    # the same check applies to a file written by someone else
    payload = {"format": CHECKPOINT_FORMAT, **_meta(num_classes=3), "state_dict": {}}
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(PathdaError, match=r"other.pt.*3 classes"):
        load_inference_checkpoint(tmp_path / "other.pt")


def test_wrong_format_and_missing_file(tmp_path, backbone):
    torch.save({"format": "something/9"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt.*something/9"):
        load_inference_checkpoint(tmp_path / "x.pt")
    torch.save(backbone.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare.pt.*format"):
        load_inference_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"nope.pt.*not found"):
        load_inference_checkpoint(tmp_path / "nope.pt")


def test_weights_that_do_not_fit_the_arch(tmp_path, backbone):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _meta())
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet18"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"m.pt.*resnet18"):
        load_inference_checkpoint(path)
