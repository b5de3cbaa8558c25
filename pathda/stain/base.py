"""The stain-normaliser interface: fit on a reference, transform tiles, round-trip through JSON.

One serialisable object is used everywhere: at tiling time (the fitted parameters go into the
tile store's attributes), in DataLoader collate functions and on the GPU after transfer. Tiles
are uint8 RGB, ``(H, W, 3)`` or ``(N, H, W, 3)``, numpy or torch (any device); ``transform``
returns the same type, shape and device it was given.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from pathda import __version__
from pathda.errors import ConfigError, StainInputError

PARAMS_FORMAT_VERSION = 1
"""Version of the ``to_dict`` layout; bump when a stored field changes meaning."""

Tiles = np.ndarray | torch.Tensor

MAX_REFERENCE_PIXELS = 1 << 24
"""Larger references are fitted on a regular subsample of this many pixels (memory)."""


class StainNormaliser(ABC):
    """Fit stain statistics on a reference, then map tiles onto them.

    Subclasses set ``method``, take their options as keyword-only ``__init__`` arguments and
    implement ``_fit``, ``_transform_batch``, ``_params`` and ``_load_params``.

    Attributes:
        method: registry name, e.g. ``"macenko"``.
        options: the keyword options the normaliser was built with (JSON-serialisable).
        fallback_count: tiles returned unchanged so far (mostly background, a single stain, or
            statistics that would be NaN/inf); counted per process, so DataLoader workers keep
            their own counts.
    """

    method: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)
        self.fallback_count = 0
        self._fitted = False

    # -- public API ---------------------------------------------------------------------------

    def fit(self, reference: Tiles | Sequence[Tiles]) -> StainNormaliser:
        """Fit to one reference RGB image or a set of reference tiles (pooled as one image).

        Args:
            reference: uint8 ``(H, W, 3)`` image, ``(N, H, W, 3)`` stack, or a sequence of
                ``(H, W, 3)`` images of any sizes. Beyond ``MAX_REFERENCE_PIXELS`` pixels in
                all, every k-th pixel is used.

        Returns:
            ``self``, fitted.
        """
        images = _reference_images(reference)
        pixels = np.concatenate([im.reshape(-1, 3) for im in images])[None]  # (1, P, 3)
        stride = -(-pixels.shape[1] // MAX_REFERENCE_PIXELS)  # ceil: bounds fitting memory
        pixels = np.ascontiguousarray(pixels[:, ::stride])
        self._fit(pixels)
        self._fitted = True
        return self

    def transform(self, tiles: Tiles) -> Tiles:
        """Normalise tiles, each with its own stain estimate; returns the input's type.

        Args:
            tiles: uint8 ``(H, W, 3)`` or ``(N, H, W, 3)``, numpy or torch on any device.

        Returns:
            Normalised uint8 tiles of the same type, shape and device. Tiles that cannot be
            normalised (see ``fallback_count``) come back unchanged.
        """
        self._require_fitted()
        batch, restore = _as_batch(tiles)
        out, fallback = self._transform_batch(batch)
        out = torch.where(fallback.view(-1, 1, 1, 1), batch, out)
        self.fallback_count += int(fallback.sum())
        return restore(out)

    def transform_image(self, image: Tiles, block_px: int = 1024) -> Tiles:
        """Normalise one image of any size with a single stain estimate for the whole image.

        The default transforms the image in one go; batched normalisers override this to
        estimate once and apply block by block, which bounds the memory used.

        Args:
            image: uint8 ``(H, W, 3)`` numpy array or tensor.
            block_px: edge of the square blocks processed at a time, pixels.
        """
        del block_px
        return self.transform(image)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record of the method, its options and the fitted parameters."""
        self._require_fitted()
        return {
            "method": self.method,
            "format_version": PARAMS_FORMAT_VERSION,
            "pathda_version": __version__,
            "options": dict(self.options),
            "params": {k: np.asarray(v).tolist() for k, v in self._params().items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StainNormaliser:
        """Rebuild a fitted normaliser from ``to_dict`` output.

        Called on the base class it dispatches on ``data["method"]``; called on a concrete
        class the method must match.

        Raises:
            ConfigError: the record is not a stain-parameter record this version can read.
        """
        if not isinstance(data, Mapping) or "method" not in data:
            raise ConfigError("stain parameters must be a JSON object with a 'method' field")
        if data.get("format_version") != PARAMS_FORMAT_VERSION:
            raise ConfigError(
                f"stain parameters have format_version {data.get('format_version')!r}; this "
                f"pathda reads version {PARAMS_FORMAT_VERSION}: refit with 'pathda stain fit'"
            )
        if cls is StainNormaliser:
            from pathda.stain import NORMALISERS

            return NORMALISERS.get(str(data["method"])).from_dict(data)
        if data["method"] != cls.method:
            raise ConfigError(f"stain parameters are for {data['method']!r}, not {cls.method!r}")
        normaliser = cls.with_options(data.get("options", {}))
        params = data.get("params")
        if not isinstance(params, Mapping):
            raise ConfigError("stain parameters have no 'params' object: refit the reference")
        try:
            normaliser._load_params({k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(f"stain parameters for {cls.method!r} are malformed: {err}") from err
        normaliser._fitted = True
        return normaliser

    @classmethod
    def with_options(cls, options: Mapping[str, Any]) -> StainNormaliser:
        """Build an unfitted normaliser, turning unknown option names into a ConfigError."""
        accepted = [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for stain method {cls.method!r}; "
                f"valid: {', '.join(accepted) or 'none'}"
            )
        return cls(**options)

    # -- subclass hooks -----------------------------------------------------------------------

    @abstractmethod
    def _fit(self, pixels: np.ndarray) -> None:
        """Fit on uint8 reference pixels shaped ``(1, P, 3)``."""

    @abstractmethod
    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (normalised uint8 ``(N, H, W, 3)``, fallback bool ``(N,)``) on tiles' device."""

    @abstractmethod
    def _params(self) -> dict[str, np.ndarray]:
        """The fitted parameters as float arrays."""

    @abstractmethod
    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        """Set the fitted parameters from float64 arrays; raise KeyError/ValueError if wrong."""

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit() or build it with from_dict()"
            )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts}){'' if self._fitted else ' [unfitted]'}"


def check_shape(array: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``array`` if it has ``shape`` and only finite values, else raise ValueError."""
    if array.shape != shape or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a finite array of shape {shape}, got {array.shape}")
    return array


def _as_batch(tiles: Tiles) -> tuple[torch.Tensor, Any]:
    """Return a uint8 ``(N, H, W, 3)`` tensor and a function mapping results back."""
    is_numpy = isinstance(tiles, np.ndarray)
    if not is_numpy and not isinstance(tiles, torch.Tensor):
        raise StainInputError(f"tiles must be a numpy array or torch tensor, got {type(tiles)}")
    if tiles.dtype not in (np.uint8, torch.uint8):
        raise StainInputError(f"tiles must be uint8 RGB, got dtype {tiles.dtype}")
    if tiles.ndim not in (3, 4) or tiles.shape[-1] != 3:
        raise StainInputError(f"tiles must be (H, W, 3) or (N, H, W, 3), got {tuple(tiles.shape)}")
    single = tiles.ndim == 3
    if is_numpy:
        # torch warns on read-only arrays (e.g. from zarr or np.broadcast_to); copy those.
        tiles = np.ascontiguousarray(tiles) if tiles.flags.writeable else tiles.copy()
        batch = torch.from_numpy(tiles)
    else:
        batch = tiles.contiguous()
    if single:
        batch = batch[None]

    def restore(out: torch.Tensor) -> Tiles:
        out = out[0] if single else out
        return out.numpy() if is_numpy else out

    return batch, restore


def _reference_images(reference: Tiles | Sequence[Tiles]) -> list[np.ndarray]:
    """Normalise the accepted reference forms to a list of uint8 ``(H, W, 3)`` numpy arrays."""
    if isinstance(reference, (np.ndarray, torch.Tensor)):
        batch, _ = _as_batch(reference)
        return list(batch.cpu().numpy())
    images = []
    for item in reference:
        batch, _ = _as_batch(item)
        images.extend(batch.cpu().numpy())
    if not images:
        raise StainInputError("the reference set is empty: give at least one RGB image")
    return images
