"""Reference normalisers: thin wrappers of staintools, one tile at a time on the CPU.

They exist to check the batched torch normalisers against and as a fallback; they are slow
(staintools' Macenko takes ~45 ms per 256 x 256 tile, Vahadane ~1 s). staintools' optional
brightness standardisation is not applied. A tile falls back (is returned unchanged) when
staintools raises (e.g. an all-background tile has an empty tissue mask) or its arithmetic hits
a floating-point error (division by zero, NaN); nothing else is second-guessed.
"""

from __future__ import annotations

import numpy as np
import torch

from pathda.stain.base import StainNormaliser, check_shape


def _staintools():
    import staintools  # imported on use: it pulls in OpenCV and spams

    return staintools


def _run_per_tile(tiles: torch.Tensor, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a numpy ``transform`` tile by tile on the CPU; failures fall back."""
    from staintools.miscellaneous.exceptions import TissueMaskException

    batch = tiles.cpu().numpy()
    out = batch.copy()
    fallback = np.zeros(len(batch), dtype=bool)
    for i, tile in enumerate(batch):
        try:
            with np.errstate(all="raise"):
                out[i] = transform(tile.copy())  # staintools overwrites zeros in its input
        except (TissueMaskException, FloatingPointError, np.linalg.LinAlgError, ValueError):
            fallback[i] = True
    return torch.from_numpy(out).to(tiles.device), torch.from_numpy(fallback).to(tiles.device)


class _StaintoolsStainSeparation(StainNormaliser):
    """staintools' ``StainNormalizer`` (Macenko or Vahadane) behind the pathda interface."""

    _staintools_method: str

    def __init__(self) -> None:
        super().__init__()
        self._normaliser = _staintools().StainNormalizer(self._staintools_method)

    def _fit(self, pixels: np.ndarray) -> None:
        with np.errstate(all="raise"):
            self._normaliser.fit(pixels.copy())

    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _run_per_tile(tiles, self._normaliser.transform)

    def _params(self) -> dict[str, np.ndarray]:
        return {
            "stain_matrix": self._normaliser.stain_matrix_target,
            "max_concentrations": self._normaliser.maxC_target.reshape(2),
        }

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        from staintools.miscellaneous.optical_density_conversion import convert_OD_to_RGB

        stains = check_shape(params["stain_matrix"], "stain_matrix", (2, 3))
        max_conc = check_shape(params["max_concentrations"], "max_concentrations", (2,))
        self._normaliser.stain_matrix_target = stains
        self._normaliser.maxC_target = max_conc.reshape(1, 2)
        self._normaliser.stain_matrix_target_RGB = convert_OD_to_RGB(stains)


class StaintoolsMacenkoNormaliser(_StaintoolsStainSeparation):
    """staintools' Macenko normaliser (reference implementation, per tile, CPU)."""

    method = "staintools-macenko"
    _staintools_method = "macenko"


class StaintoolsVahadaneNormaliser(_StaintoolsStainSeparation):
    """staintools' Vahadane normaliser (reference implementation, per tile, CPU, spams)."""

    method = "staintools-vahadane"
    _staintools_method = "vahadane"


class StaintoolsReinhardNormaliser(StainNormaliser):
    """staintools' Reinhard colour normaliser (reference implementation, per tile, CPU)."""

    method = "staintools-reinhard"

    def __init__(self) -> None:
        super().__init__()
        self._normaliser = _staintools().ReinhardColorNormalizer()

    def _fit(self, pixels: np.ndarray) -> None:
        self._normaliser.fit(pixels.copy())

    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _run_per_tile(tiles, self._normaliser.transform)

    def _params(self) -> dict[str, np.ndarray]:
        means = [float(np.asarray(m).item()) for m in self._normaliser.target_means]
        stds = [float(np.asarray(s).item()) for s in self._normaliser.target_stds]
        return {"lab_mean": np.array(means), "lab_std": np.array(stds)}

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        mean = check_shape(params["lab_mean"], "lab_mean", (3,))
        std = check_shape(params["lab_std"], "lab_std", (3,))
        self._normaliser.target_means = tuple(np.array([[v]]) for v in mean)
        self._normaliser.target_stds = tuple(np.array([[v]]) for v in std)
