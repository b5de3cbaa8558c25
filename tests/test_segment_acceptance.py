"""Acceptance: a model trained on one synthetic slide segments another better than chance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import InferenceCheckpoint, save_inference_checkpoint
from pathda.evaluation import score_predictions
from pathda.models import ModelInputConfig
from pathda.segment import segment_slide
from pathda.slide import open_slide
from pathda.synth import synthesise_slides

SLIDE_MPP = 0.467
MODEL_MPP = 4 * SLIDE_MPP  # 1.868 µm/px: a 32-px patch spans 60 µm
PATCH = 32
ARCH = "test_byobnet"  # timm's 0.2 M-parameter test network: trains in seconds on a CPU
NORMALISE = {"mean": [0.8, 0.6, 0.75], "std": [0.15, 0.2, 0.15]}


def _training_patches(slide_path, mask_path, mask_downsample, stride=8):
    """Every ``PATCH`` px patch (stride ``stride``) at the model mpp, labelled by its centre."""
    with open_slide(slide_path) as slide:
        image = slide.thumbnail(mpp=MODEL_MPP)
    mask = np.asarray(Image.open(mask_path))
    model_px_per_mask_px = mask_downsample * SLIDE_MPP / MODEL_MPP
    h, w = image.shape[:2]
    ys, xs = np.meshgrid(
        np.arange(0, h - PATCH + 1, stride), np.arange(0, w - PATCH + 1, stride), indexing="ij"
    )
    xs, ys = xs.ravel(), ys.ravel()
    rows = np.clip(((ys + PATCH / 2) / model_px_per_mask_px).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(((xs + PATCH / 2) / model_px_per_mask_px).astype(int), 0, mask.shape[1] - 1)
    patches = np.stack([image[y : y + PATCH, x : x + PATCH] for x, y in zip(xs, ys, strict=True)])
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(mask[rows, cols].astype(np.int64))


def _segment_bench():
    """bench/segment_bench.py, whose training loop the dense bench shares with this test."""
    path = Path(__file__).resolve().parents[1] / "bench" / "segment_bench.py"
    spec = importlib.util.spec_from_file_location("segment_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meta():
    return InferenceCheckpoint(
        arch=ARCH,
        class_map=BACH_CLASSES,
        mpp=MODEL_MPP,
        patch_size=PATCH,
        input_config=ModelInputConfig(NORMALISE["mean"], NORMALISE["std"], (3, PATCH, PATCH)),
        provenance={"trained_by": "tests/test_segment_acceptance.py"},
    )


@pytest.mark.slow
def test_trained_model_beats_random_model_on_bach_score(tmp_path):
    train_slide, test_slide = synthesise_slides(
        tmp_path / "synth", n=2, size=(2048, 2048), seed=0, mpp=SLIDE_MPP, quiet=True
    )
    x, y = _training_patches(train_slide.image, train_slide.mask, 8)
    assert set(torch.unique(y).tolist()) == {0, 1, 2, 3}
    model = _segment_bench().train_patch_classifier(ARCH, x, y, 40, NORMALISE)
    trained = save_inference_checkpoint(tmp_path / "trained.pt", model, _meta())
    torch.manual_seed(1)
    random = save_inference_checkpoint(tmp_path / "random.pt", create_backbone(ARCH, 4), _meta())

    scores = {}
    for name, checkpoint in (("trained", trained), ("random", random)):
        out = tmp_path / name
        result = segment_slide(
            test_slide.image, checkpoint, out, num_workers=0, device="cpu", quiet=True
        )
        assert result.summary_data["complete"] is True
        report = score_predictions(out, test_slide.annotation, downsample=16)
        scores[name] = report.mean_bach
    assert scores["trained"] > scores["random"] + 0.2, scores
    assert scores["trained"] > 0.5, scores
