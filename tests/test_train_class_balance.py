"""Class-balanced sampling of source tiles and balanced-accuracy model selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pathda.evaluation.confusion import balanced_accuracy, pixel_accuracy
from pathda.train import TrainConfig, train
from pathda.train.data import class_balanced_weights, make_loader


def test_weights_are_one_over_the_class_count():
    weights = class_balanced_weights(np.array([0, 0, 0, 2, 2, 3]))
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2, 1.0], rtol=1e-15)
    with pytest.raises(ValueError, match="labelled"):
        class_balanced_weights(np.array([0, -1]))


def test_balanced_accuracy_is_the_mean_recall_of_present_classes():
    # rows: truth. Class 0 recall 8/10, class 1 recall 1/2, class 2 absent from the truth.
    confusion = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    assert balanced_accuracy(confusion) == pytest.approx((0.8 + 0.5) / 2, abs=1e-15)
    assert pixel_accuracy(confusion) == pytest.approx(9 / 12, abs=1e-15)
    # calling everything the majority class: accuracy 0.9, balanced accuracy 0.5
    assert balanced_accuracy(np.array([[90, 0], [10, 0]])) == pytest.approx(0.5, abs=1e-15)
    assert math.isnan(balanced_accuracy(np.zeros((2, 2))))


class _Labels(torch.utils.data.Dataset):
    """Stands in for a TileDataset: the sampler only needs the labels."""

    transform = None

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return int(self.labels[i])


def _draw(loader, n_batches: int) -> np.ndarray:
    batches = iter(loader)
    return np.concatenate([next(batches).numpy() for _ in range(n_batches)])


def test_balanced_loader_draws_every_class_about_equally_and_is_seeded():
    labels = np.repeat([0, 1, 2, 3], [9000, 500, 300, 200])  # 90 % class 0
    dataset = _Labels(labels)

    def loader(seed: int, balance: bool):
        return make_loader(
            dataset, 100, shuffle=True, num_workers=0, seed=seed, class_balance=balance
        )

    drawn = _draw(loader(0, True), 40)  # 4000 draws with replacement
    freq = np.bincount(drawn, minlength=4) / drawn.size
    # each class 1/4; 4000 draws give a binomial sd of 0.007, so 0.05 is > 7 sd
    np.testing.assert_allclose(freq, 0.25, atol=0.05)
    uniform = np.bincount(_draw(loader(0, False), 40), minlength=4) / 4000
    assert uniform[0] > 0.8  # without balancing the majority class dominates
    np.testing.assert_array_equal(_draw(loader(3, True), 5), _draw(loader(3, True), 5))
    assert not np.array_equal(_draw(loader(3, True), 5), _draw(loader(4, True), 5))


def test_select_metric_is_checked():
    with pytest.raises(Exception, match="select_metric"):
        TrainConfig(select_metric="dice")  # type: ignore[arg-type]


@pytest.mark.slow
def test_balanced_training_selects_on_balanced_accuracy(synthetic_store, tmp_path):
    cfg = TrainConfig(
        store=synthetic_store,
        arch="resnet10t",
        method="none",
        epochs=3,
        steps_per_epoch=2,
        batch_size=8,
        num_workers=0,
        lr=0.01,
        select_last_fraction=1.0,
        label_free_tiles=0,
        class_balance=True,
        select_metric="val_bacc",
    )
    (result,) = train(cfg, tmp_path, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    baccs = [r["val_bacc"] for r in records]
    assert all(0.0 <= b <= 1.0 for b in baccs)
    # the first epoch with the highest balanced accuracy is the selected one
    assert result.selected_epoch == int(np.argmax(baccs))
    chosen = json.loads((tmp_path / "selected.json").read_text())
    assert chosen["val_bacc"] == max(baccs)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["class_balance"] is True
