"""The benchmark report from hand-made score files: JSON form, paired differences, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathda.benchmark.report import build, selection_note

CFG = {"target_domains": ["lab-b", "centre-d"], "arms": {"none": {}, "ldann": {}, "stain-aug": {}}}


def _scores(path: Path, bach_by_slide: dict[str, float]) -> None:
    slides = []
    for stem, bach in bach_by_slide.items():
        # truth rows: 10 normal, 10 in situ pixels; prediction puts the lesion pixels in situ
        confusion = [[10, 0, 0, 0], [0, 0, 0, 0], [0, 0, 10, 0], [0, 0, 0, 0]]
        slides.append(
            {
                "slide": stem,
                "bach": bach,
                "accuracy": 1.0,
                "dice": {"normal": 1.0, "benign": None, "in situ": 1.0, "invasive": None},
                "confusion": confusion,
            }
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / "scores.json").write_text(json.dumps({"slides": slides}))


def test_report_json_has_the_promised_form_and_hand_checked_differences(tmp_path):
    runs = tmp_path / "res" / "runs" / "lab-b"
    for seed, (none, ldann) in enumerate([((0.5, 0.6), (0.6, 0.8)), ((0.4, 0.5), (0.5, 0.5))]):
        _scores(runs / "none" / f"seed{seed}" / "score", {"t0": none[0], "t1": none[1]})
        _scores(runs / "ldann" / f"seed{seed}" / "score", {"t0": ldann[0], "t1": ldann[1]})
    _scores(runs / "all-in-situ" / "score", {"t0": 0.45, "t1": 0.45})
    out_md = tmp_path / "docs" / "shift.md"
    payload = build(tmp_path / "res", CFG, out_md, {"command": "x"}, n_boot=2000)

    assert list(payload["domains"]) == ["lab-b"]  # centre-d has no results: left out
    arms = payload["domains"]["lab-b"]
    assert list(arms) == ["none", "ldann"]  # stain-aug has no runs
    for row in arms.values():
        assert set(row) == {"bach_mean", "bach_std", "n", "diff_vs_none"}
    ldann = arms["ldann"]
    # per-seed means: none 0.55, 0.45; ldann 0.70, 0.50 -> mean 0.60, std 0.1414
    assert ldann["bach_mean"] == pytest.approx(0.60)
    assert ldann["bach_std"] == pytest.approx(0.1414, abs=1e-4)
    assert ldann["n"] == 2
    # paired diffs 0.1, 0.2, 0.1, 0.0 -> mean 0.1; CI within [0, 0.2]
    diff = ldann["diff_vs_none"]
    assert set(diff) == {"mean", "ci_low", "ci_high"}
    assert diff["mean"] == pytest.approx(0.1)
    assert 0.0 <= diff["ci_low"] <= diff["mean"] <= diff["ci_high"] <= 0.2 + 1e-9
    assert arms["none"]["diff_vs_none"]["mean"] == 0.0
    details = payload["details"]["lab-b"]
    assert details["bounds"]["all-in-situ"]["bach_mean"] == pytest.approx(0.45)
    assert details["arms"]["ldann"]["lesion_prediction_mix"]["in situ"] == pytest.approx(1.0)
    md = out_md.read_text()
    assert "Selection: best source-validation accuracy in the last 30 % of epochs (no class" in md
    # pixel accuracy, then mean recall: every truth pixel of the hand confusion is right
    assert "| ldann | 2 | 0.600 ± 0.141 | 1.000 | 1.000 |" in md
    assert "L-DANN vs none: +0.100" in md
    assert json.loads(out_md.with_suffix(".json").read_text())["domains"] == payload["domains"]
    assert out_md.with_suffix(".png").stat().st_size > 0


def _run_cli(*args: str) -> int:
    from pathda.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def test_paired_cli_says_when_the_demo_cannot_show_an_effect(tmp_path, capsys):
    # The demo layout: <method>/seed<k>/score/scores.json; diffs +0.2, -0.1, +0.1, -0.1.
    for seed, (none, ldann) in enumerate([((0.5, 0.6), (0.7, 0.5)), ((0.4, 0.5), (0.5, 0.4))]):
        _scores(tmp_path / "none" / f"seed{seed}" / "score", {"t0": none[0], "t1": none[1]})
        _scores(tmp_path / "ldann" / f"seed{seed}" / "score", {"t0": ldann[0], "t1": ldann[1]})
    assert _run_cli("benchmark", "paired", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    assert "BACH ldann - none: +0.025" in printed
    assert "2 seeds x 2 test slides" in printed
    assert "cannot be told from noise" in printed
    assert "docs/benchmarks/shift.md" in printed


def test_paired_cli_without_runs_is_a_user_error(tmp_path, capsys):
    assert _run_cli("benchmark", "paired", str(tmp_path)) == 2
    assert "no scored runs" in capsys.readouterr().err


def test_selection_note_says_how_the_config_trains_and_selects():
    balanced = {"train": {"class_balance": True, "select_metric": "val_bacc"}, "arms": {"none": {}}}
    assert selection_note(balanced) == (
        "Selection: best source-validation balanced accuracy (mean per-class recall) in the "
        "last 30 % of epochs (class-balanced source sampling)"
    )
    side = {"train": {}, "arms": {"none": {}, "none-bal": {"train": {"class_balance": True}}}}
    assert selection_note(side).endswith(
        "accuracy in the last 30 % of epochs (no class balancing); arms none-bal set their own "
        "in the config"
    )


def test_mean_recall_counts_only_the_classes_in_the_truth():
    from pathda.benchmark.collect import mean_recall

    # truth normal 10 (8 right), in situ 20 (5 right, 15 called normal); benign/invasive absent
    confusion = [[8, 1, 1, 0], [0, 0, 0, 0], [15, 0, 5, 0], [0, 0, 0, 0]]
    assert mean_recall(confusion) == (0.8 + 0.25) / 2
