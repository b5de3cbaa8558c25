"""Inference checkpoints: the one file training hands to segmentation.

A checkpoint is a ``torch.save`` dict holding the backbone weights (no domain
heads) and everything needed to reproduce the training-time input pipeline::

    {"format": "pathda-inference/1", "arch": str, "num_classes": int,
     "timm_kwargs": dict, "state_dict": backbone state_dict,
     "class_map": ClassMap.to_dict(), "mpp": float (µm/px of training patches),
     "patch_size": int (px at ``mpp``), "stain": normaliser.to_dict() or None,
     "normalise": {"mean": [3 floats], "std": [3 floats]} (applied to float /255 images),
     "provenance": {...}}

It holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pathda.atomic import atomic_path
from pathda.device import resolve_device
from pathda.errors import CheckpointError

CHECKPOINT_FORMAT = "pathda-inference/1"

_META_KEYS = (
    "arch",
    "num_classes",
    "timm_kwargs",
    "class_map",
    "mpp",
    "patch_size",
    "stain",
    "normalise",
    "provenance",
)


def save_inference_checkpoint(
    path: str | Path, model: torch.nn.Module, meta: Mapping[str, Any]
) -> Path:
    """Write an inference checkpoint atomically.

    Args:
        path: destination ``.pt`` file.
        model: the backbone (as made by ``pathda.models.create_backbone``), without domain heads.
        meta: the keys listed in the module docstring except ``format`` and ``state_dict``:
            arch, num_classes, timm_kwargs, class_map, mpp (µm/px), patch_size (px at mpp),
            stain (dict or None), normalise ({"mean", "std"}), provenance.

    Returns:
        The path written.
    """
    path = Path(path)
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
    payload.update({k: _plain(meta.get(k)) for k in _META_KEYS})
    payload["timm_kwargs"] = dict(payload["timm_kwargs"] or {})
    payload["provenance"] = dict(payload["provenance"] or {})
    payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _validate(payload, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_inference_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the checkpoint dict without building a model (weights stay on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; pass the .pt file written by training"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt / foreign files
        raise CheckpointError(
            f"{path}: not a readable pathda checkpoint ({type(err).__name__}); "
            "pass the .pt file written by `pathda train`"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: checkpoint format {found!r} is not {CHECKPOINT_FORMAT!r}; "
            "re-export it with pathda.checkpoint.save_inference_checkpoint"
        )
    _validate(payload, path)
    return payload


def load_inference_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the backbone from a checkpoint, in eval mode on ``device``.

    Args:
        path: a file written by :func:`save_inference_checkpoint`.
        device: torch device (``"auto"`` picks CUDA when available).

    Returns:
        ``(model, meta)`` where ``meta`` is the checkpoint dict without ``state_dict``.

    Raises:
        CheckpointError: wrong format, missing keys, class count differing from the
            class map, or weights that do not fit the architecture.
    """
    from pathda.models import create_backbone  # heavy (timm); import only when needed

    path = Path(path)
    payload = read_inference_checkpoint(path)
    state_dict = payload.pop("state_dict")
    model = create_backbone(
        payload["arch"], payload["num_classes"], weights=None, **payload["timm_kwargs"]
    )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit arch {payload['arch']!r} ({first})"
        ) from err
    model.eval()
    return model.to(resolve_device(device)), payload


def class_names(class_map: Mapping[str, Any]) -> list[str]:
    """Class names, in label order, of a ``ClassMap.to_dict()`` mapping."""
    from pathda.annotations import ClassMap

    return list(ClassMap.from_dict(dict(class_map)).names)


def _plain(value: Any) -> Any:
    """Numpy arrays/scalars -> lists/floats, so the file loads with ``weights_only=True``."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy":
        return value.tolist()
    return value


def _validate(payload: Mapping[str, Any], path: Path) -> None:
    missing = [k for k in (*_META_KEYS, "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if not isinstance(payload["arch"], str) or not payload["arch"]:
        raise CheckpointError(f"{path}: checkpoint 'arch' must be a timm model name")
    n = payload["num_classes"]
    if not isinstance(n, int) or n < 1:
        raise CheckpointError(f"{path}: checkpoint 'num_classes' must be a positive int, got {n!r}")
    try:
        names = class_names(payload["class_map"] or {})
    except Exception as err:  # ConfigError, or a value that is not a mapping at all
        raise CheckpointError(f"{path}: checkpoint 'class_map' is malformed ({err})") from err
    if len(names) != n:
        raise CheckpointError(
            f"{path}: model has {n} classes but its class map has {len(names)} "
            f"({', '.join(names)}); retrain or fix the class map"
        )
    mpp = payload["mpp"]
    if not isinstance(mpp, (int, float)) or not math.isfinite(mpp) or mpp <= 0:
        raise CheckpointError(f"{path}: checkpoint 'mpp' must be a positive µm/px, got {mpp!r}")
    size = payload["patch_size"]
    if not isinstance(size, int) or size < 1:
        raise CheckpointError(f"{path}: checkpoint 'patch_size' must be a positive int (px)")
    norm = payload["normalise"]
    if (
        not isinstance(norm, Mapping)
        or len(norm.get("mean", ())) != 3
        or len(norm.get("std", ())) != 3
        or any(s <= 0 for s in norm["std"])
    ):
        raise CheckpointError(
            f"{path}: checkpoint 'normalise' must be {{'mean': [3], 'std': [3 positive]}}"
        )
    if payload["stain"] is not None and not isinstance(payload["stain"], Mapping):
        raise CheckpointError(f"{path}: checkpoint 'stain' must be a normaliser dict or None")
