"""Every real fixture in tests/data reads as its README says, and bad files fail clearly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from pathda.errors import SlideOpenError, SlideReadError
from pathda.slide import open_slide

# file, format, backend chosen by open_slide, level-0 size, level count, mpp
EXPECTED = [
    ("openslide/small.svs", "aperio", "openslide", (16, 16), 1, 0.499),
    ("openslide/boxes.tiff", "generic-tiff", "tifffile", (300, 250), 4, 352.7778),
    ("openslide/boxes_0.dcm", "dicom", "openslide", (16, 16), 1, 0.499),
    ("openslide/boxes_1.dcm", "dicom", "openslide", (16, 16), 1, 0.499),
    ("he/OS-1-detail.ome.tif", "ome-tiff", "tifffile", (1101, 1101), 1, 0.2271),
]


@pytest.mark.filterwarnings("ignore:TIFF resolution is 72 dpi")
@pytest.mark.parametrize(("name", "fmt", "backend", "dims", "levels", "mpp"), EXPECTED)
def test_fixture_metadata_and_pixels(fixtures_dir, name, fmt, backend, dims, levels, mpp):
    with open_slide(fixtures_dir / name) as slide:
        assert slide.format == fmt
        assert slide.backend == backend
        assert slide.dimensions == dims
        assert slide.level_count == levels
        if mpp is None:
            assert slide.mpp is None
        else:
            assert slide.require_mpp() == pytest.approx(mpp, abs=1e-4)
        image = slide.read_region((0, 0), 0, dims)
        assert image.shape == (dims[1], dims[0], 3)
        assert image.dtype == np.uint8
        assert image.std() > 10, "a real image has content, not one flat value"


def test_boxes_pyramid_matches_openslide_report(fixtures_dir):
    with open_slide(fixtures_dir / "openslide/boxes.tiff") as slide:
        assert slide.level_dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
        assert slide.level_downsamples == pytest.approx((1, 2, 4.016129, 8.086312))


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_boxes_mpp_from_tiff_resolution(fixtures_dir, backend):
    # The file says 72 dpi: 352.78 µm/px as OpenSlide reports, with a warning that it is
    # probably a writer's default.
    with (
        pytest.warns(UserWarning, match="72 dpi"),
        open_slide(fixtures_dir / "openslide/boxes.tiff", backend=backend) as slide,
    ):
        assert slide.mpp == pytest.approx((352.7778, 352.7778), rel=1e-4)
    with open_slide(fixtures_dir / "openslide/boxes.tiff", mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)


@pytest.mark.parametrize("name", ["openslide/small.svs", "openslide/boxes.tiff"])
def test_backends_agree_at_level0(fixtures_dir, name):
    with (
        open_slide(fixtures_dir / name, backend="openslide") as a,
        open_slide(fixtures_dir / name, backend="tifffile") as b,
    ):
        assert a.level_dimensions == b.level_dimensions
        assert a.mpp == b.mpp
        size = a.dimensions
        np.testing.assert_array_equal(
            a.read_region((0, 0), 0, size), b.read_region((0, 0), 0, size)
        )


def test_dicom_opens_from_either_file(fixtures_dir):
    with (
        open_slide(fixtures_dir / "openslide/boxes_0.dcm") as a,
        open_slide(fixtures_dir / "openslide/boxes_1.dcm") as b,
    ):
        assert a.vendor == b.vendor == "dicom"
        np.testing.assert_array_equal(
            a.read_region((0, 0), 0, (16, 16)), b.read_region((0, 0), 0, (16, 16))
        )


def test_ome_tiff_from_qupath_has_tissue(fixtures_dir):
    with open_slide(fixtures_dir / "he/OS-1-detail.ome.tif") as slide:
        assert slide.mpp == pytest.approx((0.22710, 0.22710), abs=1e-4)
        patch = slide.read_at_mpp((300, 300), (128, 128), mpp=0.5)
        assert patch.shape == (128, 128, 3)
        assert 60 < patch.mean() < 230  # stained tissue: neither glass nor black
        # Beyond the right edge: white padding.
        assert (slide.read_region((1090, 0), 0, (20, 4))[:, 11:] == 255).all()


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_unreadable_svs_raises_read_error_every_time(fixtures_dir, backend):
    path = fixtures_dir / "openslide/unreadable.svs"
    with open_slide(path, backend=backend) as slide:
        assert slide.dimensions == (16, 16)  # it opens
        for _ in range(2):  # and keeps failing cleanly, not with a latched other error
            with pytest.raises(SlideReadError, match=r"unreadable\.svs.*level 0"):
                slide.read_region((0, 0), 0, (16, 16))


def test_unopenable_tiff_names_supported_formats(fixtures_dir):
    with pytest.raises(SlideOpenError, match=r"unopenable\.tiff.*52479.*Supported: .*OME-TIFF"):
        open_slide(fixtures_dir / "openslide/unopenable.tiff")


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_one_corrupt_tile_does_not_poison_the_slide(fixtures_dir, tmp_path, backend):
    path = tmp_path / "boxes.tiff"
    shutil.copy(fixtures_dir / "openslide/boxes.tiff", path)
    path.chmod(0o644)
    with tifffile.TiffFile(path) as tif:  # level-0 tile 1 covers x 64..127, y 0..63
        offset, count = tif.pages[0].dataoffsets[1], tif.pages[0].databytecounts[1]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\x5a" * count
    path.write_bytes(bytes(data))
    with open_slide(path, backend=backend) as slide:
        with pytest.raises(SlideReadError, match="level 0"):
            slide.read_region((70, 0), 0, (32, 32))
        good = slide.read_region((200, 100), 0, (32, 32))  # a different tile still reads
        assert good.std() > 0
