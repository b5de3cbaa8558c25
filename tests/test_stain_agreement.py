"""Batched torch normalisers against the staintools reference on real H&E.

Tiles are 256 x 256 crops of the OS-1 H&E fixture; the reference is a 512 x 512 crop of the
same image, and a second set of tiles has its stains altered (concentrations re-rendered with
rotated stain vectors). Tolerances are in 8-bit grey levels (2 = 2/255).
"""

from __future__ import annotations

import numpy as np
import pytest
import staintools
import torch

from pathda.stain import create_normaliser
from pathda.stain.optical_density import rgb_to_od, stain_concentrations


@pytest.fixture(scope="module")
def he(fixtures_dir):
    import tifffile

    image = tifffile.imread(fixtures_dir / "he" / "OS-1-detail.ome.tif")
    tiles = np.stack(
        [image[y : y + 256, x : x + 256] for y in range(0, 1024, 256) for x in range(0, 1024, 256)]
    )
    return image[300:812, 300:812].copy(), tiles


def _altered_stains(tiles: np.ndarray) -> np.ndarray:
    """The tiles' own tissue re-rendered with bluer haematoxylin and pinker eosin."""
    macenko = create_normaliser("macenko", min_tissue_fraction=0.0)
    macenko.fit(tiles[0])
    stains = torch.from_numpy(macenko.stain_matrix)
    od = rgb_to_od(torch.from_numpy(tiles).reshape(len(tiles), -1, 3), torch.float64)
    conc = stain_concentrations(od, stains, 0.01)
    altered = stains + torch.tensor([[-0.10, 0.08, 0.10], [0.10, -0.08, 0.05]], dtype=torch.float64)
    altered = altered / altered.norm(dim=1, keepdim=True)
    rgb = 255 * torch.exp(-(conc * torch.tensor([1.1, 0.8], dtype=torch.float64)) @ altered)
    return rgb.clamp(0, 255).to(torch.uint8).reshape(tiles.shape).numpy()


def _stats(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    diff = np.abs(ours.astype(int) - reference.astype(int))
    return {"median": np.median(diff), "p99": np.percentile(diff, 99), "max": diff.max()}


def _staintools_transform(name: str, reference: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    normaliser = create_normaliser(f"staintools-{name}").fit(reference)
    out = normaliser.transform(tiles)
    assert normaliser.fallback_count == 0
    return out


@pytest.mark.parametrize("altered", [False, True], ids=["real", "altered-stains"])
@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_torch_matches_staintools(he, method, altered):
    reference, tiles = he
    tiles = tiles[::2]  # 8 tiles keep staintools' per-tile loop short
    if altered:
        tiles = _altered_stains(tiles)
        assert np.abs(tiles.astype(int) - he[1][::2]).mean() > 5  # the alteration is real
    normaliser = create_normaliser(method).fit(reference)
    ours = normaliser.transform(tiles)
    assert normaliser.fallback_count == 0
    stats = _stats(ours, _staintools_transform(method, reference, tiles))
    # Measured on an AMD EPYC with AVX2 (opencv-python 5.1.0.95): median 0, p99 0, max 1
    # (Macenko: float32 vs float64 rounding before the truncation to 8 bits); Reinhard max 0.
    # Not asserted exact: staintools goes through cv2's LAB, whose rounding differs by one
    # level on some CPUs (see test_stain_opencv_lab), and a level of LAB is up to ~3 of RGB.
    assert stats["median"] <= 2
    assert stats["p99"] <= 1
    assert stats["max"] <= 3


def test_fitted_reference_parameters_match_staintools(he):
    reference, _ = he
    ours = create_normaliser("macenko").fit(reference)
    theirs = staintools.StainNormalizer("macenko")
    theirs.fit(reference.copy())
    np.testing.assert_allclose(ours.stain_matrix, theirs.stain_matrix_target, atol=1e-6)
    np.testing.assert_allclose(ours.max_concentrations, theirs.maxC_target[0], rtol=1e-5)


@pytest.mark.slow
def test_vahadane_close_to_staintools(he):
    """spams' online dictionary learning is itself non-deterministic and stops early (our
    alternating minimisation reaches an equal or lower objective), so the bound is looser."""
    reference, tiles = he
    tiles = tiles[::4]
    normaliser = create_normaliser("vahadane").fit(reference)
    ours = normaliser.transform(tiles)
    stats = _stats(ours, _staintools_transform("vahadane", reference, tiles))
    assert stats["median"] <= 2
    assert np.abs(ours.astype(int) - tiles).mean() > 2 * stats["median"]
