"""Stain normalisation of H&E tiles: batched torch normalisers and staintools references.

Fit once on a reference, then transform uint8 RGB tiles (numpy or torch, CPU or CUDA)
anywhere; ``to_dict``/``from_dict`` carry the fitted parameters between tiling, training and
inference.

Example:
    >>> normaliser = fit_normaliser("macenko", "reference.png")  # doctest: +SKIP
    >>> tiles = normaliser.transform(tiles)  # (N, H, W, 3) uint8  # doctest: +SKIP
    >>> same = normaliser_from_dict(normaliser.to_dict())  # doctest: +SKIP

Methods: ``macenko``, ``reinhard``, ``vahadane`` (batched torch, no loop over tiles) and
``staintools-macenko``, ``staintools-reinhard``, ``staintools-vahadane`` (the staintools
implementations, one tile at a time, for checking and comparison).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pathda.registry import Registry
from pathda.stain.apply import fit_normaliser, load_params, normalise_images, save_params
from pathda.stain.base import StainNormaliser
from pathda.stain.image_io import read_rgb_image
from pathda.stain.macenko import MacenkoNormaliser
from pathda.stain.reinhard import ReinhardNormaliser
from pathda.stain.staintools_ref import (
    StaintoolsMacenkoNormaliser,
    StaintoolsReinhardNormaliser,
    StaintoolsVahadaneNormaliser,
)
from pathda.stain.vahadane import VahadaneNormaliser

NORMALISERS: Registry[type[StainNormaliser]] = Registry("stain method")
"""Stain normalisers by method name (each class's ``method``)."""
for _cls in (
    MacenkoNormaliser,
    ReinhardNormaliser,
    VahadaneNormaliser,
    StaintoolsMacenkoNormaliser,
    StaintoolsReinhardNormaliser,
    StaintoolsVahadaneNormaliser,
):
    NORMALISERS.add(_cls.method, _cls)


def create_normaliser(method: str, **options: Any) -> StainNormaliser:
    """Build an unfitted normaliser by name.

    Raises:
        ConfigError: unknown method (the message lists the known ones) or option.
    """
    return NORMALISERS.get(method).with_options(options)


def normaliser_from_dict(data: Mapping[str, Any]) -> StainNormaliser:
    """Rebuild a fitted normaliser from ``StainNormaliser.to_dict`` output."""
    return StainNormaliser.from_dict(data)


__all__ = [
    "NORMALISERS",
    "StainNormaliser",
    "create_normaliser",
    "fit_normaliser",
    "load_params",
    "normalise_images",
    "normaliser_from_dict",
    "read_rgb_image",
    "save_params",
]
