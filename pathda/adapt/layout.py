"""How a tapped output is laid out, and its channels-first view (pure functions).

CNN blocks give ``[B, C, H, W]``; timm Swin (``output_fmt == "NHWC"``) gives
``[B, H, W, C]``; ViT / EVA blocks give tokens ``[B, N, C]`` whose first
``num_prefix_tokens`` are class / register tokens; poolings and Linear layers give ``[B, C]``.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUTS = ("NC", "NLC", "NCHW", "NHWC")


def prefix_tokens(backbone: nn.Module) -> int:
    """Leading non-patch tokens (class + register) of a transformer backbone; 0 otherwise."""
    return int(getattr(backbone, "num_prefix_tokens", 0) or 0)


def output_layout(backbone: nn.Module, output: torch.Tensor) -> str | None:
    """The layout of one tapped output of ``backbone`` (None: not a feature tensor)."""
    maps = "NHWC" if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else "NCHW"
    return {2: "NC", 3: "NLC", 4: maps}.get(output.ndim)


def channels_first(output: torch.Tensor, layout: str, n_prefix: int = 0) -> torch.Tensor:
    """A view as ``[B, C, H, W]`` (tokens: ``[B, C, N - n_prefix, 1]``, prefix dropped) or
    ``[B, C]``; averaging it over dims 2 and 3 pools over space or over patch tokens."""
    if layout == "NHWC":
        return output.permute(0, 3, 1, 2)
    if layout == "NLC":
        return output[:, n_prefix:, :].transpose(1, 2).unsqueeze(-1)
    return output


def pooled(backbone: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: a tapped output averaged over space or patch tokens, whatever its layout."""
    layout = output_layout(backbone, output)
    if layout is None:
        return output.flatten(1)
    view = channels_first(output, layout, prefix_tokens(backbone))
    return view.mean(dim=(2, 3)) if view.ndim == 4 else view
