"""Feature taps: forward hooks on named modules, and tap-point finders for timm backbones.

Default taps come from timm's ``feature_info`` (the modules at each reduction): ResNet
``layer1``..``layer4``, ConvNeXt ``stages.0``..``3``, Swin ``layers.0``..``3`` (stages, each
split into its blocks at block granularity) and ViT / EVA ``blocks.0``..``blocks.{depth-1}``
(a plain transformer has no stages: every block is a tap at either granularity).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from types import TracebackType

import torch
from torch import nn

from pathda.errors import ConfigError
from pathda.models.structure import block_names, stage_names

GRANULARITIES = ("block", "stage")
# Modules whose output is the pooled feature vector the classifier reads, in timm's names:
# ResNet-like `global_pool`; ConvNeXt/Swin `head.global_pool`; ViT/EVA pool in a function,
# then `head_drop` (dropout, identity at eval) passes the pooled [B, C] to the classifier.
POOLED_FEATURE_MODULES = ("global_pool", "head.global_pool", "head_drop")


def resolve_modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Look up modules by their dotted names in ``model.named_modules()``.

    Raises:
        ConfigError: A name is unknown (the message lists close matches), or repeated.
    """
    modules = dict(model.named_modules())
    found: dict[str, nn.Module] = {}
    for name in names:
        if name in found:
            raise ConfigError(f"tap point {name!r} is listed twice; list each module once")
        if not name or name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ConfigError(
                f"tap point {name!r} is not a module of {type(model).__name__}{hint} "
                "(names come from model.named_modules())"
            )
        found[name] = modules[name]
    return found


class FeatureTaps:
    """Record the outputs of named modules during each forward pass.

    Hooks are registered on construction and stay until :meth:`remove` (or the end of a
    ``with`` block). ``outputs`` holds the latest output of every tap, with its autograd
    graph, so losses on it backpropagate into the model.

    Args:
        model: Any module.
        names: Dotted module names, as in ``model.named_modules()`` (e.g. ``"layer3.5"``).

    Examples:
        >>> with FeatureTaps(model, ["layer1.0", "layer4.2"]) as taps:  # doctest: +SKIP
        ...     logits = model(x)
        ...     feats = taps.outputs["layer4.2"]
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._recorder(name))
            for name, module in resolve_modules(model, self.names).items()
        ]

    def _recorder(self, name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"tap point {name!r} returns {type(output).__name__}, not a tensor; "
                    "tap a module that returns one tensor"
                )
            self.outputs[name] = output

        return hook

    def clear(self) -> None:
        """Forget the recorded outputs (frees their graphs)."""
        self.outputs = {}

    def remove(self) -> None:
        """Unregister every hook; idempotent."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def pooled_tap_points(model: nn.Module) -> list[str]:
    """The pooled features just before the classifier (see ``POOLED_FEATURE_MODULES``).

    DANN's one tap (``global_pool`` on timm CNNs).

    Raises:
        ConfigError: The model has none of those modules (name the module yourself).
    """
    names = dict(model.named_modules())
    for name in POOLED_FEATURE_MODULES:
        if name in names:
            return [name]
    raise ConfigError(
        f"cannot find the pooled features of {type(model).__name__} (none of "
        f"{', '.join(POOLED_FEATURE_MODULES)}); name the module before the classifier"
    )


def layerwise_tap_points(model: nn.Module, granularity: str = "block") -> list[str]:
    """Every block output, or every stage output, of a timm backbone (layer-wise taps).

    Args:
        model: A timm model (uses its ``feature_info``).
        granularity: ``"block"`` (16 taps ``layer1.0`` .. ``layer4.2`` on SE-ResNet-50,
            12 ``blocks.i`` on ViT-B) or ``"stage"`` (``layer1`` .. ``layer4``; ViT: the
            blocks again).

    Raises:
        ConfigError: Unknown granularity, or a model whose layers cannot be inferred.
    """
    if granularity not in GRANULARITIES:
        raise ConfigError(
            f"unknown tap granularity {granularity!r}; use one of {', '.join(GRANULARITIES)}"
        )
    return stage_names(model) if granularity == "stage" else block_names(model)
