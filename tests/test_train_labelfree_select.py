"""Training records the label-free selection (DEV) beside source-validation selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pathda.checkpoint import load_inference_checkpoint
from pathda.train import TrainConfig, train
from pathda.train.augment import training_augmentation

TINY = {"arch": "resnet10t", "batch_size": 8, "num_workers": 0, "lr": 0.01}


@pytest.mark.slow
def test_dev_selection_is_exported_beside_source_validation(synthetic_store, tmp_path):
    cfg = TrainConfig(
        store=synthetic_store,
        method="ldann",
        epochs=3,
        steps_per_epoch=2,
        select_last_fraction=1.0,
        label_free_tiles=64,
        stain_jitter="strong",
        **TINY,
    )
    (result,) = train(cfg, tmp_path, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    risks = [r["dev_risk"] for r in records]
    assert all(math.isfinite(r) for r in risks)
    # every alignment tap (block outputs + pooled features) has both measures
    pads = [k for k in records[0] if k.startswith("pad/")]
    assert "pad/global_pool" in pads
    assert len(pads) >= 2
    assert all(0.0 <= records[0][k] <= 2.0 for k in pads)
    assert all(f"mmd/{k[4:]}" in records[0] for k in pads)
    chosen = json.loads((tmp_path / "selected_dev.json").read_text())
    assert chosen["epoch"] == int(np.argmin(risks))
    _, meta = load_inference_checkpoint(tmp_path / "model_dev.pt")
    assert meta.provenance["selected_epoch"] == chosen["epoch"]
    assert (tmp_path / "model.pt").is_file()
    assert result.selected_epoch >= 0


@pytest.mark.slow
def test_label_free_evaluation_can_be_turned_off(synthetic_store, tmp_path):
    cfg = TrainConfig(
        store=synthetic_store,
        method="none",
        epochs=1,
        steps_per_epoch=1,
        label_free_tiles=0,
        **TINY,
    )
    train(cfg, tmp_path, quiet=True)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert "dev_risk" not in record
    assert not (tmp_path / "model_dev.pt").exists()


def test_strong_stain_jitter_changes_colour_more_than_mild():
    rng = np.random.default_rng(0)
    tile = np.full((32, 32, 3), (200, 120, 170), dtype=np.uint8)
    tile = np.clip(tile + rng.integers(-5, 6, tile.shape), 0, 255).astype(np.uint8)

    def spread(kind):
        aug = training_augmentation(kind)
        aug.set_random_seed(0)
        means = [aug(image=tile)["image"].reshape(-1, 3).mean(0) for _ in range(40)]
        return np.std(means, axis=0).mean()

    assert spread("strong") > 2 * spread("mild")
    with pytest.raises(ValueError, match="stain_jitter"):
        training_augmentation("extreme")
