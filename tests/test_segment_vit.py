"""``pathda segment`` end to end on a vision-transformer checkpoint (tiny timm ViT, L-DANN steps).

The checkpoint is made the way training makes it: the backbone is planned for the patch
size (a ViT is built for a fixed ``img_size``, which must travel in ``timm_kwargs``),
trained a few L-DANN steps with heads on every block, and exported without the heads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
import zarr

from pathda.adapt import build_optimizers, create_method
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.cli import main
from pathda.models import ModelInputConfig, create_backbone, plan_backbone

PATCH = 32
MODEL_MPP = 1.0
SMALL_TISSUE = {"min_object_um2": 1000.0, "max_hole_um2": 1000.0}  # the slide's tissue is tiny


def _slide(path, size=(400, 300), mpp=0.5):
    """A white RGB TIFF with a textured pink block (tissue) in the middle."""
    w, h = size
    img = np.full((h, w, 3), 242, np.uint8)
    rng = np.random.default_rng(0)
    img[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = np.array([200, 110, 170]) + (
        rng.integers(-25, 25, (h // 2, w // 2, 3))
    )
    res = (1e4 / mpp, 1e4 / mpp)
    tifffile.imwrite(path, img, photometric="rgb", resolution=res, resolutionunit="CENTIMETER")
    return path


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    plan = plan_backbone("test_vit", 4, input_size=PATCH)
    assert plan.timm_kwargs["img_size"] == PATCH  # a fixed-size model is built for the patch
    backbone = create_backbone("test_vit", 4, input_size=PATCH)
    ldann = create_method("ldann")
    model = ldann.build_model(backbone, input_size=(3, PATCH, PATCH))
    assert set(model.tap_layouts.values()) == {"NLC"}  # heads on token outputs of the blocks
    optimizers = build_optimizers(model, ldann, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    for _ in range(2):
        x = torch.rand(8, 3, PATCH, PATCH, generator=gen)
        ldann.step(model, optimizers, x[:4], torch.tensor([0, 1, 2, 3]), x[4:])
    assert any(not torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    meta = InferenceCheckpoint(
        arch="test_vit",
        class_map=BACH_CLASSES,
        mpp=MODEL_MPP,
        patch_size=PATCH,
        input_config=ModelInputConfig((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, PATCH, PATCH)),
        timm_kwargs=plan.timm_kwargs,
        provenance={"test": "tiny ViT, 2 L-DANN steps"},
    )
    path = tmp_path_factory.mktemp("vit") / "vit.pt"
    save_inference_checkpoint(path, model.backbone.eval(), meta)
    return path, model.backbone


def test_checkpoint_rebuilds_the_trained_vit(vit_checkpoint):
    path, trained = vit_checkpoint
    model, meta = load_inference_checkpoint(path, "cpu")
    assert not any(k.startswith("heads") for k in model.state_dict())
    x = torch.rand(3, 3, PATCH, PATCH, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained.eval()(x), rtol=1e-5, atol=1e-6)
    assert meta.timm_kwargs["img_size"] == PATCH


def test_pathda_segment_runs_on_a_vit_checkpoint(tmp_path, vit_checkpoint):
    path, _ = vit_checkpoint
    slide = _slide(tmp_path / "v.tif")
    config = tmp_path / "segment.yaml"
    config.write_text(json.dumps({"segment": {"tissue": SMALL_TISSUE, "batch_size": 8}}))
    args = ["segment", str(slide), "--model", str(path), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--workers", "0", "--config", str(config), "-q"])
    assert exit_info.value.code == 0
    folder = tmp_path / "o" / "v"
    summary = json.loads((folder / "v.summary.json").read_text())
    assert summary["complete"] is True
    assert summary["n_patches"] > 0
    assert summary["slide_dimensions"] == [400, 300]
    assert summary["tissue_mm2"] == pytest.approx(0.0075, rel=0.15)  # 200 x 150 px at 0.5 µm
    assert sum(summary["area_mm2"].values()) == pytest.approx(summary["tissue_mm2"])
    mask = tifffile.imread(folder / "v.mask.ome.tif")
    probs = np.asarray(zarr.open_array(folder / "v.probs.zarr", mode="r")[:], np.float32)
    assert probs.shape == (4, *mask.shape)
    centre = probs[:, mask.shape[0] // 2, mask.shape[1] // 2]
    assert centre.sum() == pytest.approx(1.0, abs=1e-2)  # tissue: a probability per class
    np.testing.assert_array_equal(probs[:, 0, 0], 0)  # glass: no patch
    assert mask[mask.shape[0] // 2, mask.shape[1] // 2] == centre.argmax()
    assert set(np.unique(mask)) <= set(range(4))


def test_dense_mode_refuses_a_vit_in_one_line(tmp_path, vit_checkpoint, capsys):
    path, _ = vit_checkpoint
    slide = _slide(tmp_path / "d.tif")
    args = ["segment", str(slide), "--model", str(path), "--out", str(tmp_path / "o")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--workers", "0", "--mode", "dense", "-q"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error:")
    assert "dense mode cannot run 'test_vit'" in err
    assert "\n" not in err
