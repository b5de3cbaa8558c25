"""score_predictions end to end on tiny masks, segment outputs and ImageScope XML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.errors import ConfigError, LabelRangeError, ScoreInputError
from pathda.evaluation import bach_score, confusion_matrix, score_predictions, write_report

RNG = np.random.default_rng(7)


def blocky(shape_hw: tuple[int, int], block: int) -> np.ndarray:
    """Random labels 0..3 constant over block x block squares, so resampling is unambiguous."""
    small = RNG.integers(0, 4, size=(shape_hw[0] // block, shape_hw[1] // block), dtype=np.uint8)
    return np.kron(small, np.ones((block, block), dtype=np.uint8))


def write_png(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels).save(path)
    return path


def write_segment_output(
    root: Path, stem: str, mask: np.ndarray, mask_downsample: float, slide_size, **extra
) -> Path:
    """A pathda segment slide folder: pyramidal OME-TIFF mask + summary.json."""
    folder = root / stem
    folder.mkdir(parents=True)
    with tifffile.TiffWriter(folder / f"{stem}.mask.ome.tif", ome=True) as tif:
        tif.write(mask, subifds=1, metadata={"axes": "YX"})
        tif.write(mask[::2, ::2], subfiletype=1)
    summary = {
        "slide": f"/slides/{stem}.svs",
        "slide_dimensions": list(slide_size),
        "mpp": 0.25,
        "mask_downsample": mask_downsample,
        "mask": f"{stem}.mask.ome.tif",
        "complete": True,
        **extra,
    }
    (folder / f"{stem}.summary.json").write_text(json.dumps(summary))
    return folder


IMAGESCOPE_INVASIVE_RECT = """<?xml version="1.0"?>
<Annotations MicronsPerPixel="0.5">
  <Annotation Id="1" Name="" LineColor="255">
    <Regions>
      <Region Id="1" Type="0" Text="">
        <Attributes><Attribute Name="Description" Value="Carcinoma invasive"/></Attributes>
        <Vertices>
          <Vertex X="0" Y="0"/><Vertex X="200" Y="0"/>
          <Vertex X="200" Y="100"/><Vertex X="0" Y="100"/>
        </Vertices>
      </Region>
    </Regions>
  </Annotation>
</Annotations>
"""


def test_segment_prediction_against_png_truth_on_the_requested_grid(tmp_path):
    pred0, truth0 = blocky((192, 256), 1), blocky((192, 256), 1)  # level-0 labels, per pixel
    # mask pixel j (downsample d) holds level-0 pixel d*j + d/2, its centre
    write_segment_output(tmp_path / "pred", "A01", pred0[2::4, 2::4], 4, (256, 192))
    write_png(tmp_path / "truth" / "A01_mask.png", truth0[4::8, 4::8])  # downsample unknown

    report = score_predictions(tmp_path / "pred", tmp_path / "truth", downsample=16)

    # grid pixel c (centre 16c + 8) takes mask pixel floor((16c + 8) / d): at d=4 that is
    # 4c + 2, i.e. level-0 pixel 16c + 10; at d=8 it is 2c + 1, i.e. level-0 pixel 16c + 12.
    pred_grid, truth_grid = pred0[10::16, 10::16], truth0[12::16, 12::16]
    [slide] = report.slides
    assert (slide.slide, slide.grid_shape, slide.downsample) == ("A01", (12, 16), 16.0)
    assert slide.bach == pytest.approx(bach_score(pred_grid, truth_grid))
    np.testing.assert_array_equal(slide.confusion, confusion_matrix(pred_grid, truth_grid))
    assert (slide.slide_path, slide.mpp) == ("/slides/A01.svs", 0.25)
    assert report.provenance["slides"][0].endswith("A01.svs")


def test_two_plain_masks_compare_on_the_finer_masks_grid(tmp_path):
    truth0 = blocky((48, 64), 2)
    write_png(tmp_path / "A01_mask.png", truth0[::2, ::2])  # coarser copy of the truth
    write_png(tmp_path / "truth" / "A01.png", truth0)
    report = score_predictions(tmp_path / "A01_mask.png", tmp_path / "truth")
    [slide] = report.slides
    assert (slide.grid_shape, slide.downsample, slide.bach) == ((48, 64), None, 1.0)


def test_slide_dims_put_plain_masks_on_the_requested_grid(tmp_path):
    truth0 = blocky((96, 128), 16)
    write_png(tmp_path / "p" / "A01.png", truth0[2::4, 2::4])
    write_png(tmp_path / "t" / "A01.png", truth0[1::2, 1::2])
    report = score_predictions(tmp_path / "p", tmp_path / "t", 8, slide_size=(128, 96))
    [slide] = report.slides
    assert (slide.grid_shape, slide.downsample, slide.bach) == ((12, 16), 8.0, 1.0)


def test_multilevel_tiff_mask_is_read_at_full_resolution(tmp_path):
    truth = blocky((32, 48), 4)
    with tifffile.TiffWriter(tmp_path / "A01.tif") as tif:
        tif.write(truth, subifds=1)
        tif.write(np.zeros((16, 24), np.uint8), subfiletype=1)  # a misleading lower level
    write_png(tmp_path / "t" / "A01.png", truth)
    [slide] = score_predictions(tmp_path / "A01.tif", tmp_path / "t").slides
    assert slide.bach == 1.0
    assert slide.grid_shape == (32, 48)


def test_imagescope_xml_truth_rasterised_on_the_grid(tmp_path):
    (tmp_path / "A01.xml").write_text(IMAGESCOPE_INVASIVE_RECT)
    # slide 400 x 200 px, grid at 10: 20 x 40; invasive on rows 0..9, cols 0..19 (200 pixels)
    exact = np.zeros((20, 40), dtype=np.uint8)
    exact[:10, :20] = 3
    write_png(tmp_path / "exact" / "A01.png", exact)
    write_png(tmp_path / "benign" / "A01.png", (exact > 0).astype(np.uint8))
    write_png(tmp_path / "normal" / "A01.png", np.zeros_like(exact))

    def score(pred: str) -> float:
        report = score_predictions(tmp_path / pred, tmp_path / "A01.xml", 10, slide_size=(400, 200))
        return report.slides[0].bach

    assert score("exact") == 1.0
    assert score("benign") == pytest.approx(1 - (2 * 200) / (3 * 200))
    assert score("normal") == 0.0


def test_annotations_without_a_level0_size_are_refused(tmp_path):
    (tmp_path / "A01.xml").write_text(IMAGESCOPE_INVASIVE_RECT)
    write_png(tmp_path / "A01_mask.png", np.zeros((20, 40), np.uint8))
    with pytest.raises(ScoreInputError, match=r"A01\.xml: .*`slide_size`"):
        score_predictions(tmp_path / "A01_mask.png", tmp_path / "A01.xml")


def test_mismatched_aspect_ratio_names_both_files(tmp_path):
    write_png(tmp_path / "p" / "A01.png", np.zeros((30, 40), np.uint8))
    write_png(tmp_path / "t" / "A01.png", np.zeros((40, 40), np.uint8))
    with pytest.raises(ScoreInputError, match=r"p/A01\.png .*t/A01\.png .*aspect ratio"):
        score_predictions(tmp_path / "p", tmp_path / "t")


def test_segment_mask_size_must_fit_its_summary(tmp_path):
    write_segment_output(tmp_path, "A01", np.zeros((10, 10), np.uint8), 4, (256, 192))
    write_png(tmp_path / "t" / "A01.png", np.zeros((48, 64), np.uint8))
    with pytest.raises(ScoreInputError, match=r"mask is 10x10 px but .* implies 64x48"):
        score_predictions(tmp_path / "A01", tmp_path / "t")


def test_slide_dims_disagreeing_with_a_summary_are_refused(tmp_path):
    write_segment_output(tmp_path, "A01", np.zeros((48, 64), np.uint8), 4, (256, 192))
    write_png(tmp_path / "t" / "A01.png", np.zeros((48, 64), np.uint8))
    with pytest.raises(ScoreInputError, match="`slide_size` 100x100 disagrees"):
        score_predictions(tmp_path / "A01", tmp_path / "t", slide_size=(100, 100))


def test_out_of_range_labels_name_the_file(tmp_path):
    write_png(tmp_path / "p" / "A01.png", np.full((4, 4), 255, np.uint8))
    write_png(tmp_path / "t" / "A01.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(LabelRangeError, match=r"p/A01\.png: label 255"):
        score_predictions(tmp_path / "p", tmp_path / "t")


def test_colour_masks_are_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 1
    write_png(tmp_path / "p" / "A01.png", rgb)
    write_png(tmp_path / "t" / "A01.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ScoreInputError, match="single-channel"):
        score_predictions(tmp_path / "p", tmp_path / "t")


def test_report_means_json_and_png(tmp_path):
    # A01: perfect, invasive only (Dice of classes 1, 2 undefined); A02: all-normal vs invasive.
    inv = np.zeros((4, 4), np.uint8)
    inv[:2] = 3
    write_png(tmp_path / "p" / "A01.png", inv)
    write_png(tmp_path / "t" / "A01.png", inv)
    write_png(tmp_path / "p" / "A02.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "t" / "A02.png", np.full((4, 4), 3, np.uint8))
    report = score_predictions(tmp_path / "p", tmp_path / "t")
    assert report.mean_bach == pytest.approx(0.5)
    assert report.mean_accuracy == pytest.approx(0.5)
    # normal: A01 Dice 1, A02 Dice 0 (truth has no normal, prediction all normal) -> 0.5
    np.testing.assert_allclose(report.mean_dice, [0.5, np.nan, np.nan, 0.5])
    np.testing.assert_array_equal(report.confusion, [[8, 0, 0, 0], [0] * 4, [0] * 4, [16, 0, 0, 8]])

    scores, png = write_report(report, tmp_path / "out")
    data = json.loads(scores.read_text())
    assert [s["slide"] for s in data["slides"]] == ["A01", "A02"]
    assert data["mean"]["bach"] == pytest.approx(0.5)
    assert data["mean"]["dice"]["benign"] is None
    assert data["slides"][1]["bach_numerator"] == data["slides"][1]["bach_denominator"] == 48
    assert data["confusion"]["counts"][3] == [16, 0, 0, 8]
    assert data["config"]["downsample"] == 16.0
    assert data["provenance"]["pathda_version"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["confusion.png", "scores.json"]


def test_xml_truth_takes_the_slide_size_from_the_segment_summary(tmp_path):
    (tmp_path / "A01.xml").write_text(IMAGESCOPE_INVASIVE_RECT)
    mask = np.zeros((40, 80), np.uint8)  # slide 400 x 200 at mask downsample 5
    mask[:20, :40] = 3
    write_segment_output(tmp_path / "seg", "A01", mask, 5, (400, 200))
    [slide] = score_predictions(tmp_path / "seg", tmp_path / "A01.xml", downsample=20).slides
    assert (slide.grid_shape, slide.bach) == ((10, 20), 1.0)
    np.testing.assert_array_equal(np.diag(slide.confusion), [150, 0, 0, 50])


@pytest.mark.parametrize("downsample", [0, -4, float("nan")])
def test_downsample_must_be_positive(tmp_path, downsample):
    write_png(tmp_path / "A01.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match="downsample"):
        score_predictions(tmp_path / "A01.png", tmp_path / "A01.png", downsample)
