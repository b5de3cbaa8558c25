"""`pathda report` reads both result layouts of pathda.layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathda import layout
from pathda.cli import main
from pathda.errors import PathdaError
from pathda.report import build_report, collect_results, find_seed_folders


def _train_folder(path: Path, method: str, seed: int, val_acc: float) -> None:
    path.mkdir(parents=True)
    (path / layout.CONFIG_FILE).write_text(json.dumps({"config": {"method": method, "seed": seed}}))
    record = {"epoch": 0, "val_acc": val_acc, "target_acc": val_acc - 0.1}
    (path / layout.METRICS_FILE).write_text(json.dumps(record) + "\n")
    (path / layout.SELECTED_FILE).write_text(json.dumps(record))


def test_train_runs_output_is_reported(tmp_path, capsys):
    # What `pathda train OUT --runs 2` writes: OUT/run_00, OUT/run_01 and a summary.
    for i, acc in enumerate((0.8, 0.6)):
        _train_folder(layout.run_dir(tmp_path, i, runs=2), "ldann", seed=3 + i, val_acc=acc)
    (tmp_path / layout.SUMMARY_FILE).write_text("{}")
    (result,) = collect_results(tmp_path)
    assert result.method == "ldann"
    assert result.seeds == ["seed3", "seed4"]
    assert result.val_tile_acc == [0.8, 0.6]
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 0
    assert "| L-DANN | n/a | n/a | 0.600 ± 0.141 (n=2) | 0.700 ± 0.141 (n=2) |" in (
        (tmp_path / "report.md").read_text()
    )
    assert "L-DANN" in capsys.readouterr().out


def test_workflow_layout_and_separate_train_outputs(tmp_path):
    results = tmp_path / "results"
    for seed, bach in ((0, 0.5), (1, 0.7)):
        seed_dir = layout.seed_dir(results, "none", seed)
        _train_folder(seed_dir / layout.TRAIN_DIR, "none", seed, 0.9)
        (seed_dir / layout.SCORE_DIR).mkdir()
        scores = {"mean": {"bach": bach, "accuracy": 0.8}}
        (seed_dir / layout.SCORE_DIR / layout.SCORES_FILE).write_text(json.dumps(scores))
    # A single-run `pathda train --out results/lwass` beside the workflow's folders.
    _train_folder(results / "lwass", "lwass", 0, 0.7)
    rows = {r.method: r for r in collect_results(results)}
    assert list(rows) == ["none", "lwass"]  # registry order
    assert rows["none"].bach == [0.5, 0.7]
    assert rows["none"].seeds == ["seed0", "seed1"]
    assert rows["lwass"].val_tile_acc == [0.7]
    assert len(find_seed_folders(results)) == 3
    out = build_report(results, tmp_path / "r.md")
    assert "No adaptation" in out.read_text()
    assert "L-WASS" in out.read_text()


def test_nothing_to_report_names_both_layouts(tmp_path):
    with pytest.raises(PathdaError, match=r"run_NN"):
        collect_results(tmp_path)
