"""Writing a tile store: create, append rows slide by slide, commit, resume.

Crash safety rests on three facts: every file is replaced atomically (zarr's local
store and ``shards.write_shard`` both write a temporary file, then rename); a slide's
rows are only *committed* by rewriting the group attributes after all its patches are
on disk; and on reopening, every array is truncated back to ``n_committed`` rows, so an
interrupted slide is rewritten from scratch. Patches go through ``pathda.tiling.shards``
(zarr's shard format, without zarr's per-chunk overhead); the open shard's encoded
chunks stay in memory until it is full, so each shard file is written once, plus once
more per slide commit that falls inside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from pathda.atomic import atomic_path
from pathda.errors import TileStoreError
from pathda.tiling.shards import ZSTD_LEVEL, encode_patch, read_shard_chunks, write_shard
from pathda.tiling.store import STORE_FORMAT, STORE_FORMAT_VERSION, TILE_COLUMNS, SlideRecord

# A shard (one file) holds this many bytes of patches at most; 16 MiB keeps the file
# count low (about 64 files per million 64 px patches) and a shard rewrite cheap.
_SHARD_BYTES = 16 * 2**20
_COLUMN_CHUNK = 65536  # rows per chunk of the 1-D arrays


def choose_shard_size(patch_size: int) -> int:
    """Patches per shard: a power of two in 16..256 keeping a shard under 16 MiB."""
    per_patch = patch_size * patch_size * 3
    size = 256
    while size > 16 and size * per_patch > _SHARD_BYTES:
        size //= 2
    return size


class StoreWriter:
    """Sequential writer for one store; the caller holds the store lock.

    Use ``create`` for a new store or ``reopen`` for resume/append; then for each slide
    ``begin_slide`` -> ``write_patches`` (any batch sizes) -> ``commit_slide``; ``finish``.
    """

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.patch_size = int(self.attrs["patch_size"])
        self.shard_rows = int(self.attrs["shard_size"])
        self._patches_dir = path / "patches"
        self._row = int(self.attrs["n_committed"])  # next row to write
        self._slide_end = self._row
        self._chunks: list[bytes] = []  # encoded rows of the open shard, from its start

    # -- opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, header: dict[str, Any], slides: list[SlideRecord]) -> StoreWriter:
        """Create an empty store with ``header`` attributes (mpp, patch_size, grid, ...).

        The store is built under a temporary name and renamed into place, so ``path``
        never exists without its attributes.
        """
        p = int(header["patch_size"])
        shard = choose_shard_size(p)
        # Leftovers of a creation killed half-way (the caller holds the store lock).
        for stale in path.parent.glob(f".{path.name}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_path(path) as tmp:
            cls._build(tmp, header, slides, p, shard)
        return cls(zarr.open_group(path, mode="r+", zarr_format=3), path)

    @staticmethod
    def _build(path: Path, header: dict[str, Any], slides: list[SlideRecord], p: int, shard: int):
        group = zarr.open_group(path, mode="w-", zarr_format=3)
        group.create_array(
            "patches",
            shape=(0, p, p, 3),
            chunks=(1, p, p, 3),
            shards=(shard, p, p, 3),
            dtype="uint8",
            compressors=ZstdCodec(level=ZSTD_LEVEL),
            fill_value=0,
        )
        for name, dtype in TILE_COLUMNS.items():
            group.create_array(name, shape=(0,), chunks=(_COLUMN_CHUNK,), dtype=dtype, fill_value=0)
        attrs = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "complete": False,
            **header,
            "shard_size": shard,
            "slides": [s.to_dict() for s in slides],
            "n_committed": 0,
        }
        group.attrs.put(attrs)

    @classmethod
    def reopen(cls, path: Path) -> StoreWriter:
        """Open an existing store for writing and drop rows of uncommitted slides."""
        try:
            group = zarr.open_group(path, mode="r+", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as err:
            raise TileStoreError(f"{path}: not a readable tile store ({err})") from None
        if group.attrs.get("format") != STORE_FORMAT:
            raise TileStoreError(f"{path}: exists but is not a pathda tile store; choose --out")
        writer = cls(group, path)
        writer._truncate(writer._row)
        for stale in (path / "patches" / "c").glob("*/0/0/.0.*.partial"):
            stale.unlink(missing_ok=True)  # shard writes cut short by a kill
        in_shard = writer._row % writer.shard_rows
        if in_shard:
            shard = writer._row // writer.shard_rows
            writer._chunks = read_shard_chunks(path / "patches", shard, in_shard, writer.shard_rows)
        return writer

    @property
    def n_rows(self) -> int:
        """Rows written so far (the next slide starts here)."""
        return self._row

    @property
    def slides(self) -> list[SlideRecord]:
        return [SlideRecord.from_dict(r) for r in self.attrs["slides"]]

    def update_attrs(self, **values: Any) -> None:
        """Set attributes (atomic rewrite of the group metadata)."""
        self.attrs.update(values)
        self.group.attrs.put(self.attrs)

    # -- writing -------------------------------------------------------------
    def begin_slide(self, slide: int, columns: dict[str, np.ndarray]) -> None:
        """Start slide ``slide``: grow the arrays and write its per-tile columns.

        Args:
            slide: row in the slide table; all earlier slides must be committed.
            columns: one (n,) array per name in ``TILE_COLUMNS`` except ``slide_index``.
        """
        if self._row != self._slide_end:
            raise RuntimeError("begin_slide called before the previous slide was committed")
        n = len(columns["labels"])
        start = self._row
        self._slide_end = start + n
        self._resize(self._slide_end)
        full = {**columns, "slide_index": np.full(n, slide, np.int32)}
        for name, dtype in TILE_COLUMNS.items():
            if n:
                self.group[name][start : start + n] = np.asarray(full[name], dtype=dtype)

    def write_patches(self, patches: np.ndarray) -> None:
        """Append (n, P, P, 3) uint8 patches of the current slide, in row order."""
        self.write_encoded([encode_patch(p) for p in patches])

    def write_encoded(self, chunks: list[bytes]) -> None:
        """Append patches already encoded with ``shards.encode_patch``, in row order."""
        if self._row + len(chunks) > self._slide_end:
            raise RuntimeError("more patches than the slide's planned tiles")
        for chunk in chunks:
            self._chunks.append(chunk)
            self._row += 1
            if len(self._chunks) == self.shard_rows:
                self._write_open_shard()
                self._chunks = []

    def commit_slide(self, slide: int, **record: Any) -> None:
        """Write the slide's last patches and mark it committed with ``record`` fields."""
        if self._row != self._slide_end:
            raise RuntimeError(f"slide {slide}: wrote {self._row} rows, planned {self._slide_end}")
        if self._chunks:
            self._write_open_shard()  # partial; its chunks stay buffered for the next slide
        rows = list(self.attrs["slides"])
        rows[slide] = {**rows[slide], **record}
        self.update_attrs(slides=rows, n_committed=self._row)

    def finish(self, **values: Any) -> None:
        """Set final attributes and ``complete`` = true (the last write of a run)."""
        self.update_attrs(**values, complete=True)

    # -- internals -------------------------------------------------------------
    def _write_open_shard(self) -> None:
        shard = (self._row - len(self._chunks)) // self.shard_rows
        write_shard(self._patches_dir, shard, self._chunks, self.shard_rows)

    def _resize(self, rows: int) -> None:
        p = self.patch_size
        self.group["patches"].resize((rows, p, p, 3))
        for name in TILE_COLUMNS:
            self.group[name].resize((rows,))

    def _truncate(self, rows: int) -> None:
        # Arrays are resized one by one, so a crash can leave them at different lengths.
        names = ["patches", *TILE_COLUMNS]
        if any(self.group[name].shape[0] != rows for name in names):
            self._resize(rows)
