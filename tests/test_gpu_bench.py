"""bench/gpu.sh: the one-command GPU benchmark runs end to end (tiny, on the CPU) and reports."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_usage_error_without_output_folder():
    usage = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh")], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2
    assert "usage" in usage.stderr


def test_markdown_renders_a_full_gpu_report():
    """The CUDA-only rows (tests passed, GPU rates) render, though the CPU run never has them."""
    bench = _gpu_bench()
    report = {
        "tiny": False,
        "seconds": 420.0,
        "machine": {
            "device": "cuda",
            "gpu": "NVIDIA H200",
            "git_commit": "abc",
            "torch": "2.x",
            "cpus": 16,
            "load_avg": [0.1, 0.1, 0.1],
        },
        "parts": {
            "tests": {"status": "ok", "passed": 7, "failures": 0, "errors": 0, "skipped": 1},
            "stain": {
                "status": "ok",
                "results": [
                    {
                        "method": "macenko",
                        "device": "cuda",
                        "batch": 4096,
                        "pathda_tiles_per_s": 25000.0,
                        "ratio": 600.0,
                        "agreement": {"median": 0.0, "p99": 0.0, "max": 1},
                    }
                ],
            },
            "train": {
                "status": "ok",
                "runs": {
                    "ldann": {"img_per_s": 1500.0, "ratio_to_timm": 0.9},
                    "timm@2B": {"img_per_s": 1666.0, "ratio_to_timm": 1.0},
                },
            },
            "segment": {"status": "timeout"},
        },
    }
    text = bench.markdown(report)
    assert "NVIDIA H200" in text
    assert "| tests | pytest -m gpu | 7 passed, 0 failed, 1 skipped | all pass |" in text
    assert "25,000 (600x staintools" in text
    assert "| train | ldann img/s | 1,500 = 0.90x timm | >= 0.8x timm |" in text
    assert "| segment | throughput | timeout |  |" in text


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "bench"
    result = _run(out, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "gpu_bench.json").read_text())
    parts = report["parts"]
    assert parts["tests"]["status"] == "skipped"  # GPU-only
    assert {p["status"] for name, p in parts.items() if name != "tests"} == {"ok"}
    rates = {r["method"]: r for r in parts["stain"]["results"]}
    assert rates["macenko"]["pathda_tiles_per_s"] > 0
    assert rates["macenko"]["agreement"]["max"] <= 2
    assert set(parts["train"]["runs"]) == {"none", "none@2B", "ldann", "lwass", "timm@2B"}
    assert parts["train"]["runs"]["timm@2B"]["ratio_to_timm"] == pytest.approx(1.0)
    for mode in ("patch", "dense"):
        assert parts["segment"]["modes"][mode]["patches"] > 0
    table = (out / "gpu_bench.md").read_text()
    assert table.count("\n| ") >= 8
    assert "| segment | dense mode |" in table
