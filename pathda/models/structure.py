"""The stages and blocks of a timm backbone, in forward order (for taps and partial fine-tuning)."""

from __future__ import annotations

from torch import nn

from pathda.errors import ConfigError


def stage_names(model: nn.Module) -> list[str]:
    """Dotted names of the body's stages: ResNet ``layer1``..``4``, ConvNeXt ``stages.0``..``3``,
    Swin ``layers.0``..``3``; a plain transformer (ViT, EVA) lists its blocks ``blocks.i``.

    Raises:
        ConfigError: The model has no timm ``feature_info`` (name modules explicitly).
    """
    # timm's feature_info lists the modules at each reduction; the stem (reduction 2) is not a
    # stage of the body, so only reductions >= 4 count.
    info = getattr(model, "feature_info", None)
    if not info:
        raise ConfigError(
            f"cannot find the stages of {type(model).__name__} (it has no timm feature_info); "
            "name the modules explicitly"
        )
    names = [entry["module"] for entry in info if entry.get("reduction", 1) >= 4]
    if not names:
        raise ConfigError(f"{type(model).__name__} lists no stages; name the modules explicitly")
    return names


def block_names(model: nn.Module) -> list[str]:
    """Dotted names of every block, in forward order (``layer1.0`` .. ``layer4.2``, ``blocks.i``,
    ``layers.s.blocks.b``, ``stages.s.blocks.b``)."""
    return [block for stage in stage_names(model) for block in _blocks_of(model, stage)]


def _blocks_of(model: nn.Module, stage: str) -> list[str]:
    module = model.get_submodule(stage)
    # A stage is a Sequential of blocks (ResNet) or holds one under `.blocks` (ConvNeXt, Swin).
    if isinstance(module, nn.Sequential):
        return [f"{stage}.{child}" for child, _ in module.named_children()]
    blocks = getattr(module, "blocks", None)
    if isinstance(blocks, nn.Sequential):
        return [f"{stage}.blocks.{child}" for child, _ in blocks.named_children()]
    return [stage]  # a transformer block is its own stage
