"""The one reading of a ``device`` setting (train, segment, stain apply)."""

from __future__ import annotations

import torch

from pathda.errors import ConfigError


def resolve_device(
    name: str | torch.device = "auto", *, local_rank: int | None = None
) -> torch.device:
    """The torch device that a ``device`` setting names.

    Args:
        name: ``"auto"`` (CUDA if available, else the CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``, or a ``torch.device``.
        local_rank: In distributed training, this process's GPU (overrides ``N``).

    Returns:
        A ``torch.device``; a CUDA device always carries its index (``cuda`` -> ``cuda:0``).

    Raises:
        ConfigError: An unknown device, or CUDA asked for where there is none.
    """
    text = str(name)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"unknown device {text!r}; set `device` to auto, cpu, cuda or cuda:N"
        ) from err
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(
            f"`device` is {text!r} but CUDA is not available here; set `device` to cpu or auto"
        )
    return torch.device("cuda", local_rank if local_rank is not None else device.index or 0)
