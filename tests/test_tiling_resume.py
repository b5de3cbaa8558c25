"""kill -9 at random moments, rerun: the store ends identical to an uninterrupted run."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from pathda.synth import synthesise_slides
from pathda.tiling import TileStore
from pathda.tiling.store import TILE_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slide_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    slides = synthesise_slides(root, n=3, size=(1536, 1536), quiet=True)
    return [str(s.image) for s in slides]


def _command(slides, out):
    # Small patches and read blocks: many shard writes, so kills land mid-write.
    return [
        sys.executable, "-m", "pathda", "tile", *slides, "--out", str(out),
        "--mpp", "0.467", "--patch-size", "16", "--min-tissue", "0.3",
        "--workers", "2", "--quiet",
    ]  # fmt: skip


def _state(out):
    group_json = out / "zarr.json"
    if not group_json.exists():
        return "absent"
    attrs = dict(zarr.open_group(out, mode="r").attrs)
    return "complete" if attrs["complete"] else f"unfinished@{attrs['n_committed']}"


def _run_timed(command, out):
    """Run to completion; return seconds until the store appeared and until it finished."""
    started = time.monotonic()
    proc = subprocess.Popen(command)
    created = None
    while proc.poll() is None:
        if created is None and (out / "zarr.json").exists():
            created = time.monotonic() - started
        time.sleep(0.02)
    assert proc.returncode == 0
    return created, time.monotonic() - started


def _mtime(out):
    try:
        return (out / "zarr.json").stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _kill_during_run(command, out, max_delay):
    """Start ``command``, wait until it touches the store, SIGKILL it within ``max_delay`` s."""
    before = _mtime(out)
    proc = subprocess.Popen(command)
    # Startup time varies a lot on a busy machine, so the clock starts at the first write.
    while _mtime(out) == before and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(max_delay)
    proc.send_signal(signal.SIGKILL)  # no-op if the run already finished
    proc.wait()
    return _state(out)


def test_kill_and_resume_gives_identical_arrays(slide_paths, tmp_path):
    reference = tmp_path / "ref.zarr"
    created, finished = _run_timed(_command(slide_paths, reference), reference)
    assert created is not None
    writing = finished - created
    rng = random.Random(1234)
    states = []
    for trial in range(4):
        out = tmp_path / f"killed{trial}.zarr"
        command = _command(slide_paths, out)
        states.append(_kill_during_run(command, out, rng.uniform(0, 0.8 * writing)))
        if states[-1] != "complete":  # kill the resume too, early (less is left to do)
            states.append(_kill_during_run(command, out, rng.uniform(0, 0.3 * writing)))
        subprocess.run(command, check=True)
        a, b = zarr.open_group(reference, mode="r"), zarr.open_group(out, mode="r")
        for name in ["patches", *TILE_COLUMNS]:
            assert np.array_equal(a[name][:], b[name][:]), name
        assert a.attrs["slides"] == [
            {**row, "tissue_mask": row["tissue_mask"].replace(out.name, reference.name)}
            for row in b.attrs["slides"]
        ]
        assert len(TileStore(out)) == len(TileStore(reference)) > 1000
        if trial >= 1 and sum(s.startswith("unfinished") for s in states) >= 2:
            break
    print("kill states:", states)
    assert sum(s.startswith("unfinished") for s in states) >= 2, states
