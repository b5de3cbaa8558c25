"""``pathda info`` on the real fixtures: table, thumbnails, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.cli import main
from pathda.cli.info import format_length


def run(argv, capsys, monkeypatch):
    """Run the real entry point in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "250")  # keep rich from wrapping cells
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_info_prints_formats_levels_and_sizes(fixtures_dir, capsys, monkeypatch):
    slides = [fixtures_dir / "openslide/small.svs", fixtures_dir / "he/OS-1-detail.ome.tif"]
    code, out, _ = run(["info", *map(str, slides)], capsys, monkeypatch)
    assert code == 0
    assert "small.svs" in out
    assert "aperio" in out
    assert "0.4990" in out
    assert "7.98 µm x 7.98 µm" in out
    assert "ome-tiff" in out
    assert "tifffile" in out
    assert "0: 1101x1101 (1)" in out
    assert "250 µm x 250 µm" in out


def test_info_levels_and_mpp(fixtures_dir, capsys, monkeypatch):
    code, out, _ = run(["info", str(fixtures_dir / "openslide/boxes.tiff")], capsys, monkeypatch)
    assert code == 0
    assert "3: 37x31 (8.086)" in out
    assert "352.7778" in out  # 72 dpi as the file says (with a warning)
    code, out, _ = run(
        [
            "info",
            str(fixtures_dir / "openslide/boxes.tiff"),
            "--slide-mpp",
            "2",
            "--backend",
            "openslide",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0
    assert "openslide" in out
    assert "600 µm x 500 µm" in out


def test_old_mpp_spelling_of_the_level0_override_still_works_with_a_warning(
    fixtures_dir, capsys, monkeypatch
):
    slide = str(fixtures_dir / "openslide/boxes.tiff")
    code, out, err = run(["info", slide, "--mpp", "2"], capsys, monkeypatch)
    assert code == 0
    assert "600 µm x 500 µm" in out
    assert "pathda: warning: --mpp is deprecated here; use --slide-mpp" in err
    code, _, err = run(["info", slide, "--mpp", "2", "--slide-mpp", "3"], capsys, monkeypatch)
    assert code == 2
    assert "--mpp and --slide-mpp disagree" in err


def test_thumbnail_for_one_slide_at_the_asked_resolution(
    fixtures_dir, tmp_path, capsys, monkeypatch
):
    target = tmp_path / "os1.png"
    ome = fixtures_dir / "he/OS-1-detail.ome.tif"
    code, _, _ = run(
        ["info", str(ome), "--thumbnail", str(target), "--thumbnail-mpp", "4"], capsys, monkeypatch
    )
    assert code == 0
    with Image.open(target) as image:
        assert image.size == (63, 63)  # 1101 px * 0.2271 µm/px / 4 µm/px
        assert np.asarray(image).std() > 5


def test_thumbnails_for_several_slides_go_in_a_folder(fixtures_dir, tmp_path, capsys, monkeypatch):
    slides = [fixtures_dir / "openslide/small.svs", fixtures_dir / "openslide/boxes.tiff"]
    folder = tmp_path / "thumbs"
    code, _, err = run(["info", *map(str, slides), "--thumbnail", str(folder)], capsys, monkeypatch)
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["boxes_thumb.png", "small_thumb.png"]
    with Image.open(folder / "boxes_thumb.png") as image:
        assert image.size == (300, 250)  # never enlarged beyond level 0
    assert "72 dpi" in err  # the placeholder resolution is flagged on one line


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("openslide/unreadable.svs", ["--thumbnail", "THUMB"], "cannot decode level 0"),
        ("openslide/unopenable.tiff", [], "cannot open as a slide"),
        ("openslide/missing.svs", [], "no such file"),
        ("openslide/small.svs", ["--backend", "nope"], "unknown slide backend"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    fixtures_dir, tmp_path, capsys, monkeypatch, name, extra, message
):
    extra = [str(tmp_path / "t.png") if arg == "THUMB" else arg for arg in extra]
    code, _, err = run(["info", str(fixtures_dir / name), *extra], capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("pathda: error: ")
    assert message in err
    assert "Traceback" not in err


def test_several_failures_are_reported_together(fixtures_dir, capsys, monkeypatch):
    names = ["openslide/small.svs", "openslide/unopenable.tiff", "openslide/missing.svs"]
    code, out, err = run(["info", *(str(fixtures_dir / n) for n in names)], capsys, monkeypatch)
    assert code == 2
    assert "small.svs" in out  # the good slide is still shown
    assert err.count("\n") == 1
    assert "2 of 3 slides failed" in err


def test_thumbnail_target_must_be_an_image_name(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    code, _, err = run(
        ["info", str(path), "--thumbnail", str(tmp_path / "thumb.xyz")], capsys, monkeypatch
    )
    assert code == 2
    assert "image file name" in err


@pytest.mark.slow  # a fresh interpreter imports every CLI command (torch, timm)
def test_module_entry_point_exits_2_without_traceback(fixtures_dir):
    result = subprocess.run(
        [sys.executable, "-m", "pathda", "info", str(fixtures_dir / "openslide/unopenable.tiff")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "unopenable.tiff" in result.stderr


def test_format_length():
    assert format_length(7.984) == "7.98 µm"
    assert format_length(250.0) == "250 µm"
    assert format_length(25_000.0) == "25.00 mm"


def test_thumbnail_into_a_folder_that_does_not_exist_yet(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    folder = tmp_path / "newdir"
    code, _, err = run(["info", str(path), "--thumbnail", f"{folder}/"], capsys, monkeypatch)
    assert code == 0, err
    assert (folder / "s_thumb.png").is_file()  # named by the slide stem rule


def test_quiet_silences_tifffile_log_lines(tmp_path, capsys, monkeypatch, caplog):
    # OME-XML whose sizes disagree with the pixels: tifffile logs a line about it
    ome = (
        '<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="3" SizeT="1" '
        'SizeX="64" SizeY="99" SizeZ="1" Type="uint8"><TiffData/></Pixels></Image></OME>'
    )
    path = tmp_path / "odd.ome.tif"
    image = np.zeros((64, 64, 3), np.uint8)
    tifffile.imwrite(path, image, photometric="rgb", description=ome, metadata=None)
    code, _, _ = run(["info", str(path), "--mpp", "1"], capsys, monkeypatch)
    assert code == 0
    assert any("OME series" in r.getMessage() for r in caplog.records)  # the line exists ...
    caplog.clear()
    code, _, err = run(["info", str(path), "--mpp", "1", "-q"], capsys, monkeypatch)
    assert code == 0
    assert not [r for r in caplog.records if r.name == "tifffile"]  # ... and -q silences it
    assert err == ""
