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

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from pathda.atomic import atomic_path
from pathda.errors import StoreDamageError, TileStoreError
from pathda.tiling.integrity import PatchDigest, columns_digest
from pathda.tiling.shards import (
    ZSTD_LEVEL,
    encode_patch,
    read_shard_chunks,
    read_shard_rows,
    write_shard,
    write_shard_rows,
)
from pathda.tiling.store import (
    COLUMN_FILL,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    TILE_COLUMNS,
    SlideRecord,
)

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


@dataclasses.dataclass
class _Rewrite:
    """Progress of a committed slide being rebuilt in place."""

    start: int
    end: int
    row: int
    shard: int | None = None
    pending: dict[int, bytes] = dataclasses.field(default_factory=dict)


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
        # Encoded rows of the open shard, from its start; None until needed after a reopen.
        self._chunks: list[bytes] | None = []
        self._shard_bytes: list[int] = list(self.attrs.get("shard_bytes") or [])
        self._digest = PatchDigest()
        self._columns_sha256 = ""
        self._rewrite: _Rewrite | None = None

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
            group.create_array(
                name,
                shape=(0,),
                chunks=(_COLUMN_CHUNK,),
                dtype=dtype,
                fill_value=COLUMN_FILL[name],
            )
        attrs = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "complete": False,
            **header,
            "shard_size": shard,
            "slides": [s.to_dict() for s in slides],
            "n_committed": 0,
            "shard_bytes": [],
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
        writer._chunks = None  # read on the first append: damaged slides are rebuilt first
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
        self._write_columns(slide, start, columns)
        self._digest = PatchDigest()

    def begin_rewrite(self, slide: int, start: int, columns: dict[str, np.ndarray]) -> None:
        """Rebuild committed slide ``slide`` in place (rows ``start ..``; same tile count).

        Then ``write_encoded`` its patches and ``commit_rewrite``. Shards shared with other
        slides keep those slides' chunks; a missing or damaged shard is started afresh (its
        other slides are damaged too and are rebuilt in the same run).
        """
        if self._row != self._slide_end:
            raise RuntimeError("begin_rewrite called while a slide is being appended")
        n = len(columns["labels"])
        self._write_columns(slide, start, columns)
        self._digest = PatchDigest()
        self._rewrite = _Rewrite(start=start, end=start + n, row=start)

    def _write_columns(self, slide: int, start: int, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["labels"])
        full = {**columns, "slide_index": np.full(n, slide, np.int32)}
        values = {name: np.asarray(full[name], dtype=dtype) for name, dtype in TILE_COLUMNS.items()}
        for name, column in values.items():
            if n:
                self.group[name][start : start + n] = column
        self._columns_sha256 = columns_digest(values, TILE_COLUMNS)

    def write_patches(self, patches: np.ndarray) -> None:
        """Append (n, P, P, 3) uint8 patches of the current slide, in row order."""
        self.write_encoded([encode_patch(p) for p in patches])

    def write_encoded(self, chunks: list[bytes]) -> None:
        """Append (or rewrite) patches encoded with ``shards.encode_patch``, in row order."""
        if self._rewrite is not None:
            self._rewrite_encoded(chunks)
            return
        if self._row + len(chunks) > self._slide_end:
            raise RuntimeError("more patches than the slide's planned tiles")
        open_chunks = self._open_chunks()
        for chunk in chunks:
            self._digest.update(chunk)
            open_chunks.append(chunk)
            self._row += 1
            if len(open_chunks) == self.shard_rows:
                self._write_open_shard()
                open_chunks.clear()

    def commit_slide(self, slide: int, **record: Any) -> None:
        """Write the slide's last patches and mark it committed with ``record`` fields."""
        if self._row != self._slide_end:
            raise RuntimeError(f"slide {slide}: wrote {self._row} rows, planned {self._slide_end}")
        if self._chunks:
            self._write_open_shard()  # partial; its chunks stay buffered for the next slide
        self._commit_record(slide, record, n_committed=self._row)

    def commit_rewrite(self, slide: int, **record: Any) -> None:
        """Write a rebuilt slide's last shard and record its new checksums."""
        rewrite = self._rewrite
        if rewrite is None or rewrite.row != rewrite.end:
            raise RuntimeError(f"slide {slide}: rewrite incomplete")
        self._flush_rewrite()
        self._rewrite = None
        self._commit_record(slide, record)

    def _commit_record(self, slide: int, record: dict[str, Any], **attrs: Any) -> None:
        rows = list(self.attrs["slides"])
        checksums = {
            "patches_sha256": self._digest.hexdigest(),
            "columns_sha256": self._columns_sha256,
        }
        rows[slide] = {**rows[slide], **record, **checksums}
        self.update_attrs(slides=rows, shard_bytes=list(self._shard_bytes), **attrs)

    def finish(self, **values: Any) -> None:
        """Set final attributes and ``complete`` = true (the last write of a run)."""
        self.update_attrs(**values, complete=True)

    # -- internals -------------------------------------------------------------
    def _open_chunks(self) -> list[bytes]:
        if self._chunks is None:
            in_shard = self._row % self.shard_rows
            shard = self._row // self.shard_rows
            self._chunks = (
                read_shard_chunks(self._patches_dir, shard, in_shard, self.shard_rows)
                if in_shard
                else []
            )
        return self._chunks

    def _write_open_shard(self) -> None:
        shard = (self._row - len(self._chunks)) // self.shard_rows
        self._record_size(
            shard, write_shard(self._patches_dir, shard, self._chunks, self.shard_rows)
        )

    def _record_size(self, shard: int, size: int) -> None:
        if shard >= len(self._shard_bytes):
            self._shard_bytes.extend([0] * (shard + 1 - len(self._shard_bytes)))
        self._shard_bytes[shard] = size

    def _rewrite_encoded(self, chunks: list[bytes]) -> None:
        rewrite = self._rewrite
        if rewrite.row + len(chunks) > rewrite.end:
            raise RuntimeError("more patches than the slide's committed tiles")
        for chunk in chunks:
            shard = rewrite.row // self.shard_rows
            if rewrite.shard is not None and shard != rewrite.shard:
                self._flush_rewrite()
            rewrite.shard = shard
            rewrite.pending[rewrite.row % self.shard_rows] = chunk
            self._digest.update(chunk)
            rewrite.row += 1

    def _flush_rewrite(self) -> None:
        rewrite = self._rewrite
        if rewrite.shard is None or not rewrite.pending:
            return
        try:  # keep the other slides' chunks of this shard
            rows = read_shard_rows(self._patches_dir, rewrite.shard, self.shard_rows)
        except (FileNotFoundError, StoreDamageError):
            rows = {}
        rows.update(rewrite.pending)
        size = write_shard_rows(self._patches_dir, rewrite.shard, rows, self.shard_rows)
        self._record_size(rewrite.shard, size)
        rewrite.pending = {}

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
