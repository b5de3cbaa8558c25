"""open_slide: backend registry, automatic choice, fallbacks and user errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from pathda.errors import ConfigError, MppUnknownError, PathdaError, SlideOpenError
from pathda.slide import Slide, available_backends, open_slide
from pathda.slide.openslide_backend import mpp_from_openslide_properties


def _tiled_tiff(path, resolution=None):
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    extra = {"resolution": resolution, "resolutionunit": "CENTIMETER"} if resolution else {}
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib", photometric="rgb", **extra)
    return image


def test_available_backends():
    assert available_backends() == ["openslide", "tifffile"]


def test_unknown_backend_lists_valid_names(tmp_path):
    with pytest.raises(ConfigError, match=r"'cucim'.*openslide, tifffile"):
        open_slide(tmp_path / "any.svs", backend="cucim")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SlideOpenError, match=r"nope\.svs: no such file"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(SlideOpenError, match="is a folder"):
        open_slide(tmp_path)


def test_generic_tiled_tiff_opens_with_either_backend(tmp_path):
    path = tmp_path / "generic.tif"
    image = _tiled_tiff(path, resolution=(40000, 40000))
    for backend in (None, "openslide", "tifffile"):
        with open_slide(path, backend=backend) as slide:
            assert isinstance(slide, Slide)
            assert slide.backend == (backend or "tifffile")
            assert slide.format == "generic-tiff"
            assert slide.mpp == pytest.approx((0.25, 0.25))
            np.testing.assert_array_equal(slide.read_region((0, 0), 0, (128, 128)), image)


def test_mpp_argument_overrides_the_file(tmp_path):
    path = tmp_path / "generic.tif"
    _tiled_tiff(path, resolution=(40000, 40000))
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)
    with pytest.raises(MppUnknownError, match="positive"):
        open_slide(path, mpp=-1.0)


def test_not_a_slide_names_every_backend_and_the_formats(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(SlideOpenError) as info:
        open_slide(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot open as a slide")
    assert "tifffile:" in message
    assert "Aperio SVS" in message
    assert "OME-TIFF" in message
    assert isinstance(info.value, PathdaError)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (
            {"openslide.vendor": "aperio", "openslide.mpp-x": "0.5", "openslide.mpp-y": "0.5"},
            (0.5, 0.5),
        ),
        ({"openslide.vendor": "aperio"}, None),
        ({"openslide.vendor": "aperio", "openslide.mpp-x": "0", "openslide.mpp-y": "0"}, None),
        (
            {
                "openslide.vendor": "generic-tiff",
                "openslide.mpp-x": "352.77",
                "openslide.mpp-y": "352.77",
                "tiff.XResolution": "28.346456527709961",
                "tiff.YResolution": "28.346456527709961",
                "tiff.ResolutionUnit": "centimeter",
            },
            (352.7778, 352.7778),
        ),
        (
            {
                "openslide.vendor": "generic-tiff",
                "tiff.XResolution": "40000",
                "tiff.YResolution": "40000",
                "tiff.ResolutionUnit": "centimeter",
            },
            (0.25, 0.25),
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:TIFF resolution is 72 dpi")
def test_mpp_from_openslide_properties(properties, expected):
    result = mpp_from_openslide_properties(properties)
    assert result == (None if expected is None else pytest.approx(expected))
