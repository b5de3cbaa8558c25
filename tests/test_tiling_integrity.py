"""A damaged tile store is an error naming the slide; rerunning tile rebuilds exactly that.

Shards hold 16 patches here (the writer's size is patched) so that three small slides span
several shard files, some shared by two slides.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pathda.cli import main
from pathda.errors import StoreDamageError
from pathda.synth import synthesise_slides
from pathda.tiling import TileConfig, TileStore, tile_slides
from pathda.tiling.shards import ShardedPatchReader, shard_path
from pathda.tiling.store import TILE_COLUMNS

SHARD_ROWS = 16
GRID = {"mpp": 1.868, "patch_size": 32, "stride": 32, "workers": 1}
CLI_GRID = ["--mpp", "1.868", "--patch-size", "32", "--stride", "32", "--workers", "1", "-q"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("slides")
    slides = synthesise_slides(root, n=3, domain="lab-a", size=(1024, 1024), seed=3, quiet=True)
    rows = ["slide,annotation,domain,split"]
    rows += [f"{s.image},{s.annotation},lab-a,train" for s in slides]
    path = root / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """An undamaged store (never modified by the tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pathda.tiling.store_writer.choose_shard_size", lambda _: SHARD_ROWS)
        out = tile_slides([manifest], tmp_path_factory.mktemp("ref") / "tiles.zarr",
                          TileConfig(**GRID), quiet=True)  # fmt: skip
    store = TileStore(out)
    assert store.attrs["shard_size"] == SHARD_ROWS
    assert len(store) > 3 * SHARD_ROWS  # several shards, some shared between slides
    return out


@pytest.fixture
def work(reference, tmp_path):
    copy = tmp_path / "tiles.zarr"
    shutil.copytree(reference, copy)
    return copy


def _arrays(path):
    store = TileStore(path)
    out = {name: np.asarray(store._column(name)) for name in TILE_COLUMNS}
    out["patches"] = store.read_patches(np.arange(len(store)))
    return out


def _assert_same_arrays(path, reference):
    got, expected = _arrays(path), _arrays(reference)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def _slides_in_rows(store_path, first, last):
    slides = TileStore(store_path, check=False).slides
    return [s.path for s in slides if s.tile_start <= last and s.tile_start + s.n_tiles > first]


def _files(path):
    files = (path / "patches" / "c").glob("*/0/0/0")
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def _rerun_tile(manifest, out, *extra):
    with pytest.raises(SystemExit) as info:
        main(["tile", str(manifest), "--out", str(out), *CLI_GRID, *extra])
    return info.value.code


def test_deleted_shard_names_the_slide_and_rerun_rebuilds_only_it(
    work, reference, manifest, capsys
):
    shard = 3
    damaged = _slides_in_rows(work, shard * SHARD_ROWS, (shard + 1) * SHARD_ROWS - 1)
    assert len(damaged) >= 1
    before = _files(work)
    shard_path(work / "patches", shard).unlink()
    with pytest.raises(StoreDamageError) as info:
        TileStore(work)
    message = str(info.value)
    assert "\n" not in message
    assert f"slide {damaged[0]} is damaged" in message
    assert "rerun the same `pathda tile` command" in message

    assert _rerun_tile(manifest, work) == 0
    err = capsys.readouterr().err
    for slide in damaged:
        assert f"{slide}: damaged in {work}" in err
    _assert_same_arrays(work, reference)
    after = _files(work)
    store = TileStore(work)
    rebuilt = [s for s in store.slides if s.path in damaged]
    touched = {
        shard_path(work / "patches", k)
        for s in rebuilt
        for k in range(s.tile_start // SHARD_ROWS, (s.tile_start + s.n_tiles - 1) // SHARD_ROWS + 1)
    }
    untouched = [path for path in before if path not in touched]
    assert untouched
    for path in untouched:  # intact slides' files are not even rewritten
        assert after[path] == before[path], path
    ref = TileStore(reference)
    assert [s.patches_sha256 for s in store.slides] == [s.patches_sha256 for s in ref.slides]


def test_deleted_labels_chunk_is_an_error_and_rerun_repairs_it(work, reference, manifest):
    (work / "labels" / "c" / "0").unlink()
    with pytest.raises(StoreDamageError, match=r"labels chunk file .* is missing"):
        TileStore(work)
    assert _rerun_tile(manifest, work) == 0
    _assert_same_arrays(work, reference)


def test_truncated_shard_is_a_one_line_error_not_a_memory_error(work):
    path = shard_path(work / "patches", 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StoreDamageError, match=r"has 100 bytes") as info:
        TileStore(work)
    assert "\n" not in str(info.value)
    # A reader that skipped the check still fails cleanly on the cut file.
    reader = ShardedPatchReader.open(work / "patches")
    with pytest.raises(StoreDamageError, match=r"truncated"):
        reader.read(np.arange(SHARD_ROWS, 2 * SHARD_ROWS))


def test_missing_array_is_a_one_line_error_also_for_tile(work, manifest, capsys):
    shutil.rmtree(work / "x")
    with pytest.raises(StoreDamageError, match=r"array 'x' is missing") as info:
        TileStore(work)
    assert "\n" not in str(info.value)
    assert _rerun_tile(manifest, work) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error:")
    assert "array 'x' is missing" in err
    assert "delete it and rerun `pathda tile`" in err
    assert "\n" not in err


def test_altered_bytes_are_found_by_the_deep_check_and_rebuilt_with_verify(
    work, reference, manifest, capsys
):
    path = shard_path(work / "patches", 2)
    data = bytearray(path.read_bytes())
    data[40:60] = b"\xff" * 20  # inside the patch data: same size, same index
    path.write_bytes(bytes(data))
    TileStore(work)  # the cheap check only sees files and sizes
    damaged = _slides_in_rows(work, 2 * SHARD_ROWS, 2 * SHARD_ROWS)[0]
    with pytest.raises(SystemExit) as info:
        main(["verify", str(work)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"slide {damaged} is damaged: patch bytes do not match their checksum" in err
    assert "\n" not in err
    assert _rerun_tile(manifest, work) == 0  # without --verify: nothing seen, nothing done
    assert TileStore(work).verify(deep=True)
    assert _rerun_tile(manifest, work, "--verify") == 0
    _assert_same_arrays(work, reference)
    with pytest.raises(SystemExit) as info:
        main(["verify", str(work)])
    assert info.value.code == 0
    assert "intact" in capsys.readouterr().err


def test_intact_store_verifies(reference, capsys):
    assert TileStore(reference).verify(deep=True) == []
    with pytest.raises(SystemExit) as info:
        main(["verify", str(reference)])
    assert info.value.code == 0
    assert "checksums verified" in capsys.readouterr().err
