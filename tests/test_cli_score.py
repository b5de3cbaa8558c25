"""`pathda score` from the command line: outputs, and one-line user errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.cli import main

IMAGESCOPE_IN_SITU_RECT = """<?xml version="1.0"?>
<Annotations>
  <Annotation Id="1">
    <Regions>
      <Region Id="1" Text="Carcinoma in situ">
        <Vertices>
          <Vertex X="0" Y="0"/><Vertex X="80" Y="0"/><Vertex X="80" Y="80"/><Vertex X="0" Y="80"/>
        </Vertices>
      </Region>
    </Regions>
  </Annotation>
</Annotations>
"""


def run(*args: str | Path) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", *map(str, args)])
    return exit_info.value.code


def write_png(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_png_masks_print_a_table_and_write_outputs(tmp_path, capsys):
    truth = np.array([[0, 2, 2], [3, 0, 1]])
    write_png(tmp_path / "pred" / "A01_mask.png", np.array([[0, 1, 2], [3, 3, 0]]))
    write_png(tmp_path / "truth" / "A01_mask.png", truth)
    write_png(tmp_path / "pred" / "A02_mask.png", truth)
    write_png(tmp_path / "truth" / "A02.png", truth)
    out = tmp_path / "scores"
    assert run("--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--out", out, "-q") == 0
    printed = capsys.readouterr().out
    assert "A01" in printed
    assert "0.583" in printed
    assert "mean of 2" in printed
    data = json.loads((out / "scores.json").read_text())
    assert [s["bach"] for s in data["slides"]] == pytest.approx([7 / 12, 1.0])
    assert data["mean"]["bach"] == pytest.approx((7 / 12 + 1) / 2)
    assert (out / "confusion.png").stat().st_size > 0


def test_imagescope_truth_with_tiff_prediction_and_slide_dims(tmp_path, capsys):
    (tmp_path / "B07.xml").write_text(IMAGESCOPE_IN_SITU_RECT)
    pred = np.zeros((10, 20), np.uint8)  # slide 320 x 160 at downsample 16
    pred[:5, :5] = 2  # in situ over level-0 x, y in 0..80
    tifffile.imwrite(tmp_path / "B07.mask.ome.tif", pred)
    code = run(
        "--pred", tmp_path / "B07.mask.ome.tif", "--truth", tmp_path / "B07.xml",
        "--slide-dims", "320x160", "--out", tmp_path / "o", "--quiet",
    )  # fmt: skip
    assert code == 0
    [slide] = json.loads((tmp_path / "o" / "scores.json").read_text())["slides"]
    assert (slide["bach"], slide["grid"]) == (1.0, {"shape_hw": [10, 20], "downsample": 16.0})
    assert slide["dice"]["in situ"] == 1.0
    assert slide["dice"]["benign"] is None


def test_class_alias_maps_truth_labels(tmp_path, capsys):
    (tmp_path / "B07.xml").write_text(IMAGESCOPE_IN_SITU_RECT.replace("Carcinoma in situ", "Tis"))
    pred = np.zeros((10, 20), np.uint8)
    pred[:5, :5] = 2
    tifffile.imwrite(tmp_path / "B07.mask.ome.tif", pred)
    args = ("--pred", tmp_path / "B07.mask.ome.tif", "--truth", tmp_path / "B07.xml")
    assert run(*args, "--slide-dims", "320x160", "-q") == 2
    _assert_one_line_error(capsys, "unknown class 'Tis'", "--class-alias 'Tis=CLASS'")
    assert run(*args, "--slide-dims", "320x160", "--class-alias", "Tis=in situ", "-q") == 0
    assert "1.000" in capsys.readouterr().out


def _assert_one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error: ")
    assert "\n" not in err
    for fragment in fragments:
        assert fragment in err


def test_unmatched_files_exit_2(tmp_path, capsys):
    write_png(tmp_path / "p" / "A01.png", np.zeros((4, 4)))
    write_png(tmp_path / "p" / "A02.png", np.zeros((4, 4)))
    write_png(tmp_path / "t" / "A01.png", np.zeros((4, 4)))
    assert run("--pred", tmp_path / "p", "--truth", tmp_path / "t") == 2
    _assert_one_line_error(capsys, "prediction without truth", "A02.png")


def test_allow_missing_scores_the_pairs_and_warns(tmp_path, capsys):
    write_png(tmp_path / "p" / "A01.png", np.zeros((4, 4)))
    write_png(tmp_path / "p" / "A02.png", np.zeros((4, 4)))
    write_png(tmp_path / "t" / "A01.png", np.zeros((4, 4)))
    assert run("--pred", tmp_path / "p", "--truth", tmp_path / "t", "--allow-missing") == 0
    captured = capsys.readouterr()
    assert "warning: no partner for" in captured.err
    assert "A02.png" in captured.err
    assert "mean of 1" in captured.out


def test_mismatched_aspect_exit_2(tmp_path, capsys):
    write_png(tmp_path / "p" / "A01.png", np.zeros((30, 40)))
    write_png(tmp_path / "t" / "A01.png", np.zeros((40, 40)))
    assert run("--pred", tmp_path / "p", "--truth", tmp_path / "t") == 2
    _assert_one_line_error(capsys, "aspect ratio", "p/A01.png", "t/A01.png")


def test_partial_segment_output_exit_2(tmp_path, capsys):
    folder = tmp_path / "seg" / "A01"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "A01.mask.ome.tif", np.zeros((4, 4), np.uint8))
    summary = {"slide": "A01.svs", "slide_dimensions": [64, 64], "mpp": 0.5,
               "mask_downsample": 16, "mask": "A01.mask.ome.tif"}  # fmt: skip
    (folder / "A01.summary.json").write_text(json.dumps(summary))
    write_png(tmp_path / "t" / "A01.png", np.zeros((4, 4)))
    assert run("--pred", tmp_path / "seg", "--truth", tmp_path / "t") == 2
    _assert_one_line_error(capsys, "A01.summary.json", "incomplete")


def test_bad_slide_dims_exit_2(tmp_path, capsys):
    write_png(tmp_path / "A01.png", np.zeros((4, 4)))
    assert run("--pred", tmp_path / "A01.png", "--truth", tmp_path / "A01.png",
               "--slide-dims", "big") == 2  # fmt: skip
    _assert_one_line_error(capsys, "WIDTHxHEIGHT")


def test_config_score_section_sets_defaults_and_flags_win(tmp_path, capsys):
    (tmp_path / "B07.xml").write_text(IMAGESCOPE_IN_SITU_RECT)
    pred = np.zeros((20, 40), np.uint8)  # slide 320 x 160 at downsample 8
    pred[:10, :10] = 2
    tifffile.imwrite(tmp_path / "B07.mask.ome.tif", pred)
    config = tmp_path / "run.yaml"
    config.write_text("score:\n  downsample: 8\n  slide_size: [320, 160]\n")
    args = ["--pred", tmp_path / "B07.mask.ome.tif", "--truth", tmp_path / "B07.xml", "-q"]
    assert run(*args, "--config", config, "--out", tmp_path / "a") == 0
    [slide] = json.loads((tmp_path / "a" / "scores.json").read_text())["slides"]
    assert (slide["bach"], slide["grid"]) == (1.0, {"shape_hw": [20, 40], "downsample": 8.0})
    assert run(*args, "--config", config, "--downsample", "16", "--out", tmp_path / "b") == 0
    [slide] = json.loads((tmp_path / "b" / "scores.json").read_text())["slides"]
    assert slide["grid"]["downsample"] == 16.0
    config.write_text("score:\n  downsampling: 8\n")
    assert run(*args, "--config", config) == 2
    assert "unknown option 'downsampling'" in capsys.readouterr().err


def test_library_advice_names_this_commands_flags(tmp_path, capsys):
    (tmp_path / "B07.xml").write_text(IMAGESCOPE_IN_SITU_RECT)
    write_png(tmp_path / "B07_mask.png", np.zeros((10, 20)))
    assert run("--pred", tmp_path / "B07_mask.png", "--truth", tmp_path / "B07.xml", "-q") == 2
    err = capsys.readouterr().err
    assert "set --slide-dims (WIDTHxHEIGHT)" in err
    assert "`" not in err
