"""Atomic writes: temporaries of dead writers are cleaned by the next write of that output."""

from __future__ import annotations

import os
import subprocess
import sys

from pathda.atomic import atomic_path


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_next_write_removes_partials_of_dead_writers(tmp_path):
    final = tmp_path / "A01"
    dead = tmp_path / f".A01.{_dead_pid()}.partial"
    (dead / "A01.probs.zarr").mkdir(parents=True)  # a folder left by kill -9
    live = tmp_path / f".A01.{os.getppid()}.partial"  # a running process: maybe a live writer
    live.write_text("")
    other = tmp_path / f".A02.{_dead_pid()}.partial"  # another output: not ours to clean
    other.write_text("")
    with atomic_path(final) as tmp:
        tmp.mkdir()
    assert final.is_dir()
    assert not dead.exists()
    assert live.exists()
    assert other.exists()
