"""Which tiles train, validate and adapt, and how they reach the model.

Splits are always by slide, never by tile:
- source train: labelled tiles of the source domains on ``train`` slides;
- validation: labelled tiles of the source domains on ``val`` slides (or, when the
  store has none, a seeded ``val_fraction`` of the labelled source slides);
- target: every tile of the target domains (labels hidden) except ``test`` slides;
- target evaluation: labelled target tiles on ``test`` slides, or, when there are
  none, all labelled target tiles (the transductive protocol of unsupervised domain
  adaptation). It is reported, never used for model selection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

from pathda.adapt import METHODS
from pathda.errors import ConfigError
from pathda.tiling.store import TileStore
from pathda.train.config import TrainConfig


@dataclass(frozen=True)
class TileSplits:
    """Tile indices into the store, per role, plus the names they refer to."""

    source: np.ndarray
    val: np.ndarray
    target: np.ndarray
    target_eval: np.ndarray
    source_domains: tuple[str, ...]
    target_domains: tuple[str, ...]
    class_names: tuple[str, ...]
    val_slides: tuple[str, ...]

    def summary(self) -> dict[str, object]:
        return {
            "source_tiles": int(self.source.size),
            "val_tiles": int(self.val.size),
            "target_tiles": int(self.target.size),
            "target_eval_tiles": int(self.target_eval.size),
            "source_domains": list(self.source_domains),
            "target_domains": list(self.target_domains),
            "val_slides": list(self.val_slides),
        }


def split_tiles(store: TileStore, cfg: TrainConfig) -> TileSplits:
    """Assign the store's tiles to source / validation / target roles, by slide.

    Default domains: a domain holding any unannotated slide is a target domain (as
    BACH's 20 unannotated slides); every other domain with labelled tiles is a
    source domain. ``cfg.source_domains`` / ``cfg.target_domains`` override this.
    """
    slides = store.slides
    labels, slide_of, domain_of = store.labels, store.slide_index, store.domain_index
    labelled = labels >= 0
    split_of = np.array([s.split or "" for s in slides] or [""], dtype=object)
    is_test_slide = split_of == "test"

    def domain_ids(names: tuple[str, ...]) -> set[int]:
        unknown = [n for n in names if n not in store.domains]
        if unknown:
            raise ConfigError(
                f"{store.path}: unknown domain(s) {unknown}; the store has {list(store.domains)}"
            )
        return {store.domains.index(n) for n in names}

    if cfg.target_domains:
        target_ids = domain_ids(cfg.target_domains)
    else:
        target_ids = {store.domains.index(s.domain) for s in slides if not s.annotation}
    if cfg.source_domains:
        source_ids = domain_ids(cfg.source_domains)
    else:
        with_labels = labelled & ~is_test_slide[slide_of]
        source_ids = set(np.unique(domain_of[with_labels]).tolist()) - target_ids
    if not source_ids:
        raise ConfigError(f"{store.path}: no labelled source-domain tiles to train on")
    if target_ids & source_ids:
        raise ConfigError("a domain cannot be both source and target")

    in_source = np.isin(domain_of, list(source_ids))
    val_slide_ids = _val_slides(split_of, slide_of[labelled & in_source], cfg)
    is_val_tile = np.isin(slide_of, val_slide_ids)
    train_slide = (split_of == cfg.train_split) | (split_of == "")
    source = np.flatnonzero(labelled & in_source & ~is_val_tile & train_slide[slide_of])
    val = np.flatnonzero(labelled & in_source & is_val_tile)
    in_target = np.isin(domain_of, list(target_ids))
    target = np.flatnonzero(in_target & ~is_test_slide[slide_of])
    target_eval = np.flatnonzero(in_target & labelled & is_test_slide[slide_of])
    if target_eval.size == 0:
        target_eval = np.flatnonzero(in_target & labelled)
    if source.size == 0:
        raise ConfigError(f"{store.path}: no labelled source tiles left for training")
    if METHODS.get(cfg.method).adapts and target.size == 0:
        raise ConfigError(
            f"{store.path}: method '{cfg.method}' needs target-domain tiles; no domain of "
            f"{list(store.domains)} is a target. Tile unannotated slides or set `target_domains`."
        )
    return TileSplits(
        source=source,
        val=val,
        target=target,
        target_eval=target_eval,
        source_domains=tuple(store.domains[i] for i in sorted(source_ids)),
        target_domains=tuple(store.domains[i] for i in sorted(target_ids)),
        class_names=store.class_names,
        val_slides=tuple(slides[i].path for i in val_slide_ids),
    )


def _val_slides(split_of: np.ndarray, labelled_source_slides: np.ndarray, cfg: TrainConfig):
    candidates = np.unique(labelled_source_slides)
    explicit = [int(i) for i in candidates if split_of[i] == cfg.val_split]
    if explicit:
        return np.array(explicit, dtype=int)
    n_val = round(cfg.val_fraction * candidates.size)
    if cfg.val_fraction > 0 and candidates.size >= 2:
        n_val = min(max(n_val, 1), candidates.size - 1)
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.permutation(candidates)[:n_val]).astype(int)


class TileDataset(Dataset):
    """Patches of a tile store as (uint8 HWC tensor, label, domain index).

    ``TileStore`` pickles by path, so each DataLoader worker reopens the store.
    """

    def __init__(self, store: TileStore, indices: np.ndarray, transform=None) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.labels = store.labels[self.indices]
        self._domains = store.domain_index[self.indices]

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int):
        patch = self.store[int(self.indices[i])]
        if self.transform is not None:
            patch = self.transform(image=patch)["image"]
        return (
            torch.from_numpy(np.ascontiguousarray(patch)),
            int(self.labels[i]),
            int(self._domains[i]),
        )


def infinite_batches(loader: DataLoader) -> Iterator:
    """Cycle a loader forever, re-shuffling at each pass (sets the sampler's epoch under DDP)."""
    epoch = 0
    while True:
        sampler: Sampler | None = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Sampling weight per tile, ``1 / (tiles of its class)``: every class equally likely.

    Every weight is positive and the weights of each present class sum to 1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0 or labels.min() < 0:
        raise ValueError("class-balanced sampling needs labelled tiles (labels >= 0)")
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def make_loader(
    dataset: TileDataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
    distributed: bool = False,
    rank: int = 0,
    class_balance: bool = False,
) -> DataLoader:
    """A DataLoader with a seeded sampler (a DistributedSampler under DDP).

    ``class_balance`` (training only) draws tiles with ``class_balanced_weights``, with
    replacement; under DDP each rank draws its own share from a generator seeded by rank.

    The augmentation is seeded too (albumentations keeps its own random state, so
    seeding torch and numpy alone leaves runs with the same seed different): from ``seed``
    and the rank in the main process, and from torch's per-worker seed in workers, which
    the seeded generator makes deterministic and distinct per worker.
    """
    generator = torch.Generator().manual_seed(seed)
    _seed_transform(dataset, seed + 1_000_003 * rank)
    if class_balance:
        sampler: Sampler = _balanced_sampler(dataset, seed, distributed, rank)
    elif distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = None  # type: ignore[assignment]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=shuffle and len(dataset) >= batch_size,
        persistent_workers=num_workers > 0,
        generator=generator,  # also draws the workers' base seed: deterministic per seed
        worker_init_fn=_seed_worker_transform if num_workers > 0 else None,
    )


def _balanced_sampler(
    dataset: TileDataset, seed: int, distributed: bool, rank: int
) -> WeightedRandomSampler:
    world = torch.distributed.get_world_size() if distributed else 1
    return WeightedRandomSampler(
        torch.from_numpy(class_balanced_weights(dataset.labels)),
        num_samples=-(-len(dataset) // world),  # each rank: its share of one pass
        replacement=True,
        generator=torch.Generator().manual_seed(seed + 1_000_003 * rank),
    )


def _seed_transform(dataset: TileDataset, seed: int) -> None:
    if dataset.transform is not None and hasattr(dataset.transform, "set_random_seed"):
        dataset.transform.set_random_seed(seed % 2**32)


def _seed_worker_transform(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    _seed_transform(info.dataset, torch.initial_seed())
