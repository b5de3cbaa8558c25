"""Tile store: schema readable with plain zarr, writer commit/resume, reader API, lock."""

from __future__ import annotations

import json
import os
import pickle
import platform
import subprocess
import sys

import numpy as np
import pytest
import zarr

from pathda.errors import StoreLockedError, TileStoreError
from pathda.tiling.lock import lock_path, store_lock
from pathda.tiling.shards import ShardedPatchReader
from pathda.tiling.store import TILE_COLUMNS, SlideRecord, TileStore
from pathda.tiling.store_writer import StoreWriter, choose_shard_size

P = 8


def _header() -> dict:
    return {
        "class_names": ["normal", "benign", "in situ", "invasive"],
        "mpp": 1.868,
        "patch_size": P,
        "stride": P,
        "grid": {"mpp": 1.868},
        "domains": ["src", "tgt"],
        "stain": None,
        "config": {},
        "provenance": {},
    }


def _slides() -> list[SlideRecord]:
    return [
        SlideRecord("a.tif", "a.xml", "src", "train", 0.467, (100, 80)),
        SlideRecord("b.tif", None, "tgt", "train", 0.467, (100, 80)),
        SlideRecord("c.tif", "c.xml", "src", "val", 0.467, (100, 80)),
    ]


def _columns(n: int, label: int, domain: int) -> dict[str, np.ndarray]:
    return {
        "labels": np.full(n, label),
        "domain_index": np.full(n, domain),
        "x": np.arange(n) * 32,
        "y": np.arange(n) * 16,
        "tissue_fraction": np.linspace(0.5, 1, n),
    }


def _patches(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, P, P, 3), dtype=np.uint8)


def _write(path, counts=(300, 5, 40), stop_after=None):
    writer = StoreWriter.create(path, _header(), _slides())
    for i, (n, label, dom) in enumerate(zip(counts, (2, -1, 0), (0, 1, 0), strict=True)):
        if stop_after is not None and i == stop_after:
            writer.begin_slide(i, _columns(n, label, dom))
            writer.write_patches(_patches(n, i)[: n // 2])  # killed mid-slide
            return writer
        writer.begin_slide(i, _columns(n, label, dom))
        patches = _patches(n, i)
        for s in range(0, n, 37):  # odd batch size: exercises shard-aligned buffering
            writer.write_patches(patches[s : s + 37])
        writer.commit_slide(i, status="done", tile_start=sum(counts[:i]), n_tiles=n)
    writer.finish()
    return writer


def test_choose_shard_size_keeps_shards_small():
    assert choose_shard_size(64) == 256
    assert choose_shard_size(512) * 512 * 512 * 3 <= 16 * 2**20
    assert choose_shard_size(4096) == 16


def test_store_schema_with_plain_zarr(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path)
    group = zarr.open_group(path, mode="r")
    assert group.attrs["complete"] is True
    assert group.attrs["n_committed"] == 345
    assert group["patches"].shape == (345, P, P, 3)
    assert group["patches"].dtype == np.uint8
    for name, dtype in TILE_COLUMNS.items():
        assert group[name].shape == (345,)
        assert group[name].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(group["patches"][300:305], _patches(5, 1))
    np.testing.assert_array_equal(group["slide_index"][:], np.repeat([0, 1, 2], [300, 5, 40]))
    json.dumps(dict(group.attrs))  # attributes are plain JSON


def test_reader_api(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path)
    store = TileStore(path)
    assert len(store) == 345
    assert store.class_names[2] == "in situ"
    assert store.slides[1].annotation is None
    assert store.slides[0].dimensions == (100, 80)
    np.testing.assert_array_equal(store.indices(labelled=False), np.arange(300, 305))
    np.testing.assert_array_equal(store.indices(split="val"), np.arange(305, 345))
    np.testing.assert_array_equal(
        store.indices(split="train", labelled=True, domain="src"), np.arange(300)
    )
    assert store.indices(domain=["tgt"]).tolist() == [300, 301, 302, 303, 304]
    with pytest.raises(TileStoreError, match="unknown domain"):
        store.indices(domain="nope")
    batch = store.read_patches([302, 3, 302])
    np.testing.assert_array_equal(batch[0], _patches(5, 1)[2])
    np.testing.assert_array_equal(batch[1], _patches(300, 0)[3])
    np.testing.assert_array_equal(batch[2], batch[0])
    assert store.splits[310] == "val"
    with pytest.raises(IndexError):
        store.read_patches([345])
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone[7], store[7])


def test_incomplete_store_refused_then_resumed(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path, stop_after=2)
    with pytest.raises(TileStoreError, match="unfinished"):
        TileStore(path)
    assert len(TileStore(path, allow_incomplete=True)) == 305
    writer = StoreWriter.reopen(path)
    assert writer.group["patches"].shape[0] == 305  # half-written slide dropped
    writer.begin_slide(2, _columns(40, 0, 0))
    writer.write_patches(_patches(40, 2))
    writer.commit_slide(2, status="done", tile_start=305, n_tiles=40)
    writer.finish()
    reference = tmp_path / "ref.zarr"
    _write(reference)
    a, b = zarr.open_group(path, mode="r"), zarr.open_group(reference, mode="r")
    for name in ["patches", *TILE_COLUMNS]:
        np.testing.assert_array_equal(a[name][:], b[name][:])


def test_lock_refuses_second_writer_and_takes_over_stale(tmp_path):
    store = tmp_path / "t.zarr"
    with store_lock(store), pytest.raises(StoreLockedError, match="being written by pid"):
        _enter(store)
    assert not lock_path(store).exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock_path(store).write_text(json.dumps({"pid": int(dead.stdout), "host": platform.node()}))
    with pytest.warns(UserWarning, match="stale lock"), store_lock(store):
        assert json.loads(lock_path(store).read_text())["pid"] == os.getpid()
    lock_path(store).write_text(json.dumps({"pid": 1, "host": "another-host"}))
    with pytest.raises(StoreLockedError):
        _enter(store)


def _enter(store):
    with store_lock(store):
        pass


def test_direct_shard_reads_match_zarr(tmp_path):
    path = tmp_path / "t.zarr"
    _write(path)
    store = TileStore(path)
    reader = ShardedPatchReader.open(path / "patches")
    assert reader is not None
    assert reader.shard_rows == 256
    idx = np.random.default_rng(0).integers(0, len(store), 100)
    expected = np.asarray(zarr.open_array(path / "patches", mode="r").oindex[np.sort(idx)])
    np.testing.assert_array_equal(reader.read(np.sort(idx)), expected)
    np.testing.assert_array_equal(store.read_patches(idx), reader.read(idx))
    # Another layout (no sharding) is not read directly; TileStore falls back to zarr.
    plain = zarr.create_array(
        tmp_path / "plain", shape=(4, P, P, 3), chunks=(1, P, P, 3), dtype="u1"
    )
    assert ShardedPatchReader.open(tmp_path / "plain") is None
    assert plain.shape[0] == 4
    assert TileStore(path, allow_incomplete=True)._fast_reader is not None
