"""Dense inference: a timm ResNet patch classifier run fully convolutionally over large tiles.

A ResNet classifies a patch as ``fc(mean over the final feature map)``. The mean and
the linear layer commute, so the same numbers come from a 1x1 convolution with the
``fc`` weights over the feature map of a *whole tile*, followed by an average pool of
the patch's feature-map size (``patch / 32`` cells) stepping by the stride. Patches
that overlap then share every convolution: with stride = patch / 2 each pixel goes
through the network once instead of four times.

The patch stride must be a multiple of the network's total stride (``os``): a patch
starting between two feature cells has no feature map of its own. A ResNet's total
stride is 32; when the stride is only a multiple of 16 (e.g. 112 = 7 x 16) the network
is rebuilt with timm's ``output_stride=16`` (the last stage dilated instead of strided,
the "a trous" trick, same weights), whose feature map is the stride-32 map computed at
every 16 px; the patch pool then takes every 2nd cell. The last stage then runs at 4x
the positions, which costs about a third more time for a ResNet-18.

Where the outputs differ from patch-wise inference (``--mode patch``, the reference):
a patch read on its own is zero-padded at its own edges by every convolution, while
in a tile its border convolutions see the real neighbouring tissue. Each tile is read
with a margin of ``margin`` model px on every side so that the patches at the tile
edges also see real neighbours (their outputs then do not depend on where tiles cut);
zero padding remains only at the margin's outer edge, far from any patch that is used.
The difference to patch-wise inference is therefore a difference of context near patch
borders, not an error of the method; it is measured in ``docs/benchmarks/segment.md``.

Only global-context-free networks qualify: squeeze-excitation (``seresnet*``) or
attention blocks pool over the whole input, so a tile would give each block a different
context than a patch does; such models are refused with a message naming ``--mode patch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pathda.errors import ConfigError

if TYPE_CHECKING:
    from pathda.checkpoint import InferenceCheckpoint

NETWORK_STRIDE = 32
"""Total stride (input px per final feature cell) of a timm ResNet."""

OUTPUT_STRIDES = (32, 16)
"""Output strides used: 32, or 16 with the last stage dilated. (At 8, timm's average-pool
shortcut of ``resnet*d``/``resnet10t`` no longer matches the strided network, measured.)"""


def dense_unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot run densely, or None if it can (a plain timm ResNet)."""
    from timm.models.resnet import ResNet

    if not isinstance(model, ResNet):
        return f"{type(model).__name__} is not a timm ResNet"
    if getattr(model.global_pool, "pool_type", None) != "avg":
        return "its global pool is not a plain average"
    if not isinstance(model.fc, nn.Linear):
        return "its classifier is not a single linear layer"
    for name, block in model.named_modules():
        if getattr(block, "se", None) is not None:
            return f"block {name} has squeeze-excitation/attention (a global pool per block)"
    return None


def output_stride_for(stride_px: int, patch_px: int) -> int:
    """The network output stride that dense inference at ``stride_px`` needs.

    Args:
        stride_px: patch step, px at the model mpp.
        patch_px: patch side, px at the model mpp.

    Returns:
        The largest of :data:`OUTPUT_STRIDES` dividing ``stride_px`` (32 is fastest:
        16 runs the last stage at 4x the positions).

    Raises:
        ConfigError: the patch side is not a multiple of 32 or the stride not a multiple
            of 16, so patches do not start on feature-map cells.
    """
    if patch_px % NETWORK_STRIDE:
        raise ConfigError(
            f"dense mode needs a patch size that is a multiple of the network stride "
            f"{NETWORK_STRIDE} px, the model's is {patch_px} px; use --mode patch"
        )
    for os in OUTPUT_STRIDES:
        if stride_px % os == 0:
            return os
    raise ConfigError(
        f"dense mode needs a stride that is a multiple of the network's total stride "
        f"({NETWORK_STRIDE} px, or {min(OUTPUT_STRIDES)} px with a dilated last stage) so every "
        f"patch starts on a feature-map cell; got --stride {stride_px}: use e.g. "
        f"--stride {max(16, round(stride_px / 16) * 16)} or --mode patch"
    )


class DensePatchClassifier(nn.Module):
    """Per-patch logits of a grid of patches inside a tile, in one pass.

    Args:
        backbone: a timm ResNet built with ``output_stride`` (see :func:`build_dense_classifier`).
        patch_px: patch side, model px (a multiple of 32).
        stride_px: patch step, model px (a multiple of ``output_stride``).
        output_stride: input px per feature cell of ``backbone``.

    ``forward(x, offset)`` takes a (B, 3, H, W) normalised tile whose first patch starts
    ``offset`` px (a multiple of ``output_stride``) from the top-left corner and returns
    (B, C, rows, cols) logits, patch (r, c) starting at ``offset + (r, c) * stride_px``.
    """

    def __init__(
        self, backbone: nn.Module, patch_px: int, stride_px: int, output_stride: int
    ) -> None:
        super().__init__()
        if stride_px % output_stride or patch_px % NETWORK_STRIDE:
            raise ValueError("stride / patch do not fit the output stride")
        self.backbone = backbone
        self.output_stride = output_stride
        self.dilation = NETWORK_STRIDE // output_stride  # cell step of one stride-32 cell
        self.kernel = patch_px // NETWORK_STRIDE  # stride-32 cells per patch side
        self.step = stride_px // output_stride

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        features = self.backbone.forward_features(x)
        fc = self.backbone.fc
        # Linear first: C classes instead of 512+ channels go through the pool.
        cells = F.conv2d(features, fc.weight[:, :, None, None], fc.bias)
        first = offset // self.output_stride
        cells = cells[:, :, first:, first:]
        if self.dilation == 1:
            return F.avg_pool2d(cells, self.kernel, stride=self.step)
        classes = cells.shape[1]
        weight = cells.new_full((classes, 1, self.kernel, self.kernel), 1 / self.kernel**2)
        return F.conv2d(cells, weight, stride=self.step, dilation=self.dilation, groups=classes)


def build_dense_classifier(
    model: nn.Module, meta: InferenceCheckpoint, stride_px: int
) -> DensePatchClassifier:
    """The checkpoint's model, rebuilt for dense inference at ``stride_px`` (same weights).

    Raises:
        ConfigError: the architecture or the stride does not allow dense inference.
    """
    from pathda.adapt import create_backbone

    reason = dense_unsupported_reason(model)
    if reason is not None:
        raise ConfigError(f"dense mode cannot run {meta.arch!r}: {reason}; use --mode patch")
    patch_px = meta.patch_size
    os = output_stride_for(stride_px, patch_px)
    backbone = model
    if os != NETWORK_STRIDE:
        kwargs = {**meta.timm_kwargs, "output_stride": os}
        backbone = create_backbone(meta.arch, meta.num_classes, **kwargs)
        backbone.load_state_dict(model.state_dict())
        device = next(model.parameters()).device
        backbone = backbone.to(device).eval()
    return DensePatchClassifier(backbone, patch_px, stride_px, os).eval()
