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
    cfg = yaml.safe_load((REPO / "configs" / "shift.yaml").read_text())
    cfg.update(
        out=str(tmp_path / "out"),
        seeds=[0],
        target_domains=["centre-d"],
        # ldann with a `train:` override: the arm's own config reaches the training run
        arms={
            **{k: cfg["arms"][k] for k in ("none", "stain-norm")},
            "ldann": {"method": "ldann", "train": {"taps": ["layer4.0"]}},
        },
        bounds=["in-domain", "all-normal", "all-in-situ"],
        in_domain_arms=["none", "ldann"],  # the ldann model on source test slides too
    )
    cfg["synthetic"].update(size=768, n_train=1, n_val=1, n_source_test=2, n_target=1, n_test=2)
    cfg["tile"].update(patch_size=32, stride=32)
    cfg["train"].update(epochs=1, steps_per_epoch=2, batch_size=8, label_free_tiles=32)
    cfg["segment"].update(stride=32, batch_size=64)
    config = tmp_path / "shift.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = _run_workflow(config, cores=2)
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
    assert set(bounds) == {"in-domain", "in-domain (ldann)", "all-normal", "all-in-situ"}
    assert bounds["in-domain (ldann)"]["n"] == 1
    assert bounds["all-normal"]["dice"]["in situ"] == 0.0  # the rule never says in situ
    md = (tmp_path / "out" / "shift.md").read_text()
    assert "Δ vs none" in md
    assert "proxy A-distance" in md
    assert (tmp_path / "out" / "shift.png").stat().st_size > 0
    # the label-free selection was scored too, from its own checkpoint
    dev = tmp_path / "out" / "runs" / "centre-d" / "ldann" / "seed0" / "score_dev" / "scores.json"
    assert dev.is_file()
    record = json.loads((dev.parents[1] / "train" / "config.json").read_text())
    assert record["config"]["taps"] == ["layer4.0"]


def _snakemake() -> str:
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    assert snakemake is not None, "snakemake is not installed (pip install 'pathda[pipelines]')"
    return snakemake


def _run_workflow(config: Path, *targets: str, cores: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            _snakemake(),
            "-s",
            str(REPO / "pipelines" / "shift.smk"),
            "--configfile",
            str(config),
            "--cores",
            str(cores),
            "--quiet",
            "rules",
            "--",
            *targets,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def _effective_arm(cfg: dict, arm: str) -> tuple[dict, dict]:
    """An arm's own keys and the train section it runs with (the arm's train overrides applied)."""
    spec = dict(cfg["arms"][arm])
    return spec, {**cfg["train"], **spec.pop("train", {})}


@pytest.mark.parametrize("name", ["shift-ablation.yaml", "shift-balance.yaml"])
def test_side_configs_share_the_benchmark_sections(name):
    # So that their balanced `none-bal` and `ldann-bal` arms train what shift.yaml's `none` and
    # `ldann` train (shift.yaml balances every arm in its train section).
    main = yaml.safe_load((REPO / "configs" / "shift.yaml").read_text())
    side = yaml.safe_load((REPO / "configs" / name).read_text())
    for key in ("synthetic", "tile", "segment", "score", "source_domain", "resources"):
        assert side[key] == main[key], key
    assert set(side["seeds"]) == set(main["seeds"])
    assert set(side["target_domains"]) <= set(main["target_domains"])
    assert _effective_arm(side, "none-bal") == _effective_arm(main, "none")
    assert _effective_arm(side, "ldann-bal") == _effective_arm(main, "ldann")
    # ... and their unbalanced `none` / `ldann` differ from it in the balance alone.
    spec, train = _effective_arm(side, "none")
    assert spec == main["arms"]["none"]
    assert {**train, "class_balance": True, "select_metric": "val_bacc"} == main["train"]


def _ablation_config(tmp_path: Path, **changes) -> Path:
    """configs/shift-ablation.yaml with its output under tmp_path and ``changes`` applied."""
    cfg = yaml.safe_load((REPO / "configs" / "shift-ablation.yaml").read_text())
    cfg.update(out=str(tmp_path / "out"), **changes)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config


def test_arm_train_overrides_become_the_arms_config(tmp_path):
    config = _ablation_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    run = _run_workflow(config, str(tmp_path / "out" / "arms" / "ldann-late.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    merged = yaml.safe_load((tmp_path / "out" / "arms" / "ldann-late.yaml").read_text())
    assert merged["train"] == {**cfg["train"], "taps": ["layer3.0", "layer4.0"]}
    assert merged["tile"] == cfg["tile"]


def test_an_arm_with_an_unknown_key_is_refused(tmp_path):
    arms = yaml.safe_load((REPO / "configs" / "shift-ablation.yaml").read_text())["arms"]
    arms["ldann-w1"] = {"method": "ldann", "layer_weight": 1.0}  # belongs under train:
    run = _run_workflow(_ablation_config(tmp_path, arms=arms))
    assert run.returncode != 0
    assert "arm 'ldann-w1'" in run.stderr
    assert "layer_weight" in run.stderr


def test_in_domain_arms_names_only_known_arms(tmp_path):
    config = _ablation_config(tmp_path, bounds=["in-domain"], in_domain_arms=["none", "nonee"])
    run = _run_workflow(config)
    assert run.returncode != 0
    assert "in_domain_arms" in run.stderr
    assert "nonee" in run.stderr


def test_label_free_scoring_names_only_known_arms(tmp_path):
    config = _ablation_config(tmp_path, score_label_free_selection=["ldann", "l-dann"])
    run = _run_workflow(config)
    assert run.returncode != 0
    assert "score_label_free_selection" in run.stderr
    assert "l-dann" in run.stderr
