"""What every peer benchmark records beside its numbers: command, machine, load, versions."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def version(dist: str) -> str:
    """The installed version of ``dist`` ("not installed" when absent)."""
    if dist == "pathda":  # run from the source tree, maybe not the installed one
        import pathda

        return pathda.__version__
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_line() -> str:
    """This process's command line as a reader re-runs it from the repository root."""
    argv = shlex.join([Path(sys.executable).as_posix(), *sys.argv])
    return "PYTHONPATH=$PWD " + argv.replace(str(REPO) + "/", "")


def lscpu() -> str:
    """Architecture, CPU count and model name, from ``lscpu``."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = ("Architecture", "CPU(s)", "Model name")
    return "; ".join(
        line.split(":", 1)[1].strip() for line in out.splitlines() if line.split(":")[0] in fields
    )


def load_note(load_before: list[float], load_after: list[float]) -> str:
    """The load averages, and whether the machine was quiet enough for absolute rates to count."""
    busy = max(load_before[0], load_after[0]) > 0.75 * (os.cpu_count() or 1) + 1
    verdict = (
        "the machine was busy: compare the ratios, measured interleaved, rather than the "
        "absolute rates"
        if busy
        else "a quiet machine; ratios are measured interleaved all the same"
    )
    return f"load average before {load_before}, after {load_after} ({verdict})"
