"""The backbone + domain-heads wrapper (backbones themselves come from ``pathda.models``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pathda.adapt.attach import FeatureTaps, resolve_modules
from pathda.adapt.layout import channels_first, output_layout, prefix_tokens
from pathda.errors import ConfigError

HeadFactory = Callable[[int], nn.Module]
"""Builds the head for one tap from its channel count C'."""


class DomainAdaptationModel(nn.Module):
    """A classifier with domain heads on named layers; the heads cost nothing at inference.

    The heads are sized from a dry-run forward (no gradient, eval mode, batch 1) that
    records each tap's channel count C' and layout, so any backbone works:

    - ``[B, C', H', W']`` feature maps (CNNs) are used as they are;
    - ``[B, H', W', C']`` maps of channels-last backbones (timm Swin, whose
      ``output_fmt`` is ``"NHWC"``) are viewed channels-first;
    - ``[B, N, C']`` token sequences (ViT, EVA blocks) drop the backbone's
      ``num_prefix_tokens`` leading tokens (class and register tokens: they are
      summaries the classifier reads, not image content, so only patch tokens describe
      the tile's appearance) and are viewed as ``[B, C', N - prefix, 1]``, so the heads'
      average pool is the mean over patch tokens;
    - ``[B, C']`` outputs (e.g. a pooling or Linear layer) are used as they are.

    Every re-layout is a view (no copy). Hooks are attached only inside
    :meth:`forward_train`.

    Args:
        backbone: Any classifier ``x -> logits``.
        tap_points: Dotted module names of ``backbone`` to adapt (may be empty).
        head_factory: Builds a head from C' (see ``AdaptationMethod.make_head``); required
            when ``tap_points`` is not empty.
        input_size: ``(C, H, W)`` of the dry-run input in pixels; only the channel count
            matters for conv taps, but transformers and taps after a flatten need the
            real tile size.

    Attributes:
        backbone: The wrapped classifier.
        heads: ``nn.ModuleDict`` tap name -> head (``.`` in names is stored as ``/``, see
            :meth:`head`).
        tap_points: The tap names, in order.
        tap_channels: Tap name -> C'.
        tap_layouts: Tap name -> ``"NCHW"``, ``"NHWC"``, ``"NLC"`` (tokens) or ``"NC"``.
        prefix_tokens: Leading non-patch tokens dropped from token taps.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tap_points: Sequence[str],
        head_factory: HeadFactory | None = None,
        input_size: tuple[int, int, int] = (3, 64, 64),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tap_points = list(tap_points)
        self.prefix_tokens = prefix_tokens(backbone)
        resolve_modules(backbone, self.tap_points)  # fail early, with close matches
        if self.tap_points and head_factory is None:
            raise ValueError("tap points were given but no head factory; pass the method's")
        self.tap_layouts: dict[str, str] = {}
        self.tap_channels = self._probe_channels(input_size) if self.tap_points else {}
        self.heads = nn.ModuleDict()
        param = next(backbone.parameters(), None)
        for name, channels in self.tap_channels.items():
            head = head_factory(channels)
            if param is not None:
                head = head.to(device=param.device, dtype=param.dtype)
            # ModuleDict keys may not contain "."; "/" never occurs in module names.
            self.heads[name.replace(".", "/")] = head

    @torch.no_grad()
    def _probe_channels(self, input_size: tuple[int, int, int]) -> dict[str, int]:
        param = next(self.backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        was_training = self.backbone.training
        self.backbone.eval()  # keep the BatchNorm running statistics untouched
        try:
            with FeatureTaps(self.backbone, self.tap_points) as taps:
                self.backbone(torch.zeros((1, *input_size), device=device, dtype=dtype))
                outputs = dict(taps.outputs)
        finally:
            self.backbone.train(was_training)
        channels = {}
        for name in self.tap_points:
            if name not in outputs:
                raise ConfigError(f"tap point {name!r} is not called in the forward pass")
            out = outputs[name]
            layout = output_layout(self.backbone, out)
            if layout is None:
                raise ConfigError(
                    f"tap point {name!r} outputs shape {tuple(out.shape)}; tap a module whose "
                    "output is [B, C, H, W], [B, H, W, C], [B, N, C] (tokens) or [B, C]"
                )
            if layout == "NLC" and out.shape[1] <= self.prefix_tokens:
                raise ConfigError(
                    f"tap point {name!r} outputs {out.shape[1]} tokens, none of them a patch "
                    f"token ({self.prefix_tokens} class/register tokens); tap a block"
                )
            self.tap_layouts[name] = layout
            channels[name] = int(out.shape[-1] if layout in ("NHWC", "NLC") else out.shape[1])
        return channels

    def channels_first(self, tap: str, output: torch.Tensor) -> torch.Tensor:
        """A tap's output channels first; tokens become ``[B, C', N_patch, 1]``."""
        return channels_first(output, self.tap_layouts[tap], self.prefix_tokens)

    def head(self, tap: str) -> nn.Module:
        """The head attached to tap ``tap`` (a dotted module name)."""
        return self.heads[tap.replace(".", "/")]

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B, n_classes]``; with ``return_features`` also the tapped features.

        ``return_features`` lets a DistributedDataParallel wrapper route training through
        ``forward`` (DDP only syncs gradients of what its own forward ran).
        """
        if not return_features:
            return self.backbone(x)
        return self.forward_train(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and ``{tap name: tapped output}``, channels first (see :meth:`channels_first`)."""
        if not self.tap_points:
            return self.backbone(x), {}
        with FeatureTaps(self.backbone, self.tap_points) as taps:
            logits = self.backbone(x)
            return logits, {t: self.channels_first(t, out) for t, out in taps.outputs.items()}

    def export_inference_state(self) -> dict[str, torch.Tensor]:
        """The backbone's state dict only: loadable into the plain timm model, heads dropped."""
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
