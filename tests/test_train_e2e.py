"""End to end: every adaptation method trains on a tile store and exports a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pathda.adapt import METHODS
from pathda.checkpoint import load_inference_checkpoint
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.report import collect_results
from pathda.train import TrainConfig, train

TINY = {"arch": "resnet10t", "batch_size": 8, "num_workers": 0, "lr": 0.01, "augment": True}


def _cfg(store: Path, **overrides) -> TrainConfig:
    return TrainConfig(store=store, **{**TINY, **overrides})


@pytest.mark.slow
def test_all_methods_train_and_export(synthetic_store, tmp_path, capsys):
    rows = {}
    for method in METHODS.names():
        out = tmp_path / method
        argv = [
            "train",
            str(synthetic_store),
            "--out",
            str(out),
            "--method",
            method,
            "--arch",
            "resnet10t",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "3",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--n-critic",
            "2",
        ]
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        printed = capsys.readouterr().out
        assert f"pathda train: {method}" in printed  # the result table
        model, meta = load_inference_checkpoint(out / "model.pt")
        assert meta.patch_size == 32
        assert meta.mpp == pytest.approx(1.868)
        assert meta.class_names == ("normal", "benign", "in situ", "invasive")
        assert not any(k.startswith("heads") for k in model.state_dict())  # heads dropped
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
        records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [0, 1]
        rows[method] = records[-1]
        assert (out / "curves.png").stat().st_size > 0
    # Each method logs its own loss terms per layer.
    assert "domain_acc/global_pool" in rows["dann"]
    assert sum(k.startswith("domain_loss/layer") for k in rows["ldann"]) == 4  # resnet10t blocks
    assert sum(k.startswith("wasserstein/layer") for k in rows["lwass"]) == 4
    assert "domain_acc_mean" not in rows["none"]


@pytest.mark.slow
def test_runs_write_a_summary(synthetic_store, tmp_path):
    results = train(
        _cfg(synthetic_store, epochs=1, steps_per_epoch=2), tmp_path, runs=2, quiet=True
    )
    assert [r.out_dir.name for r in results] == ["run_00", "run_01"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["val_acc"]["n"] == 2
    (row,) = collect_results(tmp_path)  # `pathda report` reads what `train --runs` wrote
    assert row.method == "none"
    assert row.seeds == ["seed0", "seed1"]
    assert json.loads((tmp_path / "run_01" / "config.json").read_text())["config"]["seed"] == 1


def test_model_selection_uses_the_last_fraction_of_epochs(synthetic_store, tmp_path):
    (result,) = train(
        _cfg(synthetic_store, epochs=3, steps_per_epoch=1, select_last_fraction=0.34),
        tmp_path,
        quiet=True,
    )
    assert result.selected_epoch == 2  # only the last epoch is eligible
    selected = json.loads((tmp_path / "selected.json").read_text())
    assert selected["epoch"] == 2


def test_resume_refuses_another_config(synthetic_store, tmp_path):
    train(_cfg(synthetic_store, epochs=1, steps_per_epoch=1), tmp_path, quiet=True)
    from pathda.errors import PathdaError

    with pytest.raises(PathdaError, match="changed: lr"):
        train(
            _cfg(synthetic_store, epochs=2, steps_per_epoch=1, lr=0.5),
            tmp_path,
            resume=True,
            quiet=True,
        )


@pytest.mark.slow
def test_resume_after_kill_9(synthetic_store, tmp_path):
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "pathda",
        "train",
        str(synthetic_store),
        "--out",
        str(out),
        "--method",
        "ldann",
        "--arch",
        "resnet10t",
        "--epochs",
        "3",
        "--steps-per-epoch",
        "30",  # long enough that epoch 2 cannot finish between the poll and the kill
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--quiet",
    ]
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 300
    while not (out / "last.pt").exists():  # the end of epoch 1 is checkpointed
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # now early in epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert done
    assert done[-1] < 2
    subprocess.run([*argv, "--resume"], check=True)
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # every epoch exactly once
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 2
    load_inference_checkpoint(out / "model.pt")


def test_stain_params_on_the_fly_reach_the_checkpoint(synthetic_store, tmp_path):
    from pathda.stain import fit_normaliser, save_params
    from pathda.tiling import TileStore

    reference = TileStore(synthetic_store).read_patches(range(16)).reshape(-1, 32, 3)
    params = tmp_path / "stain.json"
    save_params(fit_normaliser("reinhard", reference[None]), params)
    train(
        _cfg(synthetic_store, epochs=1, steps_per_epoch=1, stain_params=params),
        tmp_path / "run",
        quiet=True,
    )
    _, meta = load_inference_checkpoint(tmp_path / "run" / "model.pt")
    assert meta.stain_method == "reinhard"  # inference normalises as training did


def test_class_map_is_checked_before_training_starts(synthetic_store, tmp_path, monkeypatch):
    from pathda.tiling import TileStore
    from pathda.train import loop

    def no_training(*args, **kwargs):
        raise AssertionError("an epoch ran before the class map was checked")

    three = ("normal", "benign", "invasive")
    monkeypatch.setattr(TileStore, "class_names", property(lambda self: three))
    monkeypatch.setattr(loop._Run, "_train_epoch", no_training)
    with pytest.raises(ConfigError, match=r"classes \['normal', 'benign', 'invasive'\]"):
        train(_cfg(synthetic_store, epochs=1, steps_per_epoch=1), tmp_path / "run", quiet=True)
