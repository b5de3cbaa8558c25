"""Stain normalisation at tiling time: fitted once, applied to patches, recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pathda import stain
from pathda.errors import ConfigError
from pathda.provenance import to_jsonable
from pathda.synth import synthesise_slides
from pathda.tiling import TileConfig, TileStore, tile_slides


@pytest.fixture(scope="module")
def slide_and_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("stain")
    (slide,) = synthesise_slides(root, n=1, size=(1024, 1024), domain="lab-b", quiet=True)
    (ref_slide,) = synthesise_slides(root, n=1, size=(1024, 1024), domain="lab-a", quiet=True)
    from pathda.slide import open_slide

    with open_slide(ref_slide.image) as s:
        Image.fromarray(s.read_region((0, 0), 0, (1024, 1024))).save(root / "ref.png")
    return slide.image, root / "ref.png"


@pytest.mark.slow
def test_stain_fitted_once_applied_and_recorded(slide_and_reference, tmp_path):
    slide, reference = slide_and_reference
    base = TileConfig(mpp=0.934, patch_size=32, workers=2)
    plain = TileStore(tile_slides([slide], tmp_path / "plain.zarr", base, quiet=True))
    config = TileConfig(**{**base.__dict__, "stain": "macenko", "stain_reference": reference})
    store = TileStore(tile_slides([slide], tmp_path / "stained.zarr", config, quiet=True))
    assert len(store) == len(plain)
    record = store.stain
    assert record["method"] == "macenko"
    assert record["reference"] == str(reference)
    expected = stain.fit_normaliser("macenko", reference)
    assert record["params"] == json.loads(json.dumps(to_jsonable(expected.to_dict())))
    assert isinstance(record["fallback_count"], int)
    assert record["fallback_count"] == sum(s.stain_fallbacks for s in store.slides)
    idx = np.arange(len(store))
    raw, normalised = plain.read_patches(idx), store.read_patches(idx)
    assert not np.array_equal(raw, normalised)
    # The same normaliser applied to the raw patches gives the stored ones.
    np.testing.assert_array_equal(np.asarray(expected.transform(raw[:16])), normalised[:16])


def test_append_with_other_stain_reference_refused(slide_and_reference, tmp_path):
    slide, reference = slide_and_reference
    config = TileConfig(mpp=0.934, patch_size=32, stain="reinhard", stain_reference=reference)
    out = tile_slides([slide], tmp_path / "s.zarr", config, quiet=True)
    other = tmp_path / "other.png"
    Image.fromarray(np.full((64, 64, 3), (180, 90, 160), np.uint8)).save(other)
    moved = TileConfig(**{**config.__dict__, "stain_reference": other, "append": True})
    with pytest.raises(ConfigError, match="grid settings"):
        tile_slides([slide], out, moved, quiet=True)
