"""`pathda tile` with imperfect annotations: warnings once, a run summary, --strict, splits."""

from __future__ import annotations

import pytest
from test_tiling_pipeline import make_slide

from pathda.cli import main

RULER_ONLY = (
    "<Annotations><Annotation Name='Invasive'><Regions>"
    "<Region Type='4'><Vertices><Vertex X='10' Y='10'/><Vertex X='90' Y='90'/></Vertices></Region>"
    "</Regions></Annotation></Annotations>"
)
ARGS = ["--mpp", "2", "--patch-size", "16", "--tissue-mpp", "4", "--workers", "1", "-q"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    root = tmp_path_factory.mktemp("slide")
    path = make_slide(root / "a.tif", size=(512, 448), discs=((256, 224, 200),))
    (root / "a.xml").write_text(RULER_ONLY)
    return path


def test_all_skipped_regions_warn_once_and_in_the_summary(slide, tmp_path, capsys):
    code, err = _run(["tile", str(slide), "--out", str(tmp_path / "t.zarr"), *ARGS], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    # read when validating and again when planning: each warning is printed once
    assert sum("ruler/arrow" in line for line in lines) == 1
    assert sum("were skipped (see" in line for line in lines) == 1
    assert "summary: 1 annotation file(s) had every region skipped" in lines[-1]
    assert str(slide.with_suffix(".xml")) in lines[-1]


def test_strict_refuses_a_file_whose_regions_were_all_skipped(slide, tmp_path, capsys):
    out = tmp_path / "t.zarr"
    code, err = _run(["tile", str(slide), "--out", str(out), "--strict", *ARGS], capsys)
    assert code == 2
    assert "pathda: error:" in err
    assert "all 1 region(s) were skipped" in err
    assert not out.exists()


def test_unknown_split_is_refused(slide, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide,split\n{slide},training\n")
    code, err = _run(
        ["tile", "--manifest", str(manifest), "--out", str(tmp_path / "t"), *ARGS], capsys
    )
    assert code == 2
    assert "m.csv:2: split 'training' is not one of train, val, test" in err
    code, err = _run(
        ["tile", str(slide), "--split", "dev", "--out", str(tmp_path / "t"), *ARGS], capsys
    )
    assert code == 2
    assert "split 'dev'" in err
