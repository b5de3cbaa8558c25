"""Adaptation methods (registry): how one training step computes and applies its losses.

Names: ``none`` (source-only), ``dann`` (one domain head on the pooled features, Ganin &
Lempitsky), ``ldann`` (a head after every block, paper section 2.1) and ``lwass`` (a
Wasserstein critic with gradient penalty after every block, section 2.2 / Algorithm 1).
``none`` lives here, the others in ``dann.py`` and ``wasserstein.py``; importing
``pathda.adapt`` registers them all.

A step takes one source batch (labelled) and one target batch (unlabelled), runs them
through the backbone together (one forward, so BatchNorm sees both domains), and updates
the backbone and the heads. Domain labels: source 0, target 1 (or ``domain_tgt`` in
1..n_domains-1).

Layer weighting: by default every tapped layer's domain loss enters with weight 1
(``layer_weighting="sum"``). The paper attaches the objective "at each layer" and scales
nothing ("we do not use a constant lambda"), so a sum is its literal reading; it also keeps
the last head as strong as in single-head DANN, whereas a mean would weaken every head
16-fold on SE-ResNet-50. ``"mean"`` (1/n per layer) and per-layer overrides are available.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pathda.adapt.attach import GRANULARITIES
from pathda.adapt.model import DomainAdaptationModel
from pathda.errors import ConfigError
from pathda.registry import Registry

Optimizers = Mapping[str, torch.optim.Optimizer]
"""``{"model": optimiser over the backbone, "heads": optimiser over the heads}``."""

LAYER_WEIGHTINGS = ("sum", "mean")
METHODS: Registry[type[AdaptationMethod]] = Registry("adaptation method")
"""The only list of method names: config validation, reports and tests ask it."""


def register_method(name: str, title: str | None = None):
    """Class decorator adding an :class:`AdaptationMethod` subclass to :data:`METHODS`.

    Args:
        name: Registry key (``--method`` value, results folder name).
        title: Display name in reports (default: ``name``).
    """

    def register(cls: type[AdaptationMethod]) -> type[AdaptationMethod]:
        cls.name = name
        cls.title = title or name
        return METHODS.add(name, cls)

    return register


def create_method(name: str, **config: object) -> AdaptationMethod:
    """Build a registered method, e.g. ``create_method("lwass", n_critic=5, gp_weight=10)``.

    Raises:
        ConfigError: Unknown method name or configuration key, or an invalid value.
    """
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no setting {', '.join(unknown)}; "
            f"valid settings: {', '.join(sorted(fields))}"
        )
    return cls(**config)


def float_metrics(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Metrics as Python floats."""
    # One device sync for all metrics instead of one per .item().
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    stacked = [v.detach().float().reshape(()) for v in tensors.values()]
    values = torch.stack(stacked).tolist() if stacked else []
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
    out.update(zip(tensors, values, strict=True))
    return out


@dataclass
class AdaptationMethod:
    """Base class: source-only training plus the shared settings.

    Attributes:
        reduction: r of every :class:`DomainHead` (paper: 16).
        layer_weighting: ``"sum"`` (weight 1 per layer, the default, see module docstring)
            or ``"mean"`` (1 / number of layers).
        granularity: Default taps for layer-wise methods: ``"block"`` or ``"stage"``.
        amp_dtype: ``None`` (float32) or ``"bfloat16"``: the forward runs under
            ``torch.autocast`` with this dtype; critics and penalties stay float32. (A
            caller may instead wrap ``step`` in its own autocast region; that works too.)
        n_critic: Critic updates per step (0: the method has no critic; a setting of
            ``lwass`` only).

    Class attributes (set per method, not per run):
        name, title: Registry key and display name (from :func:`register_method`).
        adapts: Whether the method trains on target batches through heads on tap points
            (``False``: source-only, no taps, no target data loaded).
        train_options: Method setting -> the training option that sets it
            (``pathda.train.TrainConfig`` fields, plus ``n_domains`` and ``amp_dtype``,
            which the training run derives); see :meth:`from_train_options`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    adapts: ClassVar[bool] = False
    train_options: ClassVar[Mapping[str, str]] = {
        "granularity": "granularity",
        "amp_dtype": "amp_dtype",
    }
    reduction: int = 16
    layer_weighting: str = "sum"
    granularity: str = "block"
    amp_dtype: str | None = None
    n_critic: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise ConfigError(f"unknown layer_weighting {self.layer_weighting!r}; use sum or mean")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"unknown granularity {self.granularity!r}; use block or stage")
        if self.amp_dtype not in (None, "bfloat16"):
            raise ConfigError(
                f"amp_dtype {self.amp_dtype!r} is not supported; use bfloat16 or leave it unset "
                "(float16 would need gradient scaling)"
            )
        if self.reduction < 1:
            raise ConfigError(f"reduction must be >= 1, got {self.reduction}")

    @classmethod
    def from_train_options(cls, options: Mapping[str, object]) -> AdaptationMethod:
        """Build the method from training options, taking only the settings it owns.

        ``options`` holds every training option (most belong to other methods); each
        method maps its own settings onto them in ``train_options``, so an option's
        name in the training config may differ from the method's setting (e.g. DANN's
        ``grl_constant`` is set by ``grl_coefficient``).
        """
        settings = {
            setting: options[option]
            for setting, option in cls.train_options.items()
            if option in options
        }
        return cls(**settings)

    # -- model construction -------------------------------------------------------------
    def make_head(self, channels: int) -> nn.Module | None:
        """The head for a tap with ``channels`` channels (None: the method uses no heads)."""
        return None

    def default_tap_points(self, backbone: nn.Module) -> list[str]:
        """Default tap points of this method on a timm backbone (none without heads)."""
        return []

    def build_model(
        self,
        backbone: nn.Module,
        tap_points: Sequence[str] | None = None,
        input_size: tuple[int, int, int] = (3, 64, 64),
    ) -> DomainAdaptationModel:
        """Wrap ``backbone`` with this method's heads on ``tap_points`` (default: inferred).

        Args:
            backbone: Classifier ``x -> logits``.
            tap_points: Dotted module names; ``None`` infers them for timm backbones.
            input_size: ``(C, H, W)`` in pixels for the dry run that sizes the heads.
        """
        if tap_points is None:
            tap_points = self.default_tap_points(backbone)
        if not self.adapts and tap_points:
            raise ConfigError(f"method {self.name!r} takes no tap points")
        if self.adapts and not tap_points:
            raise ConfigError(f"method {self.name!r} needs at least one tap point")
        return DomainAdaptationModel(backbone, tap_points, self.make_head, input_size)

    # -- helpers shared by the steps ----------------------------------------------------
    def layer_weights(
        self, tap_points: Sequence[str], overrides: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Weight of each tap's domain term: the default scheme, times any per-tap override."""
        base = 1.0 if self.layer_weighting == "sum" else 1.0 / max(1, len(tap_points))
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(tap_points))
        if unknown:
            raise ConfigError(
                f"layer weights name unknown taps {', '.join(unknown)}; "
                f"taps are {', '.join(tap_points)}"
            )
        return {tap: base * float(overrides.get(tap, 1.0)) for tap in tap_points}

    def _autocast(self, device: torch.device):
        # No autocast(enabled=False) here: it would switch off a caller's own autocast region.
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=getattr(torch, self.amp_dtype))

    @staticmethod
    def _zero_grad(optimizers: Optimizers) -> None:
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    # -- the step -----------------------------------------------------------------------
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
        """One optimisation step on a source batch (and a target batch).

        Args:
            model: The wrapped backbone (from :meth:`build_model`).
            optimizers: From :func:`build_optimizers`.
            x_src: ``[B_s, C, H, W]`` source images.
            y_src: ``[B_s]`` source class indices.
            x_tgt: ``[B_t, C, H, W]`` target images (unused by ``none``).
            progress: Fraction of training done, in [0, 1] (for GRL schedules).
            layer_weights: Optional per-tap multipliers of the domain terms.
            domain_tgt: ``[B_t]`` target domain indices in 1..n_domains-1 (default 1).

        Returns:
            Float metrics: ``loss_cls``, ``acc_cls`` (source batch) and method-specific
            terms (see each method).
        """
        model.train()
        self._zero_grad(optimizers)
        with self._autocast(x_src.device):
            logits = model(x_src)
            loss_cls = F.cross_entropy(logits, y_src)
        loss_cls.backward()
        optimizers["model"].step()
        return float_metrics({"loss_cls": loss_cls, "acc_cls": accuracy(logits, y_src)})


def weighted_layer_sum(values: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """``sum_g weights[g] * values[g]`` over a group of layers' ``[G]`` loss terms (0-d)."""
    if len(set(weights)) == 1:  # the default: no per-layer weight tensor (a host copy) needed
        return weights[0] * values.sum()
    return (values * values.new_tensor(list(weights))).sum()


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax predictions equal to ``target`` (a 0-d tensor, no sync)."""
    return (logits.detach().argmax(dim=1) == target).float().mean()


register_method("none", title="No adaptation")(AdaptationMethod)


def default_tap_points(model: nn.Module, method: str, granularity: str = "block") -> list[str]:
    """Where ``method`` attaches its heads on a timm backbone by default.

    Args:
        model: A timm model.
        method: A name in :data:`METHODS`.
        granularity: ``"block"`` or ``"stage"`` (layer-wise methods only).

    Raises:
        ConfigError: Unknown method or granularity, or a model whose layers cannot be
            inferred (then name the modules yourself).
    """
    return create_method(method, granularity=granularity).default_tap_points(model)


def domain_labels(
    n_src: int, x_tgt: torch.Tensor | None, domain_tgt: torch.Tensor | None = None
) -> torch.Tensor:
    """Domain index per sample of ``cat([x_src, x_tgt])``: 0 for source, 1 (or ``domain_tgt``)."""
    if x_tgt is None:
        raise ValueError("domain adaptation needs a target batch (x_tgt), got None")
    device = x_tgt.device
    src = torch.zeros(n_src, dtype=torch.long, device=device)
    if domain_tgt is None:
        tgt = torch.ones(x_tgt.shape[0], dtype=torch.long, device=device)
    else:
        tgt = domain_tgt.to(device=device, dtype=torch.long)
        if tgt.shape != (x_tgt.shape[0],):
            raise ValueError(f"domain_tgt must have shape [{x_tgt.shape[0]}]")
    return torch.cat([src, tgt])


def build_optimizers(
    model: DomainAdaptationModel,
    method: AdaptationMethod,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    backbone_groups: list[dict] | None = None,
) -> dict[str, torch.optim.Optimizer]:
    """SGD for the backbone (``"model"``) and for the heads (``"heads"``, absent without heads).

    Defaults are the paper's (section 3.1), used for every network. ``backbone_groups``
    replaces the backbone's parameters by parameter groups (e.g. only the trainable ones,
    each with its own ``lr`` for layer-wise learning-rate decay).

    Raises:
        ValueError: The model's heads do not match the method (built for another one).
    """
    has_heads = len(model.heads) > 0
    if has_heads != (method.make_head(1) is not None):
        raise ValueError(
            f"model heads do not fit method {method.name!r}; build it with method.build_model"
        )

    def sgd(params) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    optimizers = {"model": sgd(backbone_groups or model.backbone.parameters())}
    if has_heads:
        optimizers["heads"] = sgd(model.heads.parameters())
    return optimizers
