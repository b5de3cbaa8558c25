"""``segment_slide`` and ``pathda segment`` end to end on tiny slides with a random model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile
import torch
import zarr
from shapely.geometry import box, shape
from shapely.ops import unary_union

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.cli import main
from pathda.errors import MppUnknownError, NonFiniteOutputError, PathdaError, SlideReadError
from pathda.evaluation.sources import read_segment_summary
from pathda.models import ModelInputConfig
from pathda.segment import SegmentConfig, segment_slide
from pathda.segment.engine import _worker_message

MODEL_MPP = 1.0
PATCH = 32
# The test slides' tissue (100 x 75 µm) is smaller than a real slide's specks filter.
SMALL_TISSUE = {"min_object_um2": 1000.0, "max_hole_um2": 1000.0}


def write_slide(path, mpp=0.5, tissue=True, size=(400, 300)):
    """A white RGB TIFF with a textured pink block (tissue) in the middle."""
    w, h = size
    img = np.full((h, w, 3), 242, np.uint8)
    if tissue:
        rng = np.random.default_rng(0)
        block = np.array([200, 110, 170]) + rng.integers(-25, 25, (h // 2, w // 2, 3))
        img[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = block
    kwargs = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    tifffile.imwrite(path, img, photometric="rgb", **kwargs)
    return path


def make_meta(**overrides):
    fields = {
        "arch": "resnet10t",
        "class_map": BACH_CLASSES,
        "mpp": MODEL_MPP,
        "patch_size": PATCH,
        "input_config": ModelInputConfig((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (3, PATCH, PATCH)),
    }
    fields.update(overrides)
    return InferenceCheckpoint(**fields)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_backbone("resnet10t", 4)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_inference_checkpoint(path, model, make_meta())


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_inference_checkpoint(checkpoint, "cpu")


def test_outputs_complete_and_readable_by_the_scorer(tmp_path, loaded):
    slide = write_slide(tmp_path / "s1.ome.tif")
    result = segment_slide(
        slide, loaded, tmp_path / "out", num_workers=0, quiet=True, tissue=SMALL_TISSUE
    )
    folder = tmp_path / "out" / "s1"
    assert result.folder == folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["s1.mask.ome.tif", "s1.geojson", "s1.probs.zarr", "s1.overlay.png", "s1.summary.json"]
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["s1"]  # no partial folder left
    summary = json.loads(result.summary.read_text())
    assert summary["complete"] is True
    assert summary["slide_dimensions"] == [400, 300]
    assert summary["mpp"] == pytest.approx(0.5)
    # stride 16 model px = 32 level-0 px; a quarter of it per mask cell
    assert summary["mask_downsample"] == result.mask_downsample == 8
    assert summary["n_patches"] == result.n_patches > 0
    assert set(summary["area_mm2"]) == set(BACH_CLASSES.names)
    # the tissue block is 200 x 150 px at 0.5 µm/px = 0.0075 mm²
    assert summary["tissue_mm2"] == pytest.approx(0.0075, rel=0.15)
    assert sum(summary["area_mm2"].values()) == pytest.approx(summary["tissue_mm2"])
    assert summary["provenance"]["config"]["num_workers"] == 0
    source = read_segment_summary(result.summary)
    assert source.mask_downsample == 8
    assert source.level0_size == (400, 300)
    mask = tifffile.imread(folder / "s1.mask.ome.tif")
    np.testing.assert_array_equal(mask, result.labels)
    assert mask.shape == (38, 50)
    assert (mask[:5] == 0).all()  # glass is normal
    probs = zarr.open_array(folder / "s1.probs.zarr", mode="r")
    assert probs.shape == (4, 38, 50)
    assert probs.attrs["class_names"] == list(BACH_CLASSES.names)
    inside = np.asarray(probs[:, 19, 25], np.float32)
    assert inside.sum() == pytest.approx(1.0, abs=1e-2)
    np.testing.assert_array_equal(np.asarray(probs[:, 0, 0]), 0)
    features = json.loads((folder / "s1.geojson").read_text())["features"]
    assert all(shape(f["geometry"]).is_valid for f in features)
    assert summary["n_regions"] == len(features)


@pytest.mark.parametrize("downsample", [7, 100000])
def test_outputs_stay_inside_the_slide(tmp_path, loaded, downsample):
    # tissue up to the edges of a slide whose size is no multiple of the cell
    rng = np.random.default_rng(0)
    image = np.clip(np.array([200, 110, 170]) + rng.integers(-25, 25, (301, 403, 3)), 0, 255)
    slide = tmp_path / "s.tif"
    tifffile.imwrite(
        slide, image.astype(np.uint8), photometric="rgb", resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )  # fmt: skip
    result = segment_slide(
        slide, loaded, tmp_path / "o", num_workers=0, quiet=True, tissue=SMALL_TISSUE,
        output_downsample=downsample, min_region_area_um2=0, include_normal=True, write_xml=True,
    )  # fmt: skip
    summary = result.summary_data
    slide_mm2 = 403 * 301 * 0.5**2 / 1e6
    # every cell is tissue; the summary rounds to 1e-6 mm²
    assert summary["tissue_mm2"] == pytest.approx(slide_mm2, abs=1e-6)
    assert sum(summary["area_mm2"].values()) == pytest.approx(slide_mm2, abs=4e-6)
    features = json.loads((result.folder / "s.geojson").read_text())["features"]
    # (at downsample 100000 the one cell's outline may miss the slide entirely: no regions)
    assert len(features) > 0 or downsample == 100000
    union = unary_union([shape(f["geometry"]) for f in features])
    assert union.is_empty or box(0, 0, 403, 301).contains(union)
    if downsample == 7:
        assert union.bounds == pytest.approx((0, 0, 403, 301))
    xml = (result.folder / "s.xml").read_text()
    assert all(0 <= float(v) <= 403 for v in re.findall(r' X="([-\d.]+)"', xml))
    assert all(0 <= float(v) <= 301 for v in re.findall(r' Y="([-\d.]+)"', xml))


def test_worker_processes_give_the_same_result(tmp_path, loaded):
    slide = write_slide(tmp_path / "s.tif")
    single = segment_slide(
        slide, loaded, tmp_path / "a", num_workers=0, quiet=True, tissue=SMALL_TISSUE
    )
    workers = segment_slide(
        slide, loaded, tmp_path / "b", num_workers=2, batch_size=8, quiet=True, tissue=SMALL_TISSUE
    )
    np.testing.assert_array_equal(single.labels, workers.labels)


def test_resampled_slide_mpp_and_override(tmp_path, loaded):
    slide = write_slide(tmp_path / "fine.tif", mpp=0.25, size=(600, 400))
    result = segment_slide(
        slide, loaded, tmp_path / "o", num_workers=0, quiet=True, tissue=SMALL_TISSUE
    )
    assert result.mask_downsample == 16  # stride 16 model px = 64 level-0 px at 0.25 µm/px
    no_mpp = write_slide(tmp_path / "nompp.tif", mpp=None)
    with pytest.raises(MppUnknownError, match=r"nompp\.tif.*`slide_mpp`"):
        segment_slide(
            no_mpp, loaded, tmp_path / "o", num_workers=0, quiet=True, tissue=SMALL_TISSUE
        )
    result = segment_slide(
        no_mpp,
        loaded,
        tmp_path / "o",
        num_workers=0,
        quiet=True,
        slide_mpp=0.5,
        tissue=SMALL_TISSUE,
    )
    assert result.summary_data["mpp"] == 0.5
    assert result.summary_data["provenance"]["config"]["slide_mpp"] == 0.5


def test_blank_slide_is_all_normal_with_a_warning(tmp_path, loaded):
    slide = write_slide(tmp_path / "blank.tif", tissue=False)
    with pytest.warns(UserWarning, match="no tissue"):
        result = segment_slide(
            slide, loaded, tmp_path / "o", num_workers=0, quiet=True, tissue=SMALL_TISSUE
        )
    assert result.n_patches == 0
    assert (result.labels == 0).all()
    assert result.summary_data["complete"] is True
    assert "no tissue" in result.summary_data["warnings"][0]


def test_bad_options_and_unreadable_slides(tmp_path, loaded, fixtures_dir):
    slide = write_slide(tmp_path / "s.tif")
    with pytest.raises(PathdaError, match="unknown segment option"):
        segment_slide(slide, loaded, tmp_path / "o", strides=3)
    with pytest.raises(PathdaError, match="stride 40 px must not exceed"):
        segment_slide(slide, loaded, tmp_path / "o", stride=40, quiet=True, tissue=SMALL_TISSUE)
    with pytest.raises(SlideReadError, match=r"unreadable\.svs"):
        segment_slide(fixtures_dir / "openslide" / "unreadable.svs", loaded, tmp_path / "o")
    with pytest.raises(PathdaError, match=r"unopenable\.tiff"):
        segment_slide(fixtures_dir / "openslide" / "unopenable.tiff", loaded, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_worker_error_message_is_the_original_line():
    text = (
        "Caught SlideReadError in DataLoader worker process 0.\nOriginal Traceback (most "
        'recent call last):\n  File "x.py", line 1\npathda.errors.SlideReadError: a.svs: '
        "cannot decode"
    )
    assert _worker_message(text) == "a.svs: cannot decode"
    assert _worker_message("plain message") == "plain message"


def test_cli_segments_and_reports_user_errors_on_one_line(tmp_path, checkpoint, capsys):
    slide = write_slide(tmp_path / "c.tif")
    config = tmp_path / "segment.yaml"
    config.write_text(json.dumps({"segment": {"tissue": SMALL_TISSUE, "batch_size": 16}}))
    args = ["segment", str(slide), "--model", str(checkpoint), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--workers", "0", "--xml", "--min-area", "0", "--config", str(config), "-q"])
    assert exit_info.value.code == 0
    assert (tmp_path / "o" / "c" / "c.xml").is_file()
    summary = json.loads((tmp_path / "o" / "c" / "c.summary.json").read_text())
    assert summary["n_patches"] > 0
    assert summary["config"]["write_xml"] is True
    assert summary["config"]["min_region_area_um2"] == 0
    assert summary["config"]["batch_size"] == 16
    # a checkpoint whose class map has fewer classes than its weights
    bad = tmp_path / "bad.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload["class_map"] = {"names": ["a", "b", "c"], "colors": [[0, 0, 0]] * 3}
    torch.save(payload, bad)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(slide), "--model", str(bad), "--out", str(tmp_path / "o2")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error:")
    assert "bad.pt" in err
    assert "3 classes" in err
    assert "\n" not in err


def test_cuda_without_cuda_is_a_one_line_error(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    slide = write_slide(tmp_path / "c.tif")
    args = ["segment", str(slide), "--model", str(checkpoint), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--device", "cuda", "-q"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathda: error: ")
    assert "CUDA is not available" in err
    assert "\n" not in err
    assert not (tmp_path / "o" / "c").exists()


def test_config_validation():
    with pytest.raises(PathdaError, match="output_downsample"):
        SegmentConfig(output_downsample=0)
    with pytest.raises(PathdaError, match="window"):
        SegmentConfig(window="hann")
    assert SegmentConfig(tissue={"mpp": 4.0}).tissue.mpp == 4.0


def test_real_ome_tiff_is_resampled_to_the_model_mpp(tmp_path, loaded, fixtures_dir):
    slide = fixtures_dir / "he" / "OS-1-detail.ome.tif"
    result = segment_slide(slide, loaded, tmp_path / "o", num_workers=1, quiet=True)
    summary = result.summary_data
    assert summary["mpp"] == pytest.approx(0.2271, rel=1e-3)
    # 16 model px at 1 µm/px = 70.5 level-0 px at 0.2271 µm/px; a quarter of it per cell
    assert summary["mask_downsample"] == 18
    assert result.labels.shape == (62, 62)
    assert summary["tissue_mm2"] > 0.5 * (1101 * 0.2271e-3) ** 2  # a dense tumour crop
    assert result.n_patches > 100
    with tifffile.TiffFile(result.folder / "OS-1-detail.mask.ome.tif") as tif:
        size_x = re.search(r'PhysicalSizeX="([\d.]+)"', tif.ome_metadata).group(1)
    assert float(size_x) == pytest.approx(summary["mpp"] * 18)


def test_input_pipeline_matches_training_normalisation():
    from pathda.model_input import InputPipeline

    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = (batch.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(InputPipeline(mean, std)(batch), expected)
    inverted = InputPipeline(mean, std, stain=lambda b: 255 - b)(batch)
    torch.testing.assert_close(inverted, InputPipeline(mean, std)(255 - batch))


def test_read_error_in_a_worker_keeps_its_type_and_one_line(tmp_path, loaded, monkeypatch):
    from pathda.segment.dataset import SlidePatchDataset

    def broken(self, index):
        raise SlideReadError(f"{self.slide_path}: cannot decode tile {index}")

    monkeypatch.setattr(SlidePatchDataset, "__getitem__", broken)  # forked workers inherit it
    slide = write_slide(tmp_path / "w.tif")
    with pytest.raises(SlideReadError) as info:
        segment_slide(slide, loaded, tmp_path / "o", num_workers=1, quiet=True, tissue=SMALL_TISSUE)
    assert str(info.value) == f"{slide}: cannot decode tile 0"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.gpu
def test_cuda_matches_cpu(tmp_path, checkpoint):
    slide = write_slide(tmp_path / "g.tif")
    runs = {}
    for device in ("cpu", "cuda"):
        loaded_here = load_inference_checkpoint(checkpoint, device)
        result = segment_slide(
            slide, loaded_here, tmp_path / device, num_workers=2, quiet=True, tissue=SMALL_TISSUE
        )
        runs[device] = zarr.open_array(result.folder / "g.probs.zarr", mode="r")[:]
    # bf16 autocast on CUDA: probabilities agree to a few hundredths
    np.testing.assert_allclose(runs["cuda"], runs["cpu"], atol=0.05)


class _InvertStain:
    """Stand-in normaliser (the real ones live in pathda.stain): (N, H, W, 3) uint8 -> 255 - x."""

    def transform(self, tiles):
        assert tiles.ndim == 4
        assert tiles.shape[-1] == 3
        return 255 - tiles


def test_checkpoint_stain_is_applied_to_nhwc_tiles(tmp_path, monkeypatch):
    import pathda.stain

    monkeypatch.setattr(
        pathda.stain, "normaliser_from_dict", lambda d: _InvertStain(), raising=False
    )
    torch.manual_seed(0)
    model = create_backbone("resnet10t", 4).eval()
    plain = write_slide(tmp_path / "plain.tif")
    inverted = tmp_path / "inverted.tif"
    tifffile.imwrite(
        inverted,
        255 - tifffile.imread(plain),
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    everything = {"threshold_bounds": (-1.0, -1.0)}  # all tissue: both runs read every patch
    opts = {"num_workers": 0, "quiet": True, "tissue": everything}

    def probs(slide, meta, out):
        result = segment_slide(slide, (model, meta), tmp_path / out, **opts)
        return result, zarr.open_array(result.folder / f"{slide.stem}.probs.zarr", mode="r")[:]

    with_stain, a = probs(plain, make_meta(stain={"method": "invert"}), "stain")
    # the same patches of the inverted slide through the model without the stain step
    reference, b = probs(inverted, make_meta(), "reference")
    _, raw = probs(plain, make_meta(), "raw")
    assert with_stain.summary_data["model"]["stain"] == "invert"
    assert with_stain.n_patches == reference.n_patches
    # patches sticking out of the slide are padded white before the stain step, so compare
    # the cells that only patches inside the slide cover (origins x < 352, y < 256 px)
    np.testing.assert_allclose(a[:, :31, :43], b[:, :31, :43], atol=2e-3)
    assert not np.allclose(a[:, :31, :43], raw[:, :31, :43], atol=2e-3)


def test_nan_weights_with_a_valid_checksum_are_an_error_naming_the_slide(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("resnet10t", 4).eval()
    with torch.no_grad():
        model.get_classifier().weight.fill_(float("nan"))
    path = save_inference_checkpoint(tmp_path / "nan.pt", model, make_meta())
    loaded = load_inference_checkpoint(path, "cpu")  # the checksum is valid: it loads
    slide = write_slide(tmp_path / "s.tif")
    with pytest.raises(NonFiniteOutputError, match=rf"^{re.escape(str(slide))}: .*not finite"):
        segment_slide(
            slide, loaded, tmp_path / "out", num_workers=0, quiet=True, tissue=SMALL_TISSUE
        )
    assert not (tmp_path / "out" / "s").exists()  # nothing that looks like a result
