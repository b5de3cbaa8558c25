"""`pathda tile` command line: a real H&E fixture, one-line user errors, the lock."""

from __future__ import annotations

import json
import os
import platform

import numpy as np
import pytest

from pathda.cli import main
from pathda.tiling import TileStore
from pathda.tiling.lock import lock_path


def _run(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.mark.slow
def test_tile_real_he_fixture_unlabelled(fixtures_dir, tmp_path, capsys):
    slide = fixtures_dir / "he" / "OS-1-detail.ome.tif"
    out = tmp_path / "os1.zarr"
    argv = ["tile", str(slide), "--out", str(out), "--mpp", "0.908", "--patch-size", "32"]
    assert _run([*argv, "--domain", "hospital-2", "--split", "test", "--quiet"]) == 0
    store = TileStore(out)
    # 1101 px at 0.2271 µm/px = 250 µm = 275 px at 0.908 µm/px: an 8 x 8 grid, all tissue.
    assert len(store) == 64
    assert set(store.labels) == {-1}
    assert store.slides[0].mpp == pytest.approx(0.2271, rel=1e-3)
    assert store.domains == ("hospital-2",)
    np.testing.assert_array_equal(store.indices(split="test", labelled=False), np.arange(64))
    patches = store.read_patches(np.arange(64))
    assert patches.shape == (64, 32, 32, 3)
    assert patches.std() > 10  # real tissue, not blank
    assert store.attrs["config"]["patch_size"] == 32
    assert store.attrs["provenance"]["pathda_version"]


def test_user_errors_are_one_line_exit_2(fixtures_dir, tmp_path, capsys):
    assert _run(["tile", str(tmp_path / "missing.svs"), "--out", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error:")
    assert "missing.svs" in err
    assert len(err.splitlines()) == 1
    slide = fixtures_dir / "openslide" / "boxes.tiff"  # file says 352.78 µm/px
    assert _run(["tile", str(slide), "--out", str(tmp_path / "b.zarr")]) == 2
    assert "--slide-mpp" in capsys.readouterr().err
    assert not (tmp_path / "b.zarr").exists()


def test_second_writer_refused(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "t.zarr"
    lock_path(out).write_text(json.dumps({"pid": os.getpid(), "host": platform.node()}))
    slide = fixtures_dir / "he" / "OS-1-detail.ome.tif"
    assert _run(["tile", str(slide), "--out", str(out), "--mpp", "0.908", "-q"]) == 2
    assert "being written by pid" in capsys.readouterr().err
    assert not out.exists()
