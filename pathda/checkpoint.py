"""Inference checkpoints: the one file training hands to segmentation.

The contract is :class:`InferenceCheckpoint`, a frozen dataclass; the file is a
``torch.save`` of its :meth:`~InferenceCheckpoint.to_payload` (plain values and the
backbone's tensors, no domain heads), so it loads with ``torch.load(weights_only=True)``
and no pickled code runs::

    {"format": "pathda-inference/2", "arch": str, "timm_kwargs": dict,
     "class_map": ClassMap.to_dict(), "mpp": float (µm/px of training patches),
     "patch_size": int (px at ``mpp``), "stain": normaliser.to_dict() or None,
     "normalise": ModelInputConfig.to_dict() (mean/std applied to float /255 images,
                  input size and interpolation the weights were pretrained with),
     "provenance": {...}, "weights_sha256": str, "state_dict": backbone state_dict}

``weights_sha256`` covers every tensor's name, dtype, shape and bytes; it is verified on
every load, so a file damaged on disk or in transfer is refused instead of producing NaN
probabilities that look like a result.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pathda.annotations import ClassMap
from pathda.atomic import atomic_path
from pathda.device import resolve_device
from pathda.errors import CheckpointError, PathdaError
from pathda.models.input_config import ModelInputConfig
from pathda.provenance import to_jsonable

if TYPE_CHECKING:
    from pathda.model_input import InputPipeline

SCHEMA_VERSION = 2
CHECKPOINT_FORMAT = f"pathda-inference/{SCHEMA_VERSION}"
_LEGACY_FORMATS = ("pathda-inference/1",)  # no weight checksum: refused, upgrade explicitly

__all__ = [
    "CHECKPOINT_FORMAT",
    "SCHEMA_VERSION",
    "CheckpointError",
    "InferenceCheckpoint",
    "load_inference_checkpoint",
    "read_inference_checkpoint",
    "save_inference_checkpoint",
    "upgrade_checkpoint",
    "weights_sha256",
]


@dataclass(frozen=True)
class InferenceCheckpoint:
    """Everything inference needs besides the weights, exactly as training used it.

    Attributes:
        arch: timm model name of the backbone.
        class_map: the classes the model's outputs stand for, in output order.
        mpp: µm/px of the training patches (inference resamples slides to it).
        patch_size: patch side in px at ``mpp``.
        input_config: normalisation (mean/std of float images in [0, 1]) and input size
            the backbone was pretrained with, which training applied.
        stain: fitted stain normaliser (``to_dict()`` form) to apply first, or None.
        timm_kwargs: extra keyword arguments the backbone was created with.
        provenance: how the weights were made (config, store, epoch, metrics, versions).
        weights_sha256: checksum of the weights (:func:`weights_sha256`); filled in by
            :func:`save_inference_checkpoint`, verified by :meth:`from_payload`.
    """

    arch: str
    class_map: ClassMap
    mpp: float
    patch_size: int
    input_config: ModelInputConfig
    stain: Mapping[str, Any] | None = None
    timm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"arch must be a timm model name, got {self.arch!r}")
        if not isinstance(self.class_map, ClassMap):
            raise TypeError(f"class_map must be a ClassMap, got {type(self.class_map).__name__}")
        mpp = self.mpp
        if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not mpp > 0:
            raise ValueError(f"mpp must be a positive µm/px, got {mpp!r}")
        if not math.isfinite(mpp):
            raise ValueError(f"mpp must be finite, got {mpp!r}")
        size = self.patch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"patch_size must be a positive int (px), got {size!r}")
        if not isinstance(self.input_config, ModelInputConfig):
            raise TypeError("input_config must be a ModelInputConfig")
        mean, std = self.input_config.mean, self.input_config.std
        if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
            raise ValueError(f"normalise needs 3 means and 3 positive stds, got {mean}, {std}")
        if self.stain is not None and not isinstance(self.stain, Mapping):
            raise TypeError("stain must be a normaliser's to_dict() or None")
        object.__setattr__(self, "mpp", float(mpp))
        object.__setattr__(self, "timm_kwargs", dict(self.timm_kwargs or {}))
        object.__setattr__(self, "provenance", dict(self.provenance or {}))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.class_map.names

    @property
    def num_classes(self) -> int:
        return len(self.class_map)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.input_config.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.input_config.std

    @property
    def stain_method(self) -> str | None:
        return None if self.stain is None else self.stain.get("method")

    def input_pipeline(self) -> InputPipeline:
        """The uint8 batch -> model input transform training used (stain, then normalise)."""
        from pathda.model_input import InputPipeline, stain_transform

        return InputPipeline(self.mean, self.std, stain_transform(self.stain))

    def create_model(self) -> torch.nn.Module:
        """An untrained backbone of this architecture and class count (weights not loaded)."""
        from pathda.models import create_backbone  # heavy (timm); import only when needed

        return create_backbone(self.arch, self.num_classes, weights=None, **self.timm_kwargs)

    def to_payload(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The ``torch.save``-able dict (plain values + CPU tensors); checksum filled in."""
        tensors = {k: v.detach().cpu() for k, v in state_dict.items()}
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": self.arch,
            "timm_kwargs": to_jsonable(self.timm_kwargs),
            "class_map": self.class_map.to_dict(),
            "mpp": self.mpp,
            "patch_size": self.patch_size,
            "stain": to_jsonable(self.stain),
            "normalise": self.input_config.to_dict(),
            "provenance": to_jsonable(self.provenance),
            "weights_sha256": weights_sha256(tensors),
            "state_dict": tensors,
        }

    @classmethod
    def from_payload(
        cls, payload: Any, source: str | Path
    ) -> tuple[InferenceCheckpoint, dict[str, torch.Tensor]]:
        """Validate a loaded payload and verify its weights against the stored checksum.

        Args:
            payload: what ``torch.load`` returned.
            source: the file it came from (named in every error).

        Returns:
            ``(checkpoint, state_dict)``.

        Raises:
            CheckpointError: wrong or old format, missing or malformed fields, or weights
                that do not match their checksum (the file is damaged).
        """
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        if found in _LEGACY_FORMATS:
            raise CheckpointError(
                f"{source}: checkpoint format {found!r} has no weight checksum; re-export it "
                "with pathda.checkpoint.upgrade_checkpoint(old, new), or retrain"
            )
        if found != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{source}: checkpoint format {found!r} is not {CHECKPOINT_FORMAT!r}; "
                "pass the model.pt written by `pathda train`"
            )
        missing = [k for k in _PAYLOAD_KEYS if k not in payload]
        if missing:
            raise CheckpointError(f"{source}: checkpoint lacks {', '.join(missing)}")
        state_dict = payload["state_dict"]
        if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()
        ):
            raise CheckpointError(f"{source}: checkpoint 'state_dict' is not a dict of tensors")
        if weights_sha256(state_dict) != payload["weights_sha256"]:
            raise CheckpointError(
                f"{source}: weights do not match their SHA-256 checksum (the file is damaged); "
                "copy model.pt again from the training folder, or retrain"
            )
        try:
            norm = payload["normalise"]
            size = payload["patch_size"]
            checkpoint = cls(
                arch=payload["arch"],
                class_map=ClassMap.from_dict(payload["class_map"]),
                mpp=payload["mpp"],
                patch_size=payload["patch_size"],
                input_config=ModelInputConfig(
                    mean=tuple(float(v) for v in norm["mean"]),
                    std=tuple(float(v) for v in norm["std"]),
                    input_size=tuple(int(v) for v in norm.get("input_size", (3, size, size))),
                    interpolation=str(norm.get("interpolation", "bilinear")),
                ),
                stain=payload["stain"],
                timm_kwargs=payload["timm_kwargs"],
                provenance=payload["provenance"],
                weights_sha256=payload["weights_sha256"],
            )
        except (PathdaError, ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{source}: checkpoint is malformed ({err})") from None
        return checkpoint, state_dict


_PAYLOAD_KEYS = (
    "arch",
    "timm_kwargs",
    "class_map",
    "mpp",
    "patch_size",
    "stain",
    "normalise",
    "provenance",
    "weights_sha256",
    "state_dict",
)


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_inference_checkpoint(
    path: str | Path, model: torch.nn.Module, checkpoint: InferenceCheckpoint
) -> Path:
    """Write ``model``'s weights with ``checkpoint``'s metadata atomically.

    Args:
        path: destination ``.pt`` file.
        model: the backbone (as made by ``pathda.models.create_backbone``), without domain heads.
        checkpoint: the metadata; its ``weights_sha256`` is computed here.

    Returns:
        The path written.
    """
    path = Path(path)
    out_features = getattr(model, "num_classes", None)
    if isinstance(out_features, int) and out_features != checkpoint.num_classes:
        raise ValueError(
            f"{path}: model has {out_features} classes but the class map has "
            f"{checkpoint.num_classes} ({', '.join(checkpoint.class_names)})"
        )
    payload = checkpoint.to_payload(model.state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_inference_checkpoint(
    path: str | Path,
) -> tuple[InferenceCheckpoint, dict[str, torch.Tensor]]:
    """Load, validate and checksum-verify a checkpoint without building a model (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; pass the .pt file written by training"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt / foreign files
        raise CheckpointError(
            f"{path}: not a readable pathda checkpoint ({type(err).__name__}; the file is "
            "damaged or not a checkpoint); pass the model.pt written by `pathda train`"
        ) from None
    return InferenceCheckpoint.from_payload(payload, path)


def load_inference_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, InferenceCheckpoint]:
    """Rebuild the backbone from a checkpoint, in eval mode on ``device``.

    Args:
        path: a file written by :func:`save_inference_checkpoint`.
        device: torch device (``"auto"`` picks CUDA when available).

    Returns:
        ``(model, checkpoint)``.

    Raises:
        CheckpointError: wrong format, malformed metadata, damaged weights (checksum), or
            weights that do not fit the architecture and class count.
    """
    path = Path(path)
    checkpoint, state_dict = read_inference_checkpoint(path)
    model = checkpoint.create_model()
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit arch {checkpoint.arch!r} with "
            f"{checkpoint.num_classes} classes ({first})"
        ) from None
    model.eval()
    return model.to(resolve_device(device)), checkpoint


def upgrade_checkpoint(old: str | Path, new: str | Path) -> Path:
    """Re-export a ``pathda-inference/1`` file in the current format (adds the checksum).

    The old format carried no checksum, so this trusts the weights as they are now: run it
    on the copy training wrote, not on one that has travelled.
    """
    old = Path(old)
    try:
        payload = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{old}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") not in _LEGACY_FORMATS:
        raise CheckpointError(f"{old}: not a pathda-inference/1 checkpoint; nothing to upgrade")
    payload = {**payload, "format": CHECKPOINT_FORMAT}
    payload["weights_sha256"] = weights_sha256(payload.get("state_dict") or {})
    checkpoint, state_dict = InferenceCheckpoint.from_payload(payload, old)
    new = Path(new)
    new.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(new) as tmp:
        torch.save(checkpoint.to_payload(state_dict), tmp)
    return new
