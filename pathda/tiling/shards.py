"""The ``patches`` array's shard files, written and read without going through zarr.

zarr costs about a millisecond per patch on both writes and random reads (its async
codec pipeline handles every inner chunk separately), which would make the store the
bottleneck of tiling and of training. The layout is zarr's published v3 sharding
format, so plain zarr reads what this module writes:

- array metadata (``zarr.json``, written by zarr): chunk grid ``(S, P, P, 3)``, codec
  ``sharding_indexed`` with inner chunks ``(1, P, P, 3)`` encoded ``bytes`` + ``zstd``,
  index encoded ``bytes`` (little endian) + ``crc32c`` at the end of the shard;
- shard ``k`` (rows ``k*S .. k*S + S``) is the file ``<array>/c/<k>/0/0/0``: the
  encoded chunks back to back, then S (offset, nbytes) uint64 pairs (all ones = chunk
  absent), then the CRC32C of those pairs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from numcodecs import zstd

from pathda.errors import StoreDamageError as ShardError

ZSTD_LEVEL = 1  # H&E patches barely compress; level 1 keeps encoding fast
_ABSENT = np.uint64(2**64 - 1)
_CRC_BYTES = 4


def encode_patch(patch: np.ndarray) -> bytes:
    """One (P, P, 3) uint8 patch as an encoded inner chunk (raw bytes, zstd)."""
    return zstd.compress(np.ascontiguousarray(patch, np.uint8).tobytes(), ZSTD_LEVEL)


def decode_patch(chunk: bytes, patch_shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(zstd.decompress(chunk), np.uint8).reshape(patch_shape)


def shard_path(array_dir: Path, shard: int) -> Path:
    return array_dir / "c" / str(shard) / "0" / "0" / "0"


def write_shard(array_dir: Path, shard: int, chunks: list[bytes], shard_rows: int) -> int:
    """Write shard ``shard`` holding ``chunks`` (its first rows) atomically; returns its size."""
    return write_shard_rows(array_dir, shard, dict(enumerate(chunks)), shard_rows)


def write_shard_rows(array_dir: Path, shard: int, rows: dict[int, bytes], shard_rows: int) -> int:
    """Write shard ``shard`` holding ``rows`` (row in shard -> chunk; others absent) atomically.

    Returns:
        The file's size in bytes (recorded by the writer for the integrity check).
    """
    index = np.full((shard_rows, 2), _ABSENT, "<u8")
    offset = 0
    ordered = sorted(rows.items())
    for i, chunk in ordered:
        index[i] = (offset, len(chunk))
        offset += len(chunk)
    index_bytes = index.tobytes()
    crc = np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
    path = shard_path(array_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        f.write(b"".join(chunk for _, chunk in ordered))
        f.write(index_bytes)
        f.write(crc)
    os.replace(tmp, path)
    return offset + len(index_bytes) + _CRC_BYTES


def read_shard_index(fd: int, shard_rows: int, path: Path) -> np.ndarray:
    """The ``(shard_rows, 2)`` (offset, nbytes) index of an open shard, verified.

    Raises:
        ShardError: the file is too short, its index fails its CRC32C, or an entry points
            outside the chunk data (a truncated or overwritten shard).
    """
    size = shard_rows * 16
    end = os.fstat(fd).st_size
    if end < size + _CRC_BYTES:
        raise ShardError(f"shard file {path} is truncated ({end} bytes)")
    raw = os.pread(fd, size + _CRC_BYTES, end - size - _CRC_BYTES)
    index_bytes, crc = raw[:size], raw[size:]
    if np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes() != crc:
        raise ShardError(f"shard file {path} is damaged (its index fails its checksum)")
    index = np.frombuffer(index_bytes, "<u8").reshape(shard_rows, 2)
    present = index[:, 0] != _ABSENT
    data_end = end - size - _CRC_BYTES
    if np.any(index[present, 0] + index[present, 1] > data_end):
        raise ShardError(f"shard file {path} is damaged (an index entry points past its data)")
    return index


def read_shard_rows(array_dir: Path, shard: int, shard_rows: int) -> dict[int, bytes]:
    """Every chunk present in a shard (row in shard -> bytes)."""
    path = shard_path(array_dir, shard)
    with open(path, "rb") as f:
        index = read_shard_index(f.fileno(), shard_rows, path)
        data = f.read()
    return {i: data[int(o) : int(o) + int(b)] for i, (o, b) in enumerate(index) if o != _ABSENT}


def read_shard_chunks(array_dir: Path, shard: int, n: int, shard_rows: int) -> list[bytes]:
    """The first ``n`` encoded chunks of a shard (to carry on writing it after a resume)."""
    rows = read_shard_rows(array_dir, shard, shard_rows)
    if any(i not in rows for i in range(n)):
        raise ShardError(f"{shard_path(array_dir, shard)}: committed chunks missing")
    return [rows[i] for i in range(n)]


class ShardedPatchReader:
    """Random access to (P, P, 3) uint8 patches of a finished ``patches`` array.

    Build it with ``ShardedPatchReader.open(array_dir)``, which returns None when the
    array's layout is not the one described in the module docstring. Shard indexes are
    cached, so use it only on a store that is no longer written.
    """

    def __init__(self, array_dir: Path, shape: tuple[int, ...], shard_rows: int) -> None:
        self.array_dir = array_dir
        self.shape = shape
        self.shard_rows = shard_rows
        self.patch_shape = tuple(shape[1:])
        self._indexes: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, array_dir: str | Path) -> ShardedPatchReader | None:
        array_dir = Path(array_dir)
        try:
            meta = json.loads((array_dir / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        shard_rows = supported_shard_rows(meta)
        if shard_rows is None:
            return None
        return cls(array_dir, tuple(meta["shape"]), shard_rows)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """(n, P, P, 3) uint8 patches at ``indices`` (in range, any order)."""
        indices = np.asarray(indices, np.int64)
        out = np.zeros((len(indices), *self.patch_shape), np.uint8)
        shards = indices // self.shard_rows
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            path = shard_path(self.array_dir, int(shard))
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                # Only committed rows are read, and every committed row has its shard.
                raise ShardError(f"shard file {path} is missing") from None
            try:
                index = self._index(int(shard), fd, path)
                for row in rows:
                    offset, nbytes = index[int(indices[row]) % self.shard_rows]
                    if offset == _ABSENT:
                        raise ShardError(f"shard file {path}: patch {indices[row]} is missing")
                    chunk = os.pread(fd, int(nbytes), int(offset))
                    out[row] = _decode(chunk, self.patch_shape, path)
            finally:
                os.close(fd)
        return out

    def _index(self, shard: int, fd: int, path: Path) -> np.ndarray:
        index = self._indexes.get(shard)
        if index is None:
            index = read_shard_index(fd, self.shard_rows, path)
            self._indexes[shard] = index
        return index


def _decode(chunk: bytes, patch_shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        return decode_patch(chunk, patch_shape)
    except (RuntimeError, ValueError) as err:  # zstd or size errors from damaged bytes
        raise ShardError(f"shard file {path}: a patch does not decode ({err})") from None


def supported_shard_rows(meta: dict[str, Any]) -> int | None:
    """Patches per shard if array metadata ``meta`` has this module's layout, else None."""
    try:
        (codec,) = meta["codecs"]
        config = codec["configuration"]
        shape = meta["shape"]
        outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
        encoding = meta["chunk_key_encoding"]
        ok = (
            meta["data_type"] == "uint8"
            and encoding["name"] == "default"
            and encoding.get("configuration", {}).get("separator", "/") == "/"
            and codec["name"] == "sharding_indexed"
            and config["chunk_shape"] == [1, *shape[1:]]
            and outer[1:] == shape[1:]
            and [c["name"] for c in config["codecs"]] == ["bytes", "zstd"]
            and [c["name"] for c in config["index_codecs"]] == ["bytes", "crc32c"]
            and config["index_codecs"][0].get("configuration", {}).get("endian") == "little"
            and config.get("index_location", "end") == "end"
            and meta["fill_value"] == 0
            and not meta.get("storage_transformers")
        )
    except (KeyError, TypeError, ValueError):
        return None
    return int(outer[0]) if ok else None
