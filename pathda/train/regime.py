"""Which backbone parameters train, at which learning rate, and where domain heads may sit.

Regimes (``TrainConfig.finetune``), as foundation-model users know them:

- ``"full"``: every parameter trains (the paper's setting).
- ``"partial"``: the last ``finetune_blocks`` blocks and everything after them (final
  norm, classifier) train; the stem and earlier blocks are frozen.
- ``"linear"``: a linear probe; only the classifier trains.

"After" is parameter registration order, which in timm models follows the forward pass.
Frozen BatchNorm layers keep their running statistics (they stay in eval mode), so a frozen
part computes exactly what it computed before training.

Domain heads only make sense behind trainable layers: a head on a frozen block can change
nothing upstream of it. Default taps are therefore the method's taps that lie at or after the
first trainable module; a tap given explicitly on a frozen module is refused (ConfigError),
as is a layer-wise method with no trainable layer to adapt (a linear probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from pathda.errors import ConfigError
from pathda.models.structure import block_names

FINETUNE_MODES = ("full", "partial", "linear")


def freeze_backbone(backbone: nn.Module, mode: str, blocks: int = 0) -> str:
    """Freeze the backbone parameters that ``mode`` does not train.

    Args:
        backbone: A timm model.
        mode: ``"full"``, ``"partial"`` or ``"linear"`` (see the module docstring).
        blocks: K for ``"partial"``: how many of the last blocks train.

    Returns:
        The dotted name of the first trainable module (``""``: all of the backbone trains).

    Raises:
        ConfigError: Unknown mode, or K outside 1..number of blocks.
    """
    if mode not in FINETUNE_MODES:
        raise ConfigError(f"unknown finetune mode {mode!r}; use one of {', '.join(FINETUNE_MODES)}")
    if mode == "full":
        return ""
    if mode == "partial":
        names = block_names(backbone)
        if not 1 <= blocks <= len(names):
            raise ConfigError(
                f"finetune_blocks must be 1..{len(names)} for {type(backbone).__name__} "
                f"(its blocks: {names[0]} .. {names[-1]}), got {blocks}"
            )
        first = names[-blocks]
    else:
        first = _classifier_name(backbone)
    params = list(backbone.named_parameters())
    start = next(i for i, (n, _) in enumerate(params) if _inside(n, first))
    for _, param in params[:start]:
        param.requires_grad_(False)
    _keep_frozen_batchnorm_in_eval(backbone)
    return first


def _classifier_name(backbone: nn.Module) -> str:
    name = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier")
    name = name[0] if isinstance(name, (list, tuple)) else name
    if not name or not any(_inside(n, name) for n, _ in backbone.named_parameters()):
        raise ConfigError(
            f"cannot find the classifier of {type(backbone).__name__} for a linear probe "
            "(timm's pretrained_cfg['classifier'] names none)"
        )
    return name


def _inside(name: str, module: str) -> bool:
    return not module or name == module or name.startswith(module + ".")


def _keep_frozen_batchnorm_in_eval(backbone: nn.Module) -> None:
    # model.train() runs every step and would switch frozen BatchNorms back to updating their
    # running statistics; this pre-hook puts them back in eval mode before each forward.
    # (Swapping in FrozenBatchNorm2d would drop `num_batches_tracked` from the state dict,
    # so the exported weights would no longer load into the plain timm model.)
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.register_forward_pre_hook(_eval_mode)


def _eval_mode(module: nn.Module, _inputs: object) -> None:
    module.train(False)  # returns None: a pre-hook's return value would replace the input


def trainable_taps(
    backbone: nn.Module, taps: Sequence[str], first_trainable: str, *, explicit: bool
) -> list[str]:
    """The taps whose heads can change the backbone: at or after ``first_trainable``.

    Args:
        backbone: The (partly frozen) backbone.
        taps: Candidate taps (dotted module names).
        first_trainable: From :func:`freeze_backbone`.
        explicit: The user named the taps: a frozen one is an error, not silently dropped.

    Raises:
        ConfigError: An explicit tap on a frozen module.
    """
    if not first_trainable:
        return list(taps)
    order = {name: i for i, (name, _) in enumerate(backbone.named_modules())}
    start = order[first_trainable]
    frozen = [t for t in taps if order.get(t, start) < start]
    if frozen and explicit:
        raise ConfigError(
            f"taps {', '.join(frozen)} lie in the frozen part of the backbone (training starts "
            f"at {first_trainable}); a domain head there cannot change anything: tap trainable "
            "blocks or train more of them (finetune_blocks)"
        )
    return [t for t in taps if t not in frozen]


def enable_grad_checkpointing(backbone: nn.Module) -> None:
    """Recompute block activations in the backward pass (timm ``set_grad_checkpointing``).

    Gradients are unchanged (domain heads' too: their taps' outputs are recomputed like
    any other activation). Meant for big transformers (LayerNorm); in BatchNorm networks the
    recomputation updates the running statistics a second time per step.
    """
    if not hasattr(backbone, "set_grad_checkpointing"):
        raise ConfigError(f"{type(backbone).__name__} has no gradient checkpointing switch")
    backbone.set_grad_checkpointing(True)


def backbone_param_groups(
    backbone: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """Optimiser parameter groups of the trainable backbone parameters.

    With ``layer_decay < 1`` (layer-wise learning-rate decay, the usual ViT fine-tuning
    recipe) the layer ``i`` of ``L`` (timm's ``group_matcher``: embeddings 0, blocks
    1..L-2, final norm + classifier L-1) trains at ``lr * layer_decay ** (L - 1 - i)``; the
    weight decay stays ``weight_decay`` for every parameter, as in the paper.
    """
    params = [p for p in backbone.parameters() if p.requires_grad]
    if layer_decay == 1.0:
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(
        backbone, weight_decay=weight_decay, weight_decay_exclude_1d=False, layer_decay=layer_decay
    )
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return groups


def count_parameters(backbone: nn.Module) -> dict[str, int]:
    """``{"trainable": n, "frozen": n}`` parameter counts."""
    counts = {"trainable": 0, "frozen": 0}
    for p in backbone.parameters():
        counts["trainable" if p.requires_grad else "frozen"] += p.numel()
    return counts
