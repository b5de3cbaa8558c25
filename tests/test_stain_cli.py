"""``pathda stain fit`` / ``pathda stain apply`` end to end, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.cli import main
from pathda.stain import load_params, read_rgb_image


def run(argv, capsys):
    """Run the real entry point in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _he_like(size: int, seed: int) -> np.ndarray:
    """Pink stroma with purple nuclei, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    h_od, e_od = np.array([0.65, 0.70, 0.29]), np.array([0.07, 0.99, 0.11])
    yy, xx = np.mgrid[:size, :size]
    h = np.zeros((size, size))
    for cy, cx in rng.integers(0, size, (size // 8, 2)):
        h += 1.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    e = (0.3 + 0.4 * rng.random((size, size))) * np.clip(1 - 2 * h, 0, 1)
    od = h[..., None] * h_od + e[..., None] * e_od
    return np.clip(255 * np.exp(-od) + rng.normal(0, 1, od.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def params_file(tmp_path, capsys):
    reference = tmp_path / "reference.png"
    Image.fromarray(_he_like(128, seed=0)).save(reference)
    params = tmp_path / "params.json"
    code, out, _ = run(["stain", "fit", str(reference), "--out", str(params)], capsys)
    assert code == 0, out
    return params


def test_fit_writes_params_with_provenance(params_file):
    record = json.loads(params_file.read_text())
    assert record["method"] == "macenko"
    assert np.asarray(record["params"]["stain_matrix"]).shape == (2, 3)
    assert record["provenance"]["slides"][0].endswith("reference.png")
    assert load_params(params_file).method == "macenko"


def test_apply_normalises_png_jpeg_tiff_and_large_images(params_file, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    tiles = [_he_like(64, seed=s) for s in (1, 2, 3)]
    Image.fromarray(tiles[0]).save(inputs / "a.png")
    Image.fromarray(tiles[1]).save(inputs / "b.png")
    tifffile.imwrite(inputs / "c.tif", tiles[2], photometric="rgb")
    Image.fromarray(tiles[0]).save(inputs / "d.jpg", quality=95)
    large = np.tile(_he_like(80, seed=4), (14, 1, 1))  # 1120 px tall: 1024-px blocks
    Image.fromarray(large).save(inputs / "large.png")
    names = ["a.png", "b.png", "c.tif", "d.jpg", "large.png"]
    argv = ["stain", "apply", *(str(inputs / n) for n in names)]
    argv += ["--params", str(params_file), "--out", str(tmp_path / "out"), "-b", "2"]
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert "5 image(s) written" in out
    normaliser = load_params(params_file)
    for name in names:
        source, result = read_rgb_image(inputs / name), read_rgb_image(tmp_path / "out" / name)
        assert result.shape == source.shape
        if name.endswith((".png", ".tif")):  # lossless: exactly the library's output
            expected = normaliser.transform_image(source, block_px=1024)
            np.testing.assert_array_equal(result, expected)


def test_unreadable_image_is_a_one_line_error(params_file, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    argv = ["stain", "apply", str(broken), "--params", str(params_file), "--out", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "broken.png" in err
    assert "cannot read image" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read stain parameters"),
        ('{"method": "macenko", "format_version": 7}', "format_version"),
        ('{"method": "nope", "format_version": 1, "params": {}}', "unknown stain method"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_params_file_is_a_one_line_error(tmp_path, capsys, content, message):
    params = tmp_path / "bad.json"
    params.write_text(content)
    image = tmp_path / "x.png"
    Image.fromarray(_he_like(32, seed=5)).save(image)
    argv = ["stain", "apply", str(image), "--params", str(params), "--out", str(tmp_path / "o")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "bad.json" in err
    assert message in err


def test_fit_errors_exit_2(tmp_path, capsys):
    white = tmp_path / "white.png"
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(white)
    code, _, err = run(["stain", "fit", str(white), "-o", str(tmp_path / "p.json")], capsys)
    assert code == 2
    assert "white.png" in err
    assert "no tissue" in err
    argv = ["stain", "fit", str(white), "-m", "fancy", "-o", str(tmp_path / "p.json")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "choose one of: macenko" in err
    assert not (tmp_path / "p.json").exists()
