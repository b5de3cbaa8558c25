"""Inference checkpoint: typed round trip, checksum verification and validation errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pathda.annotations import BACH_CLASSES, ClassMap
from pathda.checkpoint import (
    CHECKPOINT_FORMAT,
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
    upgrade_checkpoint,
    weights_sha256,
)
from pathda.cli import main
from pathda.errors import CheckpointError, PathdaError
from pathda.models import ModelInputConfig


def _checkpoint(**overrides) -> InferenceCheckpoint:
    fields = {
        "arch": "resnet10t",
        "class_map": BACH_CLASSES,
        "mpp": 1.868,
        "patch_size": 32,
        "input_config": ModelInputConfig((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, 32, 32)),
        "provenance": {"test": True},
    }
    fields.update(overrides)
    return InferenceCheckpoint(**fields)


@pytest.fixture(scope="module")
def backbone():
    from pathda.models import create_backbone

    torch.manual_seed(0)
    return create_backbone("resnet10t", 4, weights=None).eval()


def test_round_trip_gives_same_outputs_and_fields(tmp_path, backbone):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _checkpoint())
    model, ckpt = load_inference_checkpoint(path, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x))
    assert isinstance(ckpt, InferenceCheckpoint)
    assert ckpt == dataclasses.replace(
        _checkpoint(), weights_sha256=weights_sha256(backbone.state_dict())
    )
    assert ckpt.class_names == BACH_CLASSES.names
    assert ckpt.num_classes == 4
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT
    assert not model.training
    with pytest.raises(dataclasses.FrozenInstanceError):
        ckpt.mpp = 2.0


def test_overwritten_bytes_are_a_one_line_error_naming_the_file(tmp_path, backbone):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _checkpoint())
    assert path.stat().st_size > 205_000
    with open(path, "r+b") as f:  # the damage from issue 13
        f.seek(200000)
        f.write(b"\xff" * 5000)
    with pytest.raises(CheckpointError) as info:
        load_inference_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "checksum" in message
    assert "\n" not in message


def test_damaged_checkpoint_through_the_cli_exits_2(tmp_path, backbone, capsys):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _checkpoint())
    with open(path, "r+b") as f:
        f.seek(200000)
        f.write(b"\xff" * 5000)
    slide = tmp_path / "s.tif"
    slide.write_bytes(b"not read: the model is loaded first")
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(slide), "--model", str(path), "--out", str(tmp_path / "o"), "-q"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err
    assert "checksum" in err
    assert not (tmp_path / "o").exists()


def test_model_and_class_map_must_agree(tmp_path, backbone):
    three = ClassMap(("normal", "benign", "invasive"), ((0, 0, 0), (0, 255, 0), (255, 0, 0)))
    with pytest.raises(ValueError, match=r"4 classes.*3"):
        save_inference_checkpoint(tmp_path / "m.pt", backbone, _checkpoint(class_map=three))
    # A file whose class map disagrees with its weights: refused on load, naming the file.
    payload = _checkpoint(class_map=three).to_payload(backbone.state_dict())
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other.pt: weights do not fit .*3 classes"):
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
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"junk.pt: not a readable"):
        load_inference_checkpoint(tmp_path / "junk.pt")


def test_malformed_fields_name_the_file(tmp_path, backbone):
    payload = _checkpoint().to_payload(backbone.state_dict())
    payload["mpp"] = -1.0
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m.pt: checkpoint is malformed.*mpp"):
        load_inference_checkpoint(tmp_path / "m.pt")
    del payload["normalise"]
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m.pt: checkpoint lacks normalise"):
        load_inference_checkpoint(tmp_path / "m.pt")


def test_weights_that_do_not_fit_the_arch(tmp_path, backbone):
    path = save_inference_checkpoint(tmp_path / "m.pt", backbone, _checkpoint())
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet18"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"m.pt.*resnet18"):
        load_inference_checkpoint(path)


def test_old_format_is_refused_with_the_upgrade_and_upgrades(tmp_path, backbone):
    old = {
        "format": "pathda-inference/1",
        "arch": "resnet10t",
        "num_classes": 4,
        "timm_kwargs": {},
        "class_map": BACH_CLASSES.to_dict(),
        "mpp": 1.868,
        "patch_size": 32,
        "stain": None,
        "normalise": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "provenance": {},
        "state_dict": backbone.state_dict(),
    }
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(PathdaError, match=r"old.pt: .*pathda-inference/1.*upgrade_checkpoint"):
        load_inference_checkpoint(tmp_path / "old.pt")
    new = upgrade_checkpoint(tmp_path / "old.pt", tmp_path / "new.pt")
    model, ckpt = load_inference_checkpoint(new)
    assert ckpt.mpp == pytest.approx(1.868)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x))
