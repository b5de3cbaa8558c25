"""Is a tile store what its writer committed? Cheap structural checks and deep checksums.

At each slide commit the writer records, in the slide's record, ``patches_sha256`` (over its
encoded patch chunks, in row order) and ``columns_sha256`` (over its rows of every per-tile
column), and in ``shard_bytes`` the size of every shard file it wrote.

- :func:`find_damage` with ``deep=False`` (every ``TileStore`` open; milliseconds): every
  array is present and long enough, every shard file holding committed rows exists with its
  recorded size, every chunk file of the per-tile columns exists, and the slide table's
  counts add up.
- ``deep=True`` (``pathda verify``, ``pathda tile --verify``): also re-reads every committed
  patch chunk and column value and compares the checksums.

Damage is reported per slide (rows live in files shared with neighbouring slides, so one
missing file can damage several slides); rerunning the same ``pathda tile`` command rebuilds
exactly those slides in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pathda.tiling.shards import ShardError, read_shard_index, shard_path


@dataclasses.dataclass(frozen=True)
class Damage:
    """What is wrong with one slide's rows (``slide`` is None: the whole store)."""

    slide: int | None
    path: str | None
    reason: str


class PatchDigest:
    """Running SHA-256 of a slide's encoded patch chunks, in row order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self._sha.update(len(chunk).to_bytes(8, "little"))
        self._sha.update(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def columns_digest(columns: Mapping[str, np.ndarray], dtypes: Mapping[str, str]) -> str:
    """SHA-256 of a slide's rows of every per-tile column (in ``dtypes`` order)."""
    sha = hashlib.sha256()
    for name, dtype in dtypes.items():
        values = np.ascontiguousarray(np.asarray(columns[name], dtype=dtype))
        sha.update(f"{name}:{values.size}\0".encode())
        sha.update(values.astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes())
    return sha.hexdigest()


def find_damage(
    path: Path, attrs: Mapping[str, Any], columns: Sequence[str], *, deep: bool = False
) -> list[Damage]:
    """Every problem found in the committed rows of the store at ``path`` (empty: intact).

    Args:
        path: the store folder.
        attrs: its group attributes.
        columns: names of the per-tile 1-D arrays.
        deep: also verify the recorded checksums (reads every committed byte).
    """
    slides = list(attrs.get("slides", []))
    n = int(attrs.get("n_committed", 0))
    shard_rows = int(attrs["shard_size"])
    committed = [(i, s) for i, s in enumerate(slides) if s.get("status") != "pending"]
    chunk_rows: dict[str, int] = {}
    whole = _store_damage(path, attrs, columns, committed, n, chunk_rows)
    if whole:
        return whole
    bad_shards: dict[int, str] = {}
    recorded = attrs.get("shard_bytes") or []
    n_shards = math.ceil(n / shard_rows)
    for shard in range(n_shards):
        file = shard_path(path / "patches", shard)
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            bad_shards[shard] = f"shard file {file} is missing"
            continue
        if shard == n_shards - 1 and not attrs.get("complete"):
            # An interrupted run may have rewritten the open shard with uncommitted rows:
            # check that it still holds the committed ones instead of its size.
            bad_shards.update(_open_shard_damage(file, shard, n, shard_rows))
        elif shard >= len(recorded) or size != recorded[shard]:
            expected = recorded[shard] if shard < len(recorded) else "unrecorded"
            bad_shards[shard] = f"shard file {file} has {size} bytes, {expected} expected"
    bad_chunks: dict[tuple[str, int], str] = {}
    for name in columns:
        for chunk in range(math.ceil(n / chunk_rows[name])):
            file = path / name / "c" / str(chunk)
            if not file.is_file():
                bad_chunks[(name, chunk)] = f"{name} chunk file {file} is missing"
    damage = []
    for i, slide in committed:
        start, count = int(slide.get("tile_start", 0)), int(slide.get("n_tiles", 0))
        if count == 0:
            continue
        reason = _first(
            bad_shards.get(k)
            for k in range(start // shard_rows, (start + count - 1) // shard_rows + 1)
        ) or _first(
            bad_chunks.get((name, k))
            for name in columns
            for k in range(start // chunk_rows[name], (start + count - 1) // chunk_rows[name] + 1)
        )
        if reason is None and deep:
            reason = _checksum_damage(path, slide, start, count, shard_rows, columns)
        if reason is not None:
            damage.append(Damage(i, slide.get("path"), reason))
    return damage


def damage_message(store: Path, damage: Sequence[Damage]) -> str:
    """One line: the first damaged slide, how many more, and the fix."""
    first = damage[0]
    if first.slide is None:
        return f"{store}: tile store is damaged ({first.reason}); delete it and rerun `pathda tile`"
    more = f" (and {len(damage) - 1} more slide(s))" if len(damage) > 1 else ""
    return (
        f"{store}: slide {first.path} is damaged: {first.reason}{more}; rerun the same "
        "`pathda tile` command to rebuild the damaged slides"
    )


def _store_damage(
    path: Path,
    attrs: Mapping[str, Any],
    columns: Sequence[str],
    committed: list,
    n: int,
    chunk_rows: dict[str, int],
) -> list[Damage]:
    """Problems no per-slide rebuild can fix: missing arrays, inconsistent counts.

    Fills ``chunk_rows`` (rows per chunk file of each column) from the arrays' metadata.
    """
    for name in ["patches", *columns]:
        try:
            meta = json.loads((path / name / "zarr.json").read_text())
            length = int(meta["shape"][0])
            chunk_rows[name] = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return [Damage(None, None, f"array {name!r} is missing or unreadable")]
        if length < n:
            return [Damage(None, None, f"array {name!r} is shorter than {n} rows")]
    expected = 0
    for _, slide in committed:
        if int(slide.get("tile_start", -1)) != expected:
            return [Damage(None, None, f"slide table out of order at {slide.get('path')}")]
        expected += int(slide.get("n_tiles", 0))
    if expected != n:
        return [Damage(None, None, f"slides hold {expected} tiles but {n} are committed")]
    return []


def _checksum_damage(
    path: Path,
    slide: Mapping[str, Any],
    start: int,
    count: int,
    shard_rows: int,
    columns: Sequence[str],
) -> str | None:
    if "patches_sha256" not in slide or "columns_sha256" not in slide:
        return "no checksums recorded"
    digest = PatchDigest()
    try:
        for chunk in iter_patch_chunks(path / "patches", start, count, shard_rows):
            digest.update(chunk)
    except ShardError as err:
        return str(err)
    if digest.hexdigest() != slide["patches_sha256"]:
        return "patch bytes do not match their checksum"
    import zarr  # only the deep check reads columns through zarr

    group = zarr.open_group(path, mode="r", zarr_format=3)
    values = {name: group[name][start : start + count] for name in columns}
    dtypes = {name: str(group[name].dtype) for name in columns}
    if columns_digest(values, dtypes) != slide["columns_sha256"]:
        return "per-tile columns (labels, positions, ...) do not match their checksum"
    return None


def iter_patch_chunks(array_dir: Path, start: int, count: int, shard_rows: int) -> Iterable[bytes]:
    """Encoded chunks of rows ``start .. start + count``, in order (raises ShardError)."""
    row, end = start, start + count
    while row < end:
        shard = row // shard_rows
        stop = min(end, (shard + 1) * shard_rows)
        file = shard_path(array_dir, shard)
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            raise ShardError(f"shard file {file} is missing") from None
        try:
            index = read_shard_index(fd, shard_rows, file)
            for r in range(row, stop):
                offset, nbytes = (int(v) for v in index[r % shard_rows])
                if offset == 2**64 - 1:
                    raise ShardError(f"shard file {file}: patch {r} is missing")
                chunk = os.pread(fd, nbytes, offset)
                if len(chunk) != nbytes:
                    raise ShardError(f"shard file {file}: chunk {r % shard_rows} is cut short")
                yield chunk
        finally:
            os.close(fd)
        row = stop


def _open_shard_damage(file: Path, shard: int, n: int, shard_rows: int) -> dict[int, str]:
    try:
        with open(file, "rb") as f:
            index = read_shard_index(f.fileno(), shard_rows, file)
    except ShardError as err:
        return {shard: str(err)}
    committed = index[: n - shard * shard_rows, 0]
    if np.any(committed == np.uint64(2**64 - 1)):
        return {shard: f"shard file {file} lacks committed patches"}
    return {}


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v is not None), None)
