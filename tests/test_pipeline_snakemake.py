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


def _snakemake(config: Path, *extra: str, cores: bool = True) -> subprocess.CompletedProcess:
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
            *(["--cores", "2"] if cores else []),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


# A stand-in for sbatch/qsub: start the job script detached and print a job id.
SUBMIT = """#!/bin/sh
setsid sh "$1" > "$1.log" 2>&1 < /dev/null &
echo $!
"""


def _cluster_generic(config: Path, submit: Path, *extra: str) -> subprocess.CompletedProcess:
    pytest.importorskip("snakemake_executor_plugin_cluster_generic")
    submit.write_text(SUBMIT)
    executor = ["--executor", "cluster-generic", "--jobs", "4"]
    submit_cmd = ["--cluster-generic-submit-cmd", f"sh {submit}"]
    return _snakemake(config, *executor, *submit_cmd, *extra, cores=False)


def test_rule_resources_are_explicit_and_configurable(tmp_path):
    """Resources come from the config, not from --cores (dry run, no jobs; a dry run
    caps threads at 1, so the cluster run below checks them)."""
    config = tmp_path / "tiny.yaml"
    resources = {"tile": {"threads": 3, "mem_mb": 1234}, "train": {"gpu": 1, "runtime": 77}}
    config.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "r"), "resources": resources}))
    # through the documented SLURM profile, its executor swapped for the stand-in's
    profile = ("--profile", str(REPO / "profiles" / "slurm"))
    result = _cluster_generic(config, tmp_path / "submit.sh", *profile, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    # each job of the dry run is printed as "rule NAME:" then its indented details
    jobs = {j.split(":", 1)[0]: j for j in result.stdout.split("\nrule ")[1:]}
    tile, train = jobs["tile"], jobs["train"]
    assert "mem_mb=1234" in tile
    assert "gpu=1" in train
    assert "slurm_partition=gpu" in train  # the profile's per-rule settings apply
    assert "slurm_partition=cpu" in tile
    assert "runtime=77" in train
    config.write_text(yaml.safe_dump({**TINY, "out": "r", "resources": {"tiles": {}}}))
    result = _snakemake(config, "--dry-run")
    assert result.returncode != 0
    assert "unknown rule 'tiles'" in result.stdout + result.stderr


@pytest.mark.slow
def test_cluster_generic_executor_runs_without_cores(tmp_path):
    """Jobs submitted through a stand-in scheduler, no --cores: slides -> tile store."""
    out = tmp_path / "results"
    config = tmp_path / "tiny.yaml"
    resources = {"tile": {"threads": 3}}
    config.write_text(yaml.safe_dump({**TINY, "out": str(out), "resources": resources}))
    result = _cluster_generic(config, tmp_path / "submit.sh", str(out / "tiles.done"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "with external jobid" in log  # ran through the submit script
    [tile] = [j for j in log.split("\nrule ")[1:] if j.startswith("tile:")]
    assert "threads: 3" in tile
    assert (out / "tiles.zarr" / "zarr.json").is_file()
    assert "6 of 6 steps (100%) done" in log


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
