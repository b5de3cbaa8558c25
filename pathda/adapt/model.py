"""Backbone construction (timm, local weights only) and the backbone + domain-heads wrapper."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathda.adapt.attach import FeatureTaps, resolve_modules
from pathda.errors import ConfigError

HeadFactory = Callable[[int], nn.Module]
"""Builds the head for one tap from its channel count C'."""


def create_backbone(
    arch: str = "seresnet50",
    num_classes: int = 4,
    weights: Path | str | None = None,
    in_chans: int = 3,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a timm classifier, optionally loading a local weights file. Never downloads.

    Args:
        arch: timm model name (``timm.list_models()``).
        num_classes: Output classes (pathda: normal, benign, in situ, invasive).
        weights: Local ``.pth``/``.pt`` file holding a state dict, or a dict with it under
            ``"state_dict"`` or ``"model"`` (``module.``/``backbone.`` prefixes are stripped).
            A classifier whose shape differs from ``num_classes`` is dropped (left freshly
            initialised); every other tensor must match exactly.
        in_chans: Input channels.
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``drop_rate``).

    Raises:
        ConfigError: Unknown architecture, missing or incompatible weights file.
    """
    import timm

    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown timm architecture {arch!r}{hint}")
    model = timm.create_model(
        arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **timm_kwargs
    )
    if weights is not None:
        load_backbone_weights(model, Path(weights))
    return model


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(
            f"{path} does not hold a state dict (nor one under 'state_dict'/'model'); "
            "save it with torch.save(model.state_dict(), path)"
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DistributedDataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    if any(k.startswith("backbone.") for k in obj):  # a DomainAdaptationModel: drop its heads
        obj = {k[len("backbone.") :]: v for k, v in obj.items() if k.startswith("backbone.")}
    return obj


def _classifier_keys(model: nn.Module) -> set[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = [names] if isinstance(names, str) else list(names)
    return {f"{n}.{p}" for n in names for p in ("weight", "bias")}


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a local weights file into ``model`` (see :func:`create_backbone`)."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} not found; give an existing local .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types; all mean "not a weights file"
        raise ConfigError(f"cannot read weights file {path}: {exc}".splitlines()[0]) from exc
    state = _unwrap_state_dict(obj, path)
    own = model.state_dict()
    classifier = _classifier_keys(model)
    # A classifier for another number of classes is dropped and stays freshly initialised.
    state = {
        k: v
        for k, v in state.items()
        if not (k in classifier and k in own and own[k].shape != v.shape)
    }
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state) - classifier)
    unexpected = sorted(set(state) - set(own))
    if mismatched or missing or unexpected:
        detail = (
            f"shape mismatch {mismatched[:3]}"
            if mismatched
            else f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
        )
        raise ConfigError(
            f"weights file {path} does not fit {type(model).__name__} ({detail}); "
            "use weights saved from the same architecture"
        )
    model.load_state_dict(state, strict=False)


class DomainAdaptationModel(nn.Module):
    """A classifier with domain heads on named layers; the heads cost nothing at inference.

    The heads are sized from a dry-run forward (no gradient, eval mode, batch 1) that
    records each tap's channel count C', so any backbone works: 4-D tap outputs are
    squeezed by average pooling, 2-D ones (e.g. a Linear layer) are used as they are.
    Hooks are attached only inside :meth:`forward_train`.

    Args:
        backbone: Any classifier ``x -> logits``.
        tap_points: Dotted module names of ``backbone`` to adapt (may be empty).
        head_factory: Builds a head from C' (see ``AdaptationMethod.make_head``); required
            when ``tap_points`` is not empty.
        input_size: ``(C, H, W)`` of the dry-run input in pixels; only the channel count
            matters for conv taps, but a tap after a flatten needs the real tile size.

    Attributes:
        backbone: The wrapped classifier.
        heads: ``nn.ModuleDict`` tap name -> head (``.`` in names is stored as ``/``, see
            :meth:`head`).
        tap_points: The tap names, in order.
        tap_channels: Tap name -> C'.
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
        resolve_modules(backbone, self.tap_points)  # fail early, with close matches
        if self.tap_points and head_factory is None:
            raise ConfigError("tap points were given but no head factory; pass the method's")
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
            if out.ndim not in (2, 4):
                raise ConfigError(
                    f"tap point {name!r} outputs shape {tuple(out.shape)}; "
                    "tap a module whose output is [B, C, H, W] or [B, C]"
                )
            channels[name] = int(out.shape[1])
        return channels

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
        """Logits and ``{tap name: raw tapped output}`` (``[B, C', H', W']`` or ``[B, C']``)."""
        if not self.tap_points:
            return self.backbone(x), {}
        with FeatureTaps(self.backbone, self.tap_points) as taps:
            logits = self.backbone(x)
            return logits, dict(taps.outputs)

    def export_inference_state(self) -> dict[str, torch.Tensor]:
        """The backbone's state dict only: loadable into the plain timm model, heads dropped."""
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
