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


def write_shard(array_dir: Path, shard: int, chunks: list[bytes], shard_rows: int) -> None:
    """Write shard ``shard`` holding ``chunks`` (its first rows) atomically."""
    index = np.full((shard_rows, 2), _ABSENT, "<u8")
    offset = 0
    for i, chunk in enumerate(chunks):
        index[i] = (offset, len(chunk))
        offset += len(chunk)
    index_bytes = index.tobytes()
    crc = np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
    path = shard_path(array_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        f.write(b"".join(chunks))
        f.write(index_bytes)
        f.write(crc)
    os.replace(tmp, path)


def read_shard_chunks(array_dir: Path, shard: int, n: int, shard_rows: int) -> list[bytes]:
    """The first ``n`` encoded chunks of a shard (to carry on writing it after a resume)."""
    with open(shard_path(array_dir, shard), "rb") as f:
        data = f.read()
    index = np.frombuffer(data[-(shard_rows * 16 + _CRC_BYTES) : -_CRC_BYTES], "<u8")
    index = index.reshape(shard_rows, 2)
    if np.any(index[:n, 0] == _ABSENT):
        raise ValueError(f"{shard_path(array_dir, shard)}: committed chunks missing")
    return [data[int(o) : int(o) + int(b)] for o, b in index[:n]]


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
            try:
                fd = os.open(shard_path(self.array_dir, int(shard)), os.O_RDONLY)
            except FileNotFoundError:
                continue  # a shard never written holds fill values (zeros)
            try:
                index = self._index(int(shard), fd)
                for row in rows:
                    offset, nbytes = index[int(indices[row]) % self.shard_rows]
                    if offset != _ABSENT:
                        chunk = os.pread(fd, int(nbytes), int(offset))
                        out[row] = decode_patch(chunk, self.patch_shape)
            finally:
                os.close(fd)
        return out

    def _index(self, shard: int, fd: int) -> np.ndarray:
        index = self._indexes.get(shard)
        if index is None:
            size = self.shard_rows * 16
            end = os.fstat(fd).st_size
            raw = os.pread(fd, size, end - size - _CRC_BYTES)
            index = np.frombuffer(raw, "<u8").reshape(self.shard_rows, 2)
            self._indexes[shard] = index
        return index


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
