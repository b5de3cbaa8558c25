"""The domain-shift benchmark's workflow at a tiny size: every arm and bound, then the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shift_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path):
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        pytest.skip("snakemake is not installed (pip install 'pathda[pipelines]')")
    cfg = yaml.safe_load((REPO / "configs" / "shift.yaml").read_text())
    cfg.update(
        out=str(tmp_path / "out"),
        seeds=[0],
        target_domains=["centre-d"],
        arms={k: cfg["arms"][k] for k in ("none", "stain-norm", "ldann")},
        bounds=["in-domain", "all-normal", "all-in-situ"],
    )
    cfg["synthetic"].update(size=768, n_train=1, n_val=1, n_source_test=2, n_target=1, n_test=2)
    cfg["tile"].update(patch_size=32, stride=32)
    cfg["train"].update(epochs=1, steps_per_epoch=2, batch_size=8, label_free_tiles=32)
    cfg["segment"].update(stride=32, batch_size=64)
    config = tmp_path / "shift.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = subprocess.run(
        [
            snakemake,
            "-s",
            str(REPO / "pipelines" / "shift.smk"),
            "--configfile",
            str(config),
            "--cores",
            "2",
            "--quiet",
            "rules",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "shift.json").read_text())
    arms = result["domains"]["centre-d"]
    assert set(arms) == {"none", "stain-norm", "ldann"}
    for row in arms.values():
        assert set(row) == {"bach_mean", "bach_std", "n", "diff_vs_none"}
        assert set(row["diff_vs_none"]) == {"mean", "ci_low", "ci_high"}
        assert row["n"] == 1
        assert 0.0 <= row["bach_mean"] <= 1.0
    assert arms["none"]["diff_vs_none"]["mean"] == 0.0
    bounds = result["details"]["centre-d"]["bounds"]
    assert set(bounds) == {"in-domain", "all-normal", "all-in-situ"}
    assert bounds["all-normal"]["dice"]["in situ"] == 0.0  # the rule never says in situ
    md = (tmp_path / "out" / "shift.md").read_text()
    assert "Δ vs none" in md
    assert "proxy A-distance" in md
    assert (tmp_path / "out" / "shift.png").stat().st_size > 0
    # the label-free selection was scored too, from its own checkpoint
    dev = tmp_path / "out" / "runs" / "centre-d" / "ldann" / "seed0" / "score_dev" / "scores.json"
    assert dev.is_file()
