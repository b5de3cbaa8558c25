"""L-WASS: layer-wise Wasserstein critics with gradient penalty (paper section 2.2, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pathda.adapt.attach import layerwise_tap_points
from pathda.adapt.heads import DomainHead, group_by_shape, squeeze
from pathda.adapt.methods import (
    AdaptationMethod,
    Optimizers,
    accuracy,
    float_metrics,
    register_method,
    weighted_layer_sum,
)
from pathda.adapt.model import DomainAdaptationModel
from pathda.adapt.penalty import critic_objective
from pathda.errors import ConfigError


@register_method("lwass", title="L-WASS")
@dataclass
class LayerwiseWasserstein(AdaptationMethod):
    """L-WASS (Algorithm 1): per-layer Wasserstein critics with gradient penalty.

    Each step runs the backbone once on source + target, then

    1. ``n_critic`` critic updates on the detached squeezed features: every critic
       maximises ``mean D_l(z_s) - mean D_l(z_t) - gp_weight * GP_l`` (all layers in one
       backward: the critics share no weights);
    2. one backbone update, critics frozen: minimise
       ``L_cls + adversarial_weight * sum_l w_l (mean D_l(z_s) - mean D_l(z_t))``.

    Algorithm 1 also writes ``- lambda * GP`` into the objective of the feature extractor
    (line 8); the penalty is a constraint on the critic (Gulrajani et al.), and the
    interpolates carry no gradient to the features here, so that term is left out.
    Critics and penalties run in float32 even under autocast.

    Attributes:
        n_critic: Critic updates per backbone update (WGAN-GP default 5).
        gp_weight: lambda of the gradient penalty (WGAN-GP default 10).
        adversarial_weight: Scale of the Wasserstein term in the backbone loss (0 trains
            the critics alone).

    Metrics: ``loss_cls``, ``acc_cls``, ``loss_total``, ``loss_critic`` (last critic
    iteration), ``wasserstein/<tap>`` (estimate after the critic updates),
    ``gp/<tap>`` (last critic iteration), ``wasserstein_mean``.
    """

    n_critic: int = 5
    gp_weight: float = 10.0
    adversarial_weight: float = 1.0

    adapts: ClassVar[bool] = True
    train_options: ClassVar[Mapping[str, str]] = {
        **AdaptationMethod.train_options,
        "n_critic": "n_critic",
        "gp_weight": "gp_lambda",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_critic < 1:
            raise ConfigError(f"n_critic must be >= 1, got {self.n_critic}")

    def make_head(self, channels: int) -> nn.Module:
        return DomainHead(channels, channels, self.reduction, scalar_output=True)

    def default_tap_points(self, backbone: nn.Module) -> list[str]:
        """Every block (or stage, by ``granularity``) of the backbone."""
        return layerwise_tap_points(backbone, self.granularity)

    def _update_critics(
        self,
        groups: list[tuple[list[str], list[DomainHead]]],
        optimizer: torch.optim.Optimizer,
        z: Mapping[str, torch.Tensor],
        n_src: int,
        metrics: dict[str, torch.Tensor | float],
    ) -> None:
        # Detached float32 features, stacked per group once for all critic iterations.
        stacked = [torch.stack([z[t].detach().float() for t in taps]) for taps, _ in groups]
        for _ in range(self.n_critic):
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            penalties = []
            for (_, heads), zg in zip(groups, stacked, strict=True):
                estimate, penalty = critic_objective(
                    partial(DomainHead.forward_stacked, heads), zg[:, :n_src], zg[:, n_src:]
                )
                loss = loss + (self.gp_weight * penalty - estimate).sum()
                penalties.append(penalty.detach())
            loss.backward()
            optimizer.step()
        for (taps, _), penalty in zip(groups, penalties, strict=True):
            metrics.update({f"gp/{t}": p for t, p in zip(taps, penalty, strict=True)})
        metrics["loss_critic"] = loss.detach()

    def step(
        self,
        model: DomainAdaptationModel,
        optimizers: Optimizers,
        x_src: torch.Tensor,
        y_src: torch.Tensor,
        x_tgt: torch.Tensor | None,
        progress: float = 0.0,
        layer_weights: Mapping[str, float] | None = None,
        domain_tgt: torch.Tensor | None = None,
    ) -> dict[str, float]:
        if x_tgt is None:
            raise ValueError("lwass needs a target batch (x_tgt), got None")
        model.train()
        self._zero_grad(optimizers)
        n_src = x_src.shape[0]
        weights = self.layer_weights(model.tap_points, layer_weights)
        groups = group_by_shape({tap: model.head(tap) for tap in model.tap_points})
        metrics: dict[str, torch.Tensor | float] = {}
        with self._autocast(x_src.device):
            logits, features = model.forward_train(torch.cat([x_src, x_tgt]))
            loss_cls = F.cross_entropy(logits[:n_src], y_src)
            z = {tap: squeeze(features[tap]) for tap in model.tap_points}
        heads = list(model.heads.parameters())
        with torch.autocast(device_type=x_src.device.type, enabled=False):
            self._update_critics(groups, optimizers["heads"], z, n_src, metrics)
            # Frozen: the backbone's backward must not reach (or accumulate into) the critics;
            # Algorithm 1 line 13 updates theta_f only.
            for p in heads:
                p.requires_grad_(False)
            try:
                adversarial = 0.0
                for taps, group in groups:
                    values = DomainHead.forward_stacked(
                        group, torch.stack([z[t].float() for t in taps])
                    )
                    estimates = values[:, :n_src].mean(1) - values[:, n_src:].mean(1)
                    adversarial = adversarial + weighted_layer_sum(
                        estimates, [weights[t] for t in taps]
                    )
                    metrics.update(
                        {
                            f"wasserstein/{t}": e
                            for t, e in zip(taps, estimates.detach(), strict=True)
                        }
                    )
                total = loss_cls + self.adversarial_weight * adversarial
                optimizers["model"].zero_grad(set_to_none=True)
                total.backward()
            finally:
                for p in heads:
                    p.requires_grad_(True)
        optimizers["model"].step()
        metrics.update(loss_cls=loss_cls, loss_total=total, acc_cls=accuracy(logits[:n_src], y_src))
        metrics["wasserstein_mean"] = torch.stack(
            [metrics[f"wasserstein/{tap}"] for tap in model.tap_points]
        ).mean()
        return float_metrics(metrics)
