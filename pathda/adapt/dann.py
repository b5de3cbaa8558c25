"""DANN and L-DANN: domain classifiers behind a gradient reversal layer (paper section 2.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pathda.adapt.attach import layerwise_tap_points, pooled_tap_points
from pathda.adapt.grl import GRL_SCHEDULES, GradientReversal, grl_coefficient
from pathda.adapt.heads import DomainHead, group_by_shape, squeeze
from pathda.adapt.methods import (
    AdaptationMethod,
    Optimizers,
    accuracy,
    domain_labels,
    float_metrics,
    register_method,
    weighted_layer_sum,
)
from pathda.adapt.model import DomainAdaptationModel
from pathda.errors import ConfigError


@register_method("dann", title="DANN")
@dataclass
class DANN(AdaptationMethod):
    """Domain classifiers behind a gradient reversal layer; one combined backward.

    Minimises ``L_cls + sum_l w_l CE(head_l(GRL(z_l)), domain)``: the heads learn to
    tell the domains apart, the reversed gradient makes the backbone hide them.

    Attributes:
        n_domains: N >= 2 (source is domain 0).
        grl_schedule: ``"constant"`` (paper) or ``"ganin"``.
        grl_constant: Scale of the reversed gradient (paper: 1).

    Metrics: ``loss_cls``, ``acc_cls``, ``loss_total``, ``grl_coeff``,
    ``domain_loss/<tap>``, ``domain_acc/<tap>`` (0.5 is chance for two balanced domains),
    ``domain_acc_mean``.
    """

    n_domains: int = 2
    grl_schedule: str = "constant"
    grl_constant: float = 1.0

    adapts: ClassVar[bool] = True
    train_options: ClassVar[Mapping[str, str]] = {
        **AdaptationMethod.train_options,
        "n_domains": "n_domains",
        "grl_schedule": "grl_schedule",
        "grl_constant": "grl_coefficient",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_domains < 2:
            raise ConfigError(f"n_domains must be >= 2, got {self.n_domains}")
        if self.grl_schedule not in GRL_SCHEDULES:
            raise ConfigError(
                f"unknown grl_schedule {self.grl_schedule!r}; use {', '.join(GRL_SCHEDULES)}"
            )
        self._grl = GradientReversal()

    def make_head(self, channels: int) -> nn.Module:
        return DomainHead(channels, self.n_domains, self.reduction)

    def default_tap_points(self, backbone: nn.Module) -> list[str]:
        """The pooled features before the classifier (the original DANN)."""
        return pooled_tap_points(backbone)

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
        model.train()
        self._zero_grad(optimizers)
        n_src = x_src.shape[0]
        weights = self.layer_weights(model.tap_points, layer_weights)
        domains = domain_labels(n_src, x_tgt, domain_tgt)
        self._grl.coeff = grl_coefficient(self.grl_schedule, progress, self.grl_constant)
        metrics: dict[str, torch.Tensor | float] = {"grl_coeff": self._grl.coeff}
        groups = group_by_shape({tap: model.head(tap) for tap in model.tap_points})
        losses: dict[str, torch.Tensor] = {}
        accuracies: dict[str, torch.Tensor] = {}
        with self._autocast(x_src.device):
            logits, features = model.forward_train(torch.cat([x_src, x_tgt]))
            loss_cls = F.cross_entropy(logits[:n_src], y_src)
            total = loss_cls
            # Same-shaped heads run as one batched product per group (one group for the 12
            # blocks of a ViT): the loss is the same sum of per-layer terms, but the head
            # ops per step no longer grow with the number of layers.
            for taps, heads in groups:
                z = self._grl(torch.stack([squeeze(features[t]) for t in taps]))  # [G, 2B, C']
                domain_logits = DomainHead.forward_stacked(heads, z)  # [G, 2B, N]
                # [G, N, 2B] logits against [G, 2B] labels: per-layer mean cross-entropy, the
                # same as G separate F.cross_entropy calls.
                # The loss in at least float32 (bf16 logits under autocast are upcast).
                targets = domains.expand(len(taps), -1)
                precise = domain_logits.to(torch.promote_types(domain_logits.dtype, torch.float32))
                group_losses = F.cross_entropy(
                    precise.transpose(1, 2), targets, reduction="none"
                ).mean(dim=1)
                group_accuracies = (domain_logits.detach().argmax(dim=2) == targets).float().mean(1)
                total = total + weighted_layer_sum(group_losses, [weights[t] for t in taps])
                losses.update(zip(taps, group_losses, strict=True))
                accuracies.update(zip(taps, group_accuracies, strict=True))
        total.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        for tap in model.tap_points:  # metrics in tap order, as logged before the grouping
            metrics[f"domain_loss/{tap}"] = losses[tap]
            metrics[f"domain_acc/{tap}"] = accuracies[tap]
        metrics.update(loss_cls=loss_cls, loss_total=total, acc_cls=accuracy(logits[:n_src], y_src))
        metrics["domain_acc_mean"] = torch.stack(list(accuracies.values())).mean()
        return float_metrics(metrics)


@register_method("ldann", title="L-DANN")
@dataclass
class LayerwiseDANN(DANN):
    """L-DANN: :class:`DANN` with a domain head after every block (or stage)."""

    def default_tap_points(self, backbone: nn.Module) -> list[str]:
        """Every block (or stage, by ``granularity``) of the backbone."""
        return layerwise_tap_points(backbone, self.granularity)
