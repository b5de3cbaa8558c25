"""The synthetic workflow at a tiny size through Snakemake: outputs exist, a rerun does nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "data": "synthetic",
    "methods": ["none"],
    "seeds": [0],
    "synthetic": {
        "size": 1024,
        "mpp": 0.467,
        "source_domain": "lab-a",
        "target_domain": "lab-b",
        "n_train": 1,
        "n_val": 1,
        "n_target": 1,
        "n_test": 1,
    },
    "tile": {"mpp": 1.868, "patch_size": 32, "stride": 32, "min_tissue": 0.5},
    "train": {
        "arch": "resnet10t",
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch_size": 8,
        "num_workers": 0,
        "source_domains": ["lab-a"],
        "target_domains": ["lab-b"],
    },
    "segment": {"stride": 32, "batch_size": 64, "num_workers": 0},
    "score": {"downsample": 16},
}


def _snakemake(config: Path, *extra: str) -> subprocess.CompletedProcess:
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        pytest.skip("snakemake is not installed (pip install 'pathda[pipelines]')")
    return subprocess.run(
        [
            snakemake,
            "-s",
            str(REPO / "pipelines" / "Snakefile"),
            "--configfile",
            str(config),
            "--cores",
            "2",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_tiny_synthetic_workflow_runs_and_a_rerun_does_nothing(tmp_path):
    out = tmp_path / "results"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out": str(out)}))
    first = _snakemake(config)
    assert first.returncode == 0, first.stderr[-3000:]
    for path in (
        "slides/test/test_00.tiff",
        "tiles.zarr/zarr.json",
        "none/seed0/train/model.pt",
        "none/seed0/segment/test_00/test_00.geojson",
        "none/seed0/segment/test_00/test_00.mask.ome.tif",
        "none/seed0/score/scores.json",
        "report.md",
        "report.html",
    ):
        assert (out / path).exists(), path
    assert "| No adaptation |" in (out / "report.md").read_text()
    second = _snakemake(config, "--dry-run")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to be done" in second.stdout + second.stderr
