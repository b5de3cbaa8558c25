"""Backbone construction: timm architectures, random or pretrained, or a local weights file.

Random init never touches the network. ``pretrained="default"`` loads timm's default
pretrained weights of the architecture and ``pretrained="hf-hub:ORG/NAME"`` a hub model
(UNI, Virchow, H-optimus, ...), both through timm / ``huggingface_hub`` and the user's
Hugging Face cache (see :mod:`pathda.models.hub`). What rebuilds the network later without
the hub (architecture and constructor arguments) is a :class:`BackbonePlan`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathda.errors import ConfigError, PretrainedWeightsError
from pathda.models.hub import DEFAULT_TAG, BackboneSource, hub_errors, resolve_source


@dataclass(frozen=True)
class BackbonePlan:
    """How to build a backbone; ``arch`` + ``timm_kwargs`` rebuild it without the hub.

    Attributes:
        source: Architecture and pretrained weights source.
        num_classes: Output classes.
        timm_kwargs: Every ``timm.create_model`` argument besides name and classes
            (hub ``model_args``, ``img_size`` for fixed-size models, ``in_chans``, ...).
    """

    source: BackboneSource
    num_classes: int
    timm_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return self.source.arch


def _check_arch(arch: str) -> None:
    import timm

    base = arch.split(".", 1)[0]  # "vit_small_patch16_224.augreg_in1k": name.tag
    if base not in timm.list_models():
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown timm architecture {arch!r}{hint}")


def _timm_pretrained_cfg(arch: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def plan_backbone(
    arch: str = "seresnet50",
    num_classes: int = 4,
    *,
    pretrained: str | None = None,
    input_size: int | None = None,
    in_chans: int = 3,
    **timm_kwargs: Any,
) -> BackbonePlan:
    """Resolve the architecture and constructor arguments of a backbone (no weights yet).

    Args:
        arch: timm model name, optionally with a pretrained tag (``name.tag``); replaced
            by the hub's architecture when ``pretrained`` names a hub model.
        num_classes: Output classes.
        pretrained: ``None``, ``"default"`` or ``"hf-hub:ORG/NAME"``.
        input_size: Tile side in pixels. Architectures with a fixed input size (ViT, EVA,
            Swin) are built for it (``img_size``); timm resamples the position embeddings
            of pretrained weights to fit.
        in_chans: Input channels.
        **timm_kwargs: More ``timm.create_model`` arguments (e.g. ``drop_path_rate``).

    Raises:
        ConfigError: Unknown architecture.
        PretrainedWeightsError: The pretrained source cannot be resolved.
    """
    source = resolve_source(arch, pretrained)
    _check_arch(source.arch)
    kwargs = {**source.model_args, **timm_kwargs}
    if in_chans != 3 or "in_chans" in kwargs:
        kwargs["in_chans"] = in_chans
    # Fixed input size is a property of the architecture (timm's registry), whatever the
    # hub config of a resized export says.
    fixed = _timm_pretrained_cfg(source.arch).get("fixed_input_size", False)
    if kwargs.get("dynamic_img_size"):
        fixed = False
    if input_size is not None and fixed and "img_size" not in timm_kwargs:
        kwargs["img_size"] = int(input_size)
    return BackbonePlan(source, int(num_classes), kwargs)


def build_backbone(plan: BackbonePlan, weights: Path | str | None = None) -> nn.Module:
    """Build the timm classifier of ``plan``, loading pretrained or local weights.

    Raises:
        ConfigError: Both a pretrained source and a local file, or a bad weights file.
        PretrainedWeightsError: Weights cannot be fetched (gated, offline and not cached).
    """
    import timm

    pretrained = plan.source.pretrained
    if pretrained is not None and weights is not None:
        raise ConfigError("give either pretrained weights or a local weights file, not both")
    if pretrained == DEFAULT_TAG:
        cfg = _timm_pretrained_cfg(plan.arch)
        if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
            raise PretrainedWeightsError(
                f"timm has no pretrained weights for {plan.arch!r}; list the ones it has with "
                f"timm.list_pretrained('{plan.arch.split('.')[0]}*')"
            )
    if pretrained is None:
        model = timm.create_model(
            plan.arch, pretrained=False, num_classes=plan.num_classes, **plan.timm_kwargs
        )
    else:
        with hub_errors(pretrained if plan.source.is_hub else f"pretrained {plan.arch}"):
            try:
                model = timm.create_model(
                    plan.source.timm_name,
                    pretrained=True,
                    num_classes=plan.num_classes,
                    **plan.timm_kwargs,
                )
            except OSError as err:  # URL downloads (weights not on the hub) fail this way
                if type(err).__module__.startswith("huggingface_hub"):
                    raise
                raise PretrainedWeightsError(
                    f"cannot download pretrained {plan.arch} ({err}); run once with network "
                    "access, or start from a local weights file instead"
                ) from err
    if weights is not None:
        load_backbone_weights(model, Path(weights))
    return model


def create_backbone(
    arch: str = "seresnet50",
    num_classes: int = 4,
    weights: Path | str | None = None,
    in_chans: int = 3,
    *,
    pretrained: str | None = None,
    input_size: int | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a timm classifier: random, pretrained (``pretrained``) or from a local file.

    Args:
        arch: timm model name (``timm.list_models()``), optionally ``name.tag``.
        num_classes: Output classes (pathda: normal, benign, in situ, invasive).
        weights: Local ``.pth``/``.pt`` file holding a state dict, or a dict with it under
            ``"state_dict"`` or ``"model"`` (``module.``/``backbone.`` prefixes are stripped).
            A classifier whose shape differs from ``num_classes`` is dropped (left freshly
            initialised); every other tensor must match exactly.
        in_chans: Input channels.
        pretrained: ``None`` (random), ``"default"`` (timm's default tag) or
            ``"hf-hub:ORG/NAME"`` (see :func:`plan_backbone`).
        input_size: Tile side in pixels, for fixed-input-size architectures.
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``drop_rate``).

    Raises:
        ConfigError: Unknown architecture, missing or incompatible weights file.
        PretrainedWeightsError: Pretrained weights cannot be fetched.

    Examples:
        >>> net = create_backbone("resnet10t", 4)  # random init, no network
    """
    plan = plan_backbone(
        arch,
        num_classes,
        pretrained=pretrained,
        input_size=input_size,
        in_chans=in_chans,
        **timm_kwargs,
    )
    return build_backbone(plan, weights)


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
