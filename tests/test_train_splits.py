"""Which tiles train, validate and adapt: always split by slide."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pathda.errors import ConfigError
from pathda.tiling import TileStore
from pathda.train import TrainConfig
from pathda.train.data import _val_slides, split_tiles


def test_default_roles_by_slide(synthetic_store):
    store = TileStore(synthetic_store)
    splits = split_tiles(store, TrainConfig(store=synthetic_store))
    # lab-b holds an unannotated slide: it is the target; lab-a is the source.
    assert splits.source_domains == ("lab-a",)
    assert splits.target_domains == ("lab-b",)
    slide_of = store.slide_index
    assert set(slide_of[splits.source]) == {0}
    assert set(slide_of[splits.val]) == {1}  # the manifest's val slide, never split by tile
    assert set(slide_of[splits.target]) == {2, 3}
    assert (store.labels[splits.source] >= 0).all()
    assert (store.labels[splits.target_eval] >= 0).all()
    assert set(slide_of[splits.target_eval]) == {2}  # labelled target tiles, for reporting
    assert not set(splits.source) & set(splits.val)


def test_auto_validation_slides_without_val_split():
    split_of = np.array(["train"] * 10, dtype=object)
    labelled_slides = np.repeat(np.arange(10), 5)  # tiles of 10 labelled slides
    val = _val_slides(split_of, labelled_slides, TrainConfig(val_fraction=0.2, seed=3))
    assert len(val) == 2  # whole slides, seeded
    again = _val_slides(split_of, labelled_slides, TrainConfig(val_fraction=0.2, seed=3))
    np.testing.assert_array_equal(val, again)
    two = _val_slides(split_of[:2], np.array([0, 1]), TrainConfig(val_fraction=0.01))
    assert len(two) == 1  # at least one validation slide, at least one left to train on


def test_explicit_domains_and_errors(synthetic_store):
    store = TileStore(synthetic_store)
    base = TrainConfig(store=synthetic_store, method="ldann")
    with pytest.raises(ConfigError, match="unknown domain"):
        split_tiles(store, dataclasses.replace(base, target_domains=("lab-z",)))
    with pytest.raises(ConfigError, match="both source and target"):
        split_tiles(store, dataclasses.replace(base, source_domains=("lab-a", "lab-b")))
    none = split_tiles(store, dataclasses.replace(base, method="none"))
    assert np.isin(store.domain_index[none.source], [0]).all()
