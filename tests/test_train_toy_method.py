"""Acceptance test of the method registry: a method defined here trains with no other edit.

The method below exists only in this module. Registering it is all it takes for
``TrainConfig`` to accept its name, for ``pathda.train.train`` to build, train and export
it, and for the report to title it. The fixture registers it for this module's tests only,
so tests elsewhere that parametrise over ``METHODS`` do not pick it up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathda.adapt import METHODS, AdaptationMethod, pooled_tap_points, register_method
from pathda.adapt.methods import accuracy, float_metrics
from pathda.checkpoint import load_inference_checkpoint
from pathda.errors import ConfigError
from pathda.report import method_title
from pathda.train import TrainConfig, train


@dataclass
class ToyMeanMatching(AdaptationMethod):
    """Pulls the mean pooled source and target features together through a projection."""

    match_weight: float = 0.5
    adapts: ClassVar[bool] = True

    def make_head(self, channels: int) -> nn.Module:
        return nn.Linear(channels, 4)

    def default_tap_points(self, backbone: nn.Module) -> list[str]:
        return pooled_tap_points(backbone)

    def step(
        self,
        model,
        optimizers,
        x_src,
        y_src,
        x_tgt,
        progress: float = 0.0,
        layer_weights: Mapping[str, float] | None = None,
        domain_tgt=None,
    ) -> dict[str, float]:
        assert x_tgt is not None  # adapts=True: the run loads target batches
        model.train()
        self._zero_grad(optimizers)
        n_src = x_src.shape[0]
        logits, features = model.forward_train(torch.cat([x_src, x_tgt]))
        loss_cls = F.cross_entropy(logits[:n_src], y_src)
        (tap,) = model.tap_points
        z = model.head(tap)(features[tap].flatten(1))
        gap = (z[:n_src].mean(0) - z[n_src:].mean(0)).pow(2).sum()
        total = loss_cls + self.match_weight * gap
        total.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        return float_metrics(
            {
                "loss_cls": loss_cls,
                "loss_total": total,
                "mean_gap": gap,
                "acc_cls": accuracy(logits[:n_src], y_src),
            }
        )


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_method("toy-mean-matching", title="Toy mean matching")(ToyMeanMatching)
    yield
    METHODS.remove("toy-mean-matching")


def test_registered_names_are_unique_and_listed():
    assert METHODS.get("toy-mean-matching") is ToyMeanMatching
    with pytest.raises(ValueError, match="registered twice"):
        register_method("toy-mean-matching")(type("Other", (ToyMeanMatching,), {}))
    with pytest.raises(ConfigError, match="toy-mean-matching"):
        TrainConfig(method="no-such-method")
    assert method_title("toy-mean-matching") == "Toy mean matching"


@pytest.mark.slow
def test_toy_method_trains_through_pathda_train(synthetic_store, tmp_path):
    cfg = TrainConfig(
        store=synthetic_store,
        method="toy-mean-matching",
        arch="resnet10t",
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        num_workers=0,
        augment=False,
    )
    (result,) = train(cfg, tmp_path, quiet=True)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["mean_gap"] >= 0  # the toy's own loss term reached the log
    model, _meta = load_inference_checkpoint(result.checkpoint)
    assert not any(k.startswith("heads") for k in model.state_dict())  # the head is dropped
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
