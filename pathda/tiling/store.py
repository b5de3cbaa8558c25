"""The tile store: a zarr v3 group written by ``pathda tile`` and read by training.

Layout of ``<out>`` (a zarr v3 group on local disk; plain ``zarr.open_group(out)`` reads it).
N is the number of tiles, P the patch size in pixels at the store's ``mpp``.

=================  ================  =========================================================
array              shape, dtype      meaning
=================  ================  =========================================================
``patches``        (N, P, P, 3) u8   RGB patch at ``mpp`` µm/px (stain-normalised if ``stain``);
                                     chunk = 1 patch, zstd, sharded ``shard_size`` patches/file
``labels``         (N,) int16        class id, an index into ``class_names``; -1 = unlabelled
``slide_index``    (N,) int32        row of the tile's slide in the ``slides`` table
``domain_index``   (N,) int16        index into ``domains``
``x``, ``y``       (N,) int64        top-left corner of the patch in level-0 pixels of its slide
``tissue_fraction`` (N,) float32     share of the patch area inside the tissue mask (0..1)
=================  ================  =========================================================

Group attributes (JSON):

- ``format`` = ``"pathda-tiles"``, ``format_version`` = 2.
- ``complete``: true only once every slide is written; set last. Readers refuse an
  incomplete store by default (rerun the same ``pathda tile`` command to finish it).
- ``class_names`` (list, index = class id), ``mpp`` (µm/px of the patches), ``patch_size``
  and ``stride`` (pixels at ``mpp``), ``shard_size`` (patches per shard file).
- ``grid``: every setting that decides which tiles exist and what they contain (mpp, patch
  size, stride, tissue and label rules, stain); an append must match it exactly.
- ``domains``: domain names in index order.
- ``slides``: one record per slide, in input order: ``path``, ``annotation`` (or null),
  ``domain``, ``split``, ``mpp`` (level-0 µm/px), ``dimensions`` ([w, h] level-0 px),
  ``status`` (``pending`` | ``done`` | ``no-tissue``), ``tile_start`` and ``n_tiles`` (the
  slide's tiles are rows ``tile_start .. tile_start + n_tiles`` of every array),
  ``n_skipped_label`` (tiles dropped by the majority label rule), ``tissue_mask`` (PNG path,
  relative to the store's parent folder), ``stain_fallbacks``, and the integrity checksums
  ``patches_sha256`` / ``columns_sha256`` (see ``pathda.tiling.integrity``).
- ``shard_bytes``: size of every shard file of ``patches`` as last written (integrity check).
- ``n_committed``: number of rows that belong to ``done`` slides (rows beyond it are from an
  interrupted run and are rewritten on resume).
- ``stain``: null, or ``{"method", "reference", "params", "fallback_count"}``.
- ``config``: the resolved ``TileConfig``; ``provenance``: ``pathda.provenance`` record.

Shard files follow zarr's v3 sharding format but are written and randomly read by
``pathda.tiling.shards`` (zarr's per-chunk overhead is about 1 ms per patch).

Tiles are ordered by slide (input order), then by read block (square blocks of the grid,
row-major), then row-major inside a block. ``x``/``y`` give each tile's position.

Example:
    >>> store = TileStore("tiles.zarr")                         # doctest: +SKIP
    >>> train = store.indices(split="train", labelled=True)     # doctest: +SKIP
    >>> batch = store.read_patches(train[:32])                  # (32, P, P, 3) uint8
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pathda.errors import StoreDamageError, TileStoreError
from pathda.tiling.integrity import Damage, damage_message, find_damage
from pathda.tiling.shards import ShardedPatchReader

STORE_FORMAT = "pathda-tiles"
STORE_FORMAT_VERSION = 2  # 2: per-slide checksums, shard sizes, sentinel column fill values
UNLABELLED = -1

#: Per-tile 1-D arrays: name -> dtype.
TILE_COLUMNS: dict[str, str] = {
    "labels": "int16",
    "slide_index": "int32",
    "domain_index": "int16",
    "x": "int64",
    "y": "int64",
    "tissue_fraction": "float32",
}

#: Fill value of each column: never a real value, so a chunk is always written to disk and a
#: lost chunk cannot read back as plausible zeros ("normal", slide 0, x = 0).
COLUMN_FILL: dict[str, float] = {
    "labels": -32768,
    "slide_index": -1,
    "domain_index": -32768,
    "x": -(2**63),
    "y": -(2**63),
    "tissue_fraction": float("nan"),
}

SLIDE_STATUSES = ("pending", "done", "no-tissue")


@dataclasses.dataclass(frozen=True)
class SlideRecord:
    """One row of the store's slide table (see the module docstring for the fields)."""

    path: str
    annotation: str | None
    domain: str
    split: str
    mpp: float
    dimensions: tuple[int, int]
    status: str = "pending"
    tile_start: int = 0
    n_tiles: int = 0
    n_skipped_label: int = 0
    tissue_mask: str | None = None
    stain_fallbacks: int = 0
    patches_sha256: str | None = None
    columns_sha256: str | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SlideRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in known}
        values["dimensions"] = tuple(values["dimensions"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["dimensions"] = list(self.dimensions)
        return row


class TileStore:
    """Read access to a tile store (see the module docstring for the layout).

    Per-tile columns (``labels``, ``x``, ...) are loaded into memory on first use;
    patches stay on disk and are read on demand. Instances pickle by path, so they can
    be handed to ``DataLoader`` worker processes.

    Args:
        path: the store folder (``*.zarr``).
        allow_incomplete: open a store whose writer has not finished (only the rows of
            finished slides, ``n_committed``, are visible).
        check: run the cheap integrity check (files present, sizes and counts as committed).

    Raises:
        TileStoreError: no store, another format, or unfinished.
        StoreDamageError: the cheap check found damage (names the slide and the fix).
    """

    def __init__(
        self, path: str | Path, *, allow_incomplete: bool = False, check: bool = True
    ) -> None:
        self.path = Path(path)
        self.allow_incomplete = allow_incomplete
        if not (self.path / "zarr.json").is_file():
            raise TileStoreError(f"{self.path}: no tile store here; create it with `pathda tile`")
        attrs = self.attrs
        if attrs.get("format") != STORE_FORMAT:
            raise TileStoreError(f"{self.path}: not a pathda tile store (no format attribute)")
        if attrs.get("format_version") != STORE_FORMAT_VERSION:
            raise TileStoreError(
                f"{self.path}: tile store format version {attrs.get('format_version')} is not "
                f"supported (expected {STORE_FORMAT_VERSION}); re-tile with this pathda version"
            )
        if not attrs.get("complete") and not allow_incomplete:
            raise TileStoreError(
                f"{self.path}: tile store is unfinished; rerun the same `pathda tile` command "
                "to complete it"
            )
        if check:
            damage = self.verify(deep=False)
            if damage:
                raise StoreDamageError(damage_message(self.path, damage))

    def verify(self, *, deep: bool = True) -> list[Damage]:
        """Damage found in the committed rows (empty: intact); ``deep`` checks checksums."""
        return find_damage(self.path, self.attrs, list(TILE_COLUMNS), deep=deep)

    # -- metadata -----------------------------------------------------------
    @cached_property
    def _group(self) -> zarr.Group:
        return zarr.open_group(self.path, mode="r", zarr_format=3)

    @cached_property
    def attrs(self) -> dict[str, Any]:
        """All group attributes (a plain dict; see the module docstring)."""
        return dict(self._group.attrs)

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete"))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["class_names"])

    @property
    def mpp(self) -> float:
        """µm/px of the stored patches."""
        return float(self.attrs["mpp"])

    @property
    def patch_size(self) -> int:
        """Patch side in pixels at ``mpp``."""
        return int(self.attrs["patch_size"])

    @property
    def stride(self) -> int:
        """Grid step in pixels at ``mpp``."""
        return int(self.attrs["stride"])

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.attrs["domains"])

    @property
    def stain(self) -> dict[str, Any] | None:
        return self.attrs.get("stain")

    @cached_property
    def slides(self) -> tuple[SlideRecord, ...]:
        return tuple(SlideRecord.from_dict(row) for row in self.attrs["slides"])

    def __len__(self) -> int:
        return int(self.attrs["n_committed"])

    def __repr__(self) -> str:
        return (
            f"TileStore({str(self.path)!r}, tiles={len(self)}, slides={len(self.slides)}, "
            f"mpp={self.mpp}, patch_size={self.patch_size}, domains={list(self.domains)})"
        )

    # -- per-tile columns -----------------------------------------------------
    def _column(self, name: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            values = np.asarray(self._group[name][: len(self)])
            values.flags.writeable = False
            cache[name] = values
        return cache[name]

    @property
    def labels(self) -> np.ndarray:
        """(N,) int16 class ids; -1 = unlabelled."""
        return self._column("labels")

    @property
    def slide_index(self) -> np.ndarray:
        """(N,) int32 row in ``slides``."""
        return self._column("slide_index")

    @property
    def domain_index(self) -> np.ndarray:
        """(N,) int16 index into ``domains``."""
        return self._column("domain_index")

    @property
    def x(self) -> np.ndarray:
        """(N,) int64 patch left edge, level-0 px."""
        return self._column("x")

    @property
    def y(self) -> np.ndarray:
        """(N,) int64 patch top edge, level-0 px."""
        return self._column("y")

    @property
    def tissue_fraction(self) -> np.ndarray:
        """(N,) float32 tissue share of the patch area."""
        return self._column("tissue_fraction")

    @property
    def splits(self) -> np.ndarray:
        """(N,) split name of each tile (from its slide's record)."""
        per_slide = np.array([s.split for s in self.slides] or [""], dtype=object)
        return per_slide[self.slide_index]

    @property
    def patches(self) -> zarr.Array:
        """The (N, P, P, 3) uint8 patch array on disk (rows >= ``len(self)`` are not valid)."""
        return self._group["patches"]

    @cached_property
    def _fast_reader(self) -> ShardedPatchReader | None:
        # Shard indexes are cached, so only a finished (immutable) store reads directly.
        return ShardedPatchReader.open(self.path / "patches") if self.complete else None

    # -- selection and reading ------------------------------------------------
    def indices(
        self,
        *,
        split: str | Collection[str] | None = None,
        labelled: bool | None = None,
        domain: str | Collection[str] | None = None,
        slide: int | Collection[int] | None = None,
    ) -> np.ndarray:
        """Sorted int64 tile indices matching every given filter.

        Args:
            split: split name(s) of the tile's slide, e.g. ``"train"``.
            labelled: True for tiles with a class label, False for unlabelled ones.
            domain: domain name(s); unknown names raise ``TileStoreError``.
            slide: row(s) of the ``slides`` table.
        """
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            per_slide = np.array([s.split in wanted for s in self.slides] or [False])
            keep &= per_slide[self.slide_index]
        if labelled is not None:
            keep &= (self.labels != UNLABELLED) if labelled else (self.labels == UNLABELLED)
        if domain is not None:
            names = [domain] if isinstance(domain, str) else list(domain)
            unknown = [d for d in names if d not in self.domains]
            if unknown:
                raise TileStoreError(
                    f"{self.path}: unknown domain(s) {unknown}; known: {list(self.domains)}"
                )
            keep &= np.isin(self.domain_index, [self.domains.index(d) for d in names])
        if slide is not None:
            keep &= np.isin(self.slide_index, [slide] if isinstance(slide, int) else list(slide))
        return np.flatnonzero(keep).astype(np.int64)

    def read_patches(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read patches by tile index (any order, repeats allowed).

        Returns:
            (len(indices), P, P, 3) uint8 in the order of ``indices``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"tile index out of range 0..{len(self) - 1}")
        if idx.size == 0:
            return np.zeros((0, self.patch_size, self.patch_size, 3), np.uint8)
        if self._fast_reader is not None:
            return self._fast_reader.read(idx)
        unique, inverse = np.unique(idx, return_inverse=True)
        return np.asarray(self.patches.oindex[unique])[inverse]

    def __getitem__(self, index: int) -> np.ndarray:
        """One (P, P, 3) uint8 patch."""
        return self.read_patches([index])[0]

    # -- pickling (DataLoader workers) -----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "allow_incomplete": self.allow_incomplete}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The parent process checked the store already.
        self.__init__(state["path"], allow_incomplete=state["allow_incomplete"], check=False)  # type: ignore[misc]
