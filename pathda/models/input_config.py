"""The input a backbone expects, read from its pretrained config (timm ``resolve_data_config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelInputConfig:
    """Normalisation and input size a backbone was pretrained with.

    Attributes:
        mean: Per-channel mean of float images in [0, 1] (ImageNet's for most timm
            weights, 0.5 for many ViTs, the hub config's for foundation models).
        std: Per-channel standard deviation.
        input_size: ``(C, H, W)`` in pixels the weights were trained at.
        interpolation: Resampling timm used when resizing (informational; pathda reads
            tiles at the training mpp instead of resizing).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
        }


def model_input_config(model: nn.Module) -> ModelInputConfig:
    """The :class:`ModelInputConfig` of a timm model (its ``pretrained_cfg``)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return ModelInputConfig(
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        input_size=tuple(int(v) for v in cfg["input_size"]),
        interpolation=str(cfg.get("interpolation", "bilinear")),
    )
