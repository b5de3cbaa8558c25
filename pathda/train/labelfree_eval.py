"""One label-free evaluation pass per epoch: DEV / IWV risk and per-layer alignment.

Runs the backbone on a fixed, seeded sample of labelled *source validation* tiles and of
unlabelled *target* training tiles (their labels are never read), records pooled
features at the alignment taps (every block output, as L-DANN taps them, whatever the
method; plus the pooled pre-logit features) and each validation tile's cross-entropy.
The pre-logit features give the density ratio for DEV / IWV; every tap gives a proxy
A-distance and a linear MMD between the domains (see :mod:`pathda.train.labelfree`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathda.adapt.attach import FeatureTaps, layerwise_tap_points
from pathda.adapt.layout import pooled as pool_output
from pathda.errors import ConfigError
from pathda.train.labelfree import density_ratio, dev_risk, iwv_risk, linear_mmd, proxy_a_distance

POOLED = "global_pool"  # timm's pooled pre-logit features: the DEV feature space


def sample_indices(indices: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of ``indices``, drawn once without replacement (sorted, seeded)."""
    indices = np.asarray(indices)
    if cap <= 0 or indices.size <= cap:
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=cap, replace=False))


def alignment_taps(backbone: nn.Module, granularity: str) -> list[str]:
    """Block (or stage) outputs plus the pooled features; [] if the layout is unknown."""
    try:
        taps = layerwise_tap_points(backbone, granularity)
    except ConfigError:  # a backbone whose blocks cannot be inferred: pooled features only
        taps = []
    names = dict(backbone.named_modules())
    return [*taps, POOLED] if POOLED in names else taps


@torch.no_grad()
def _features(
    backbone: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, Any]],
    to_input: Callable[[torch.Tensor], torch.Tensor],
    taps: list[str],
    with_loss: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    pooled: dict[str, list[np.ndarray]] = {t: [] for t in taps}
    losses: list[np.ndarray] = []
    with FeatureTaps(backbone, taps) as recorder:
        for x, y, _ in batches:
            logits = backbone(to_input(x)).float()
            for tap in taps:
                # Averaged over space or patch tokens (ViT tokens, Swin's NHWC maps too).
                out = pool_output(backbone, recorder.outputs[tap].float())
                pooled[tap].append(out.cpu().numpy().astype(np.float64))
            if with_loss:  # source validation tiles only: their labels are allowed
                loss = F.cross_entropy(logits, y.to(logits.device), reduction="none")
                losses.append(loss.cpu().numpy().astype(np.float64))
    feats = {t: np.concatenate(v) for t, v in pooled.items() if v}
    return feats, (np.concatenate(losses) if losses else np.zeros(0))


def label_free_metrics(
    backbone: nn.Module,
    val_batches: Iterable,
    target_batches: Iterable,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    taps: list[str],
    seed: int = 0,
) -> dict[str, float]:
    """``dev_risk``, ``iwv_risk``, ``pad/<tap>`` and ``mmd/<tap>`` for one checkpoint.

    Empty dict when either sample has fewer than 4 tiles (nothing to estimate from).
    """
    was_training = backbone.training
    backbone.eval()
    try:
        val_feats, val_loss = _features(backbone, val_batches, to_input, taps, True)
        tgt_feats, _ = _features(backbone, target_batches, to_input, taps, False)
    finally:
        backbone.train(was_training)
    if val_loss.size < 4 or not tgt_feats or len(next(iter(tgt_feats.values()))) < 4:
        return {}
    metrics: dict[str, float] = {}
    if POOLED in val_feats:
        weights = density_ratio(val_feats[POOLED], tgt_feats[POOLED], seed=seed)
        metrics["dev_risk"] = dev_risk(val_loss, weights)
        metrics["iwv_risk"] = iwv_risk(val_loss, weights)
        metrics["val_loss"] = float(val_loss.mean())
    for tap in taps:
        metrics[f"pad/{tap}"] = proxy_a_distance(val_feats[tap], tgt_feats[tap], seed=seed)
        metrics[f"mmd/{tap}"] = linear_mmd(val_feats[tap], tgt_feats[tap])
    return metrics
