"""Dense (fully convolutional) segmentation against the patch-wise reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.models import ModelInputConfig
from pathda.segment import segment_slide
from pathda.segment.blocks import BlockLayout, grid_cells
from pathda.segment.config import MODES
from pathda.segment.dense import build_dense_classifier, output_stride_for
from pathda.segment.grid import patch_origins
from pathda.segment.modes import PREDICTION_MODES
from pathda.slide import open_slide
from pathda.synth import synthesise_slides

PATCH = 64
SLIDE_MPP = 0.467
MODEL_MPP = 4 * SLIDE_MPP  # as the demo config: 64-px patches of 120 µm


def _meta(arch="resnet10t"):
    return InferenceCheckpoint(
        arch=arch,
        class_map=BACH_CLASSES,
        mpp=MODEL_MPP,
        patch_size=PATCH,
        input_config=ModelInputConfig((0.8, 0.6, 0.75), (0.15, 0.2, 0.15), (3, PATCH, PATCH)),
    )


def _random_resnet(seed=0):
    """A random resnet10t with random BatchNorm statistics (not the identity)."""
    torch.manual_seed(seed)
    model = create_backbone("resnet10t", 4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _content_sensitive_resnet(image, seed=0):
    """A random resnet10t whose classifier is standardised on ``image``'s patches.

    Random weights give nearly uniform probabilities, which would agree whatever patch
    they came from. Standardising the pooled features (per-channel mean and std over the
    image's patches) and drawing the classifier with logits of std ~3 makes the output
    vary strongly from patch to patch, so a misplaced or wrongly pooled patch shows.
    """
    model = _random_resnet(seed)
    mean = torch.tensor(_meta().mean).view(1, 3, 1, 1)
    std = torch.tensor(_meta().std).view(1, 3, 1, 1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    patches = ((x - mean) / std).unfold(2, PATCH, 32).unfold(3, PATCH, 32)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, PATCH, PATCH)
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(patches), pre_logits=True)
    mu, sd = pooled.mean(0), pooled.std(0).clamp(min=1e-6)
    weight = torch.randn(4, pooled.shape[1], generator=torch.Generator().manual_seed(seed))
    weight = 3 * weight / pooled.shape[1] ** 0.5 / sd
    with torch.no_grad():
        model.fc.weight.copy_(weight)
        model.fc.bias.copy_(-weight @ mu)
    return model


@pytest.mark.parametrize("stride", [32, 16, 48])
def test_a_lone_patch_gives_the_patch_classifier_logits(stride):
    # One patch in a block without margin sees exactly what patch-wise inference sees
    # (zero padding at its own edges), so the logits match to float32 rounding.
    model = _random_resnet()
    dense = build_dense_classifier(model, _meta(), stride)
    assert dense.output_stride == (32 if stride % 32 == 0 else 16)
    x = torch.randn(2, 3, PATCH, PATCH)
    with torch.inference_mode():
        expected, got = model(x), dense(x)
    # (At stride 16 the grid has a second column, a patch half outside the input.)
    assert got.shape[:2] == (2, 4)
    torch.testing.assert_close(got[:, :, 0, 0], expected, rtol=1e-4, atol=1e-4)


def test_stride_and_patch_must_fit_the_network_stride():
    assert output_stride_for(128, 224) == 32
    assert output_stride_for(112, 224) == 16
    with pytest.raises(ConfigError, match="multiple of the network's total stride"):
        output_stride_for(24, 64)
    with pytest.raises(ConfigError, match="patch size that is a multiple"):
        output_stride_for(32, 48)


@pytest.mark.parametrize("arch", ["seresnet18", "test_vit"])
def test_models_with_global_context_are_refused(arch):
    model = create_backbone(arch, 4).eval()
    with pytest.raises(ConfigError, match="--mode patch"):
        build_dense_classifier(model, _meta(arch), 32)


def test_block_layout_geometry():
    layout = BlockLayout.fit(512, PATCH, 32, 64, scale=4.0)
    assert layout.patches_per_side == (512 - 128 - 64) // 32 + 1 == 11
    assert layout.side_px == 10 * 32 + 64 + 128 == 512
    origins = patch_origins((4000, 3000), PATCH * 4.0, 32 * 4.0)
    cells = grid_cells(origins, 128.0)
    assert cells[0].tolist() == [0, 0]
    assert cells[-1].tolist() == [22, 30]
    blocks, counts = layout.blocks_with_patches(cells)
    assert counts.sum() == len(origins)
    assert blocks.tolist()[:3] == [[0, 0], [0, 1], [0, 2]]
    # Block (1, 2) starts at patch (11, 22): 64 model px = 256 level-0 px before it.
    assert layout.read_location(np.array([1, 2])) == (22 * 128 - 256, 11 * 128 - 256)
    assert BlockLayout.fit(4096, PATCH, 32, 64, 4.0, max_patches=5).patches_per_side == 5
    assert BlockLayout.fit(512, PATCH, 32, 64, 4.0, max_patches=23).patches_per_side == 8
    with pytest.raises(ConfigError, match="--tile"):
        BlockLayout.fit(128, PATCH, 32, 64, scale=1.0)


@pytest.fixture(scope="module")
def slide_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    (slide,) = synthesise_slides(root, n=1, size=(1024, 1024), mpp=SLIDE_MPP, quiet=True)
    with open_slide(slide.image) as opened:
        image = opened.thumbnail(mpp=MODEL_MPP)
    model = _content_sensitive_resnet(image)
    checkpoint = save_inference_checkpoint(root / "m.pt", model, _meta())
    return slide.image, load_inference_checkpoint(checkpoint, "cpu"), checkpoint


def _segment(slide, loaded, out, **options):
    common = {"stride": 32, "num_workers": 0, "device": "cpu", "quiet": True}
    result = segment_slide(slide, loaded, out, **common, **options)
    probs = zarr.open_array(result.folder / f"{slide.stem}.probs.zarr", mode="r")[:]
    return result, probs.astype(np.float64)


@pytest.fixture(scope="module")
def patchwise(tmp_path_factory, slide_and_model):
    slide, loaded, _ = slide_and_model
    return _segment(slide, loaded, tmp_path_factory.mktemp("patchwise"), mode="patch")


def test_one_patch_blocks_reproduce_patchwise_inference(tmp_path, slide_and_model, patchwise):
    # A block of one patch without margin reads and pads exactly what patch mode does,
    # so everything downstream (bands, hand-over order, stitching) must give the same
    # probabilities; they are stored as float16 (relative precision 1e-3).
    slide, loaded, _ = slide_and_model
    ref, p_ref = patchwise
    dense, p_dense = _segment(slide, loaded, tmp_path, mode="dense", tile_px=PATCH, margin_px=0)
    assert dense.n_patches == ref.n_patches > 20
    np.testing.assert_allclose(p_dense, p_ref, atol=2e-3)


def test_block_size_does_not_change_dense_outputs(tmp_path, slide_and_model):
    # With a margin, patches at block edges see their real neighbours, so cutting the
    # slide into small blocks (many edges) gives nearly what one slide-sized block gives.
    # Measured: identical after float16 storage already with a 32-px margin (without
    # margin, mean |dp| 0.056); a block misplaced by one stride gives ~0.15.
    slide, loaded, _ = slide_and_model
    _, whole = _segment(slide, loaded, tmp_path / "a", mode="dense", tile_px=4096, margin_px=64)
    _, small = _segment(slide, loaded, tmp_path / "b", mode="dense", tile_px=288, margin_px=64)
    covered = whole.sum(0) > 0
    assert np.abs(small - whole)[:, covered].mean() < 0.02


def test_dense_agrees_with_patchwise_within_the_context_effect(
    tmp_path, slide_and_model, patchwise
):
    # Dense and patch-wise differ by context: a lone patch is zero-padded at its edges,
    # in a block it sees its neighbours. With 64-px patches and this content-sensitive
    # random model that is large (measured: mean |dp| 0.077 against a patch-to-patch
    # spread of 0.20, 78 % label agreement); a grid shifted by one stride gives mean
    # |dp| >= 0.15 and <= 62 % agreement, which this tolerance rejects.
    slide, loaded, _ = slide_and_model
    ref, p_ref = patchwise
    dense, p_dense = _segment(slide, loaded, tmp_path, mode="dense", tile_px=288, margin_px=64)
    assert dense.summary_data["complete"] is True
    covered = p_ref.sum(0) > 0
    assert np.array_equal(covered, p_dense.sum(0) > 0)
    spread = p_ref[:, covered].std(axis=1).mean()
    assert spread > 0.1, "the model must vary between patches for the test to mean anything"
    assert np.abs(p_dense - p_ref)[:, covered].mean() < 0.5 * spread
    assert (dense.labels == ref.labels)[covered].mean() >= 0.68


def test_cli_dense_stride_error_is_one_line(tmp_path, slide_and_model, capsys):
    slide, _, checkpoint = slide_and_model
    args = ["segment", str(slide), "-m", str(checkpoint), "-o", str(tmp_path), "--quiet"]
    for extra, message in (
        (["--mode", "dense", "--stride", "24", "--workers", "0"], "multiple of the network's"),
        (["--mode", "sideways"], "unknown mode"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err
        assert "\n" not in err


def test_every_configurable_mode_has_a_builder():
    assert sorted(PREDICTION_MODES) == sorted(MODES)
