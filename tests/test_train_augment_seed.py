"""Seeded runs are reproducible: the augmentation (albumentations keeps its own random
state) is seeded with the loader, in the main process and in workers."""

import numpy as np
import pytest
import torch

from pathda.tiling import TileStore
from pathda.train.augment import training_augmentation
from pathda.train.data import TileDataset, make_loader


def _first_batches(store_path, seed, num_workers, n=3):
    store = TileStore(store_path)
    indices = np.arange(min(len(store), 64))
    dataset = TileDataset(store, indices, training_augmentation("strong"))
    loader = make_loader(dataset, 8, shuffle=True, num_workers=num_workers, seed=seed)
    batches = []
    for i, (x, _, _) in enumerate(loader):
        batches.append(x.clone())
        if i + 1 == n:
            break
    return torch.cat(batches)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_same_augmented_batches(synthetic_store, num_workers):
    a = _first_batches(synthetic_store, 5, num_workers)
    b = _first_batches(synthetic_store, 5, num_workers)
    assert torch.equal(a, b)
    assert not torch.equal(a, _first_batches(synthetic_store, 6, num_workers))


def test_workers_get_distinct_augmentation_seeds(synthetic_store):
    # One tile repeated: what a batch looks like depends only on its worker's random
    # stream. Batch 0 comes from worker 0 and batch 1 from worker 1; workers sharing one
    # seed would return the same batch twice.
    store = TileStore(synthetic_store)
    dataset = TileDataset(store, np.zeros(32, dtype=np.int64), training_augmentation("strong"))
    loader = make_loader(dataset, 8, shuffle=True, num_workers=2, seed=5)
    first, second = (x for (x, _, _), _ in zip(loader, range(2), strict=False))
    assert not torch.equal(first, second)
