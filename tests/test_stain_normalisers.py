"""Normaliser behaviour on synthetic H&E: correctness, robustness, types, serialisation."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from pathda.errors import ConfigError, StainInputError
from pathda.stain import NORMALISERS, StainNormaliser, create_normaliser, normaliser_from_dict

TORCH_METHODS = ["macenko", "reinhard", "vahadane"]
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def synthetic_he(n: int, size: int, seed: int, stains=(HAEMATOXYLIN, EOSIN)) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 tiles: nuclei (H) on eosin stroma, some white background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    tiles = []
    for _ in range(n):
        h = np.zeros((size, size))
        for cy, cx in rng.integers(0, size, (size // 6, 2)):
            h += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 30) ** 2))
        # Stroma is eosin only and nuclei mostly haematoxylin, as in real H&E: the extreme
        # OD angles Macenko picks are then the true stain vectors.
        e = (0.25 + 0.5 * rng.random((size, size)) ** 2) * np.clip(1 - 2 * h, 0, 1)
        background = (np.sin(xx / 9.0 + rng.random() * 6) + np.cos(yy / 13.0)) > 1.2
        conc = np.stack([h, e], -1) * np.where(background, 0.02, 1.0)[..., None]
        od = conc @ np.stack([_unit(stains[0]), _unit(stains[1])])
        tiles.append(np.clip(255 * np.exp(-od) + rng.normal(0, 1.0, od.shape), 0, 255))
    return np.stack(tiles).astype(np.uint8)


def _rotate_towards(v: np.ndarray, w: np.ndarray, degrees: float) -> np.ndarray:
    v, w = _unit(v), _unit(w)
    ortho = _unit(w - (w @ v) * v)
    theta = np.radians(degrees)
    return np.abs(np.cos(theta) * v + np.sin(theta) * ortho)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return synthetic_he(1, 256, seed=100)[0]


@pytest.fixture(scope="module")
def fitted(reference) -> dict[str, StainNormaliser]:
    return {m: create_normaliser(m).fit(reference) for m in TORCH_METHODS}


def _edge_tiles(size: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    eosin_od = rng.uniform(0.1, 1.0, (size, size, 1)) * _unit(EOSIN)
    zeros = synthetic_he(1, size, seed=6)[0]
    zeros[::3, ::5] = 0  # OD of a 0 grey level is where naive code divides by zero / logs 0
    zeros[::7, :, 1] = 0
    return {
        "white": np.full((size, size, 3), 255, np.uint8),
        "black": np.zeros((size, size, 3), np.uint8),
        "eosin": np.clip(255 * np.exp(-eosin_od), 0, 255).astype(np.uint8),
        "zeros": zeros,
    }


@pytest.mark.parametrize("method", ["macenko", "vahadane"])
def test_stain_separation_undoes_a_stain_change(method, reference):
    """The reference tissue stained with rotated stain vectors comes back close to the
    reference itself: same concentrations, so only the stain change should be undone."""
    altered = (_rotate_towards(HAEMATOXYLIN, EOSIN, 15), _rotate_towards(EOSIN, HAEMATOXYLIN, -15))
    source = synthetic_he(1, 256, seed=100, stains=altered)[0]  # the reference's seed
    normaliser = create_normaliser(method).fit(reference)
    before = np.abs(source.astype(int) - reference).mean()
    after = np.abs(normaliser.transform(source).astype(int) - reference).mean()
    assert before > 6
    assert after < 1.5
    assert normaliser.fallback_count == 0


def test_reinhard_moves_lab_statistics_to_the_reference(fitted):
    from pathda.stain.opencv_lab import rgb_to_lab_u8
    from pathda.stain.reinhard import lab_histograms, lab_mean_std

    def stats(tiles):
        return lab_mean_std(lab_histograms(rgb_to_lab_u8(torch.from_numpy(tiles))))

    tiles = synthetic_he(3, 96, seed=8, stains=(EOSIN, HAEMATOXYLIN))  # swapped colours
    target = torch.from_numpy(fitted["reinhard"].target_stats)
    before = (stats(tiles) - target).abs().amax()
    # Not exact: matched LAB values outside the RGB gamut are clipped, as in staintools.
    after = (stats(fitted["reinhard"].transform(tiles)) - target).abs().amax()
    assert after < before / 4


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_degenerate_tiles_are_left_unchanged_and_counted(method, fitted):
    normaliser = create_normaliser(method)
    normaliser = normaliser_from_dict(fitted[method].to_dict())
    edges = _edge_tiles()
    batch = np.stack(list(edges.values()))
    out = normaliser.transform(batch)
    unchanged = {
        name: bool(np.array_equal(o, t)) for name, o, t in zip(edges, out, batch, strict=True)
    }
    assert unchanged["white"]
    assert unchanged["black"]
    if method != "reinhard":  # one stain is a colour like any other to Reinhard
        assert unchanged["eosin"]
    assert not unchanged["zeros"]  # real tissue with zero pixels is still normalised
    assert normaliser.fallback_count == sum(unchanged.values())
    normaliser.transform(edges["white"])
    assert normaliser.fallback_count == sum(unchanged.values()) + 1


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_numpy_torch_single_and_batched_agree(method, fitted):
    tiles = synthetic_he(3, 64, seed=9)
    normaliser = fitted[method]
    batched = normaliser.transform(tiles)
    assert isinstance(batched, np.ndarray)
    assert batched.dtype == np.uint8
    assert batched.shape == tiles.shape
    as_tensor = normaliser.transform(torch.from_numpy(tiles))
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.dtype == torch.uint8
    np.testing.assert_array_equal(as_tensor.numpy(), batched)
    one_by_one = np.stack([normaliser.transform(t) for t in tiles])
    np.testing.assert_array_equal(one_by_one, batched)  # no cross-talk between tiles


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_transform_image_in_blocks_equals_whole_image(method, fitted):
    image = synthetic_he(1, 200, seed=10)[0]
    whole = fitted[method].transform(image)
    blocks = fitted[method].transform_image(image, block_px=64)
    np.testing.assert_array_equal(blocks, whole)


@pytest.mark.parametrize("method", sorted(NORMALISERS))
def test_to_dict_json_from_dict_round_trip(method, reference):
    normaliser = create_normaliser(method).fit(reference)
    record = json.loads(json.dumps(normaliser.to_dict()))
    assert record["method"] == method
    restored = normaliser_from_dict(record)
    assert type(restored) is type(normaliser)
    assert restored.to_dict() == record
    if method == "staintools-vahadane":
        return  # spams' dictionary learning is not deterministic run to run
    tiles = synthetic_he(2, 64, seed=11)
    np.testing.assert_array_equal(restored.transform(tiles), normaliser.transform(tiles))


def test_normaliser_survives_pickling_for_dataloader_workers(fitted):
    tiles = synthetic_he(2, 48, seed=12)
    clone = pickle.loads(pickle.dumps(fitted["macenko"]))
    np.testing.assert_array_equal(clone.transform(tiles), fitted["macenko"].transform(tiles))


def test_fit_on_a_set_of_tiles_pools_them(reference):
    parts = [reference[:128], reference[128:]]
    pooled = create_normaliser("reinhard").fit(parts)
    whole = create_normaliser("reinhard").fit(reference)
    np.testing.assert_allclose(pooled.target_stats, whole.target_stats)


def test_unknown_method_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="choose one of: macenko, reinhard, staintools-macenko"):
        create_normaliser("fancy")
    with pytest.raises(ConfigError, match=r"unknown option.*betaa"):
        create_normaliser("macenko", betaa=0.15)
    with pytest.raises(ConfigError, match="luminosity_threshold"):
        create_normaliser("reinhard", luminosity_threshold=2.0)


def test_bad_parameter_records_are_config_errors(fitted):
    good = fitted["macenko"].to_dict()
    with pytest.raises(ConfigError, match="format_version"):
        normaliser_from_dict({**good, "format_version": 99})
    with pytest.raises(ConfigError, match="unknown stain method"):
        normaliser_from_dict({**good, "method": "nope"})
    with pytest.raises(ConfigError, match="malformed"):
        normaliser_from_dict({**good, "params": {"stain_matrix": [[1, 2]]}})
    with pytest.raises(ConfigError, match="not 'reinhard'"):
        NORMALISERS["reinhard"].from_dict(good)


def test_reference_without_tissue_is_a_config_error():
    white = np.full((64, 64, 3), 255, np.uint8)
    for method in TORCH_METHODS:
        with pytest.raises(ConfigError):
            create_normaliser(method).fit(white)


def test_bad_tiles_raise_stain_input_error(fitted):
    with pytest.raises(StainInputError, match="uint8"):
        fitted["macenko"].transform(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(StainInputError, match=r"\(H, W, 3\)"):
        fitted["macenko"].transform(np.zeros((8, 8), np.uint8))
    with pytest.raises(RuntimeError, match="not fitted"):
        create_normaliser("macenko").transform(np.zeros((8, 8, 3), np.uint8))
