"""tifffile backend on TIFFs written here: OME SubIFD pyramids, strips, pages, alpha, damage."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathda.errors import SlideOpenError, SlideReadError
from pathda.slide import open_slide
from pathda.slide.tifffile_backend import (
    TiffFileSlide,
    mpp_from_ome_xml,
    mpp_from_tiff_resolution,
)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random RGB, so JPEG tests see image-like content."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    image = Image.fromarray(coarse.astype(np.uint8)).resize((width, height))
    return np.asarray(image)


def _pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(image).reduce(2**i)) for i in range(levels)]


def _write_subifd_pyramid(path: Path, levels: list[np.ndarray], ome: bool, **first) -> None:
    with tifffile.TiffWriter(path, ome=ome) as tif:
        for i, level in enumerate(levels):
            extra = {"subifds": len(levels) - 1, **first} if i == 0 else {"subfiletype": 1}
            tif.write(level, tile=(64, 64), compression="zlib", photometric="rgb", **extra)


def test_ome_tiff_pyramid_in_subifds(tmp_path):
    image = _image(300, 400)
    levels = _pyramid(image, 3)
    path = tmp_path / "qupath_like.ome.tif"
    meta = {"axes": "YXS", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm"}
    meta |= {"PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "µm"}
    _write_subifd_pyramid(path, levels, ome=True, metadata=meta)
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.format == "ome-tiff"
        assert slide.level_dimensions == ((400, 300), (200, 150), (100, 75))
        assert slide.level_downsamples == pytest.approx((1, 2, 4))
        assert slide.mpp == pytest.approx((0.5, 0.5))
        # Lossless tiles: reads are exact crops of what was written, across tile seams.
        np.testing.assert_array_equal(
            slide.read_region((50, 30), 0, (100, 90)), image[30:120, 50:150]
        )
        np.testing.assert_array_equal(
            slide.read_region((100, 60), 1, (90, 70)), levels[1][30:100, 50:140]
        )
        thumb = slide.thumbnail(max_size=100)
        assert thumb.shape == (75, 100, 3)


def test_plain_subifd_pyramid_with_resolution(tmp_path):
    levels = _pyramid(_image(200, 256), 2)
    path = tmp_path / "pyramid.tif"
    _write_subifd_pyramid(
        path, levels, ome=False, resolution=(40000, 40000), resolutionunit="CENTIMETER"
    )
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.level_count == 2
        assert slide.mpp == pytest.approx((0.25, 0.25))


def test_stripped_tiff_with_successive_page_levels(tmp_path):
    levels = _pyramid(_image(130, 90), 2)
    path = tmp_path / "strips.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            levels[0],
            rowsperstrip=16,
            photometric="rgb",
            resolution=(100000, 100000),
            resolutionunit="INCH",
        )
        tif.write(levels[1], rowsperstrip=16, photometric="rgb", subfiletype=1)
    with open_slide(path) as slide:  # OpenSlide cannot read strips: tifffile is picked
        assert slide.backend == "tifffile"
        assert slide.format == "tiff"
        assert slide.level_dimensions == ((90, 130), (45, 65))
        assert slide.mpp == pytest.approx((0.254, 0.254))
        np.testing.assert_array_equal(
            slide.read_region((10, 20), 0, (70, 100)), levels[0][20:120, 10:80]
        )
        region = slide.read_region((80, 120), 0, (20, 20))  # runs off the bottom-right corner
        np.testing.assert_array_equal(region[:10, :10], levels[0][120:, 80:])
        assert (region[10:] == 255).all()
        assert (region[:, 10:] == 255).all()


def test_grey_and_rgba_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tifffile.imwrite(tmp_path / "grey.tif", grey, photometric="minisblack", tile=(16, 16))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, 3] = 255
    tifffile.imwrite(
        tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"], tile=(16, 16)
    )
    with TiffFileSlide(tmp_path / "grey.tif") as slide:
        out = slide.read_region((0, 0), 0, (8, 8))
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    with TiffFileSlide(tmp_path / "rgba.tif") as slide:
        out = slide.read_region((0, 0), 0, (8, 8))
        assert (out[:4] == 0).all()
        assert (out[4:] == 255).all()  # transparent: outside the tissue, white


def test_small_read_decodes_only_the_tiles_it_touches(tmp_path, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, _image(512, 512), tile=(64, 64), compression="zlib", photometric="rgb")
    decoded = []
    original = TiffFileSlide._decode

    def counting(page, index, data, count):
        decoded.append(index)
        return original(page, index, data, count)

    monkeypatch.setattr(TiffFileSlide, "_decode", staticmethod(counting))
    with TiffFileSlide(path) as slide:
        slide.read_region((10, 10), 0, (20, 20))
        assert decoded == [0]
        slide.read_region((60, 60), 0, (10, 10))  # crosses into 3 new tiles; tile 0 is cached
        assert sorted(decoded) == [0, 1, 8, 9]


def test_threads_can_share_a_slide(tmp_path):
    image = _image(256, 256)
    path = tmp_path / "shared.tif"
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib", photometric="rgb")
    spots = [(x, y) for x in range(0, 200, 23) for y in range(0, 200, 31)]
    with TiffFileSlide(path) as slide, ThreadPoolExecutor(4) as pool:
        regions = list(pool.map(lambda xy: slide.read_region(xy, 0, (40, 40)), spots))
    for (x, y), region in zip(spots, regions, strict=True):
        np.testing.assert_array_equal(region, image[y : y + 40, x : x + 40])


def _jpeg_tiff_with_damaged_tile(path: Path, damage: str) -> np.ndarray:
    image = _image(128, 128)
    tifffile.imwrite(path, image, tile=(64, 64), compression="jpeg", photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(path.read_bytes())
    if damage == "zeroed tail":  # a half-written tile: libjpeg decodes zeros as grey
        data[offset + count // 2 : offset + count] = bytes(count - count // 2)
    else:  # file cut short inside the last tile
        last = int(np.argmax(tifffile.TiffFile(path).pages[0].dataoffsets))
        with tifffile.TiffFile(path) as tif:
            end = tif.pages[0].dataoffsets[last] + tif.pages[0].databytecounts[last] // 2
        data = data[:end]
    path.write_bytes(bytes(data))
    return image


@pytest.mark.parametrize("damage", ["zeroed tail", "cut file"])
def test_damaged_jpeg_tiles_raise_instead_of_returning_grey(tmp_path, damage):
    path = tmp_path / "damaged.tif"
    _jpeg_tiff_with_damaged_tile(path, damage)
    with (
        TiffFileSlide(path) as slide,
        pytest.raises(SlideReadError, match=r"damaged\.tif.*level 0"),
    ):
        slide.read_region((0, 0), 0, (128, 128))


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.zeros((3, 16, 16), np.uint8), {"ome": True, "metadata": {"axes": "CYX"}}, "planes"),
        (np.zeros((16, 16, 3), np.uint16), {"photometric": "rgb"}, "8-bit"),
        (
            np.zeros((16, 16, 2), np.uint8),
            {"photometric": "minisblack", "planarconfig": "contig"},
            "samples",
        ),
    ],
)
def test_unsupported_tiffs_fail_at_open(tmp_path, data, kwargs, message):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, data, **kwargs)
    with pytest.raises(SlideOpenError, match=message):
        TiffFileSlide(path)


def test_not_a_tiff(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("hello")
    with pytest.raises(SlideOpenError, match=r"notes\.tif.*not a readable TIFF"):
        TiffFileSlide(path)


@pytest.mark.parametrize(
    ("xres", "yres", "unit", "expected"),
    [
        (40000.0, 40000.0, "centimeter", (0.25, 0.25)),
        (40000.0, 20000.0, 3, (0.25, 0.5)),
        (101600.0, 101600.0, 2, (0.25, 0.25)),
        (72.0, 72.0, 2, (352.7778, 352.7778)),  # the writers' default: kept, with a warning
        (28.346457, 28.346457, "centimeter", (352.7778, 352.7778)),  # 72 dpi in cm (boxes.tiff)
        (40000.0, 40000.0, 1, None),  # unit NONE
        (0.0, 0.0, 3, None),
    ],
)
@pytest.mark.filterwarnings("ignore:TIFF resolution is 72 dpi")
def test_mpp_from_tiff_resolution(xres, yres, unit, expected):
    result = mpp_from_tiff_resolution(xres, yres, unit)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ('PhysicalSizeX="0.25" PhysicalSizeY="0.5"', (0.25, 0.5)),
        ('PhysicalSizeX="250" PhysicalSizeXUnit="nm" PhysicalSizeY="0.25"', (0.25, 0.25)),
        (
            'PhysicalSizeX="0.001" PhysicalSizeXUnit="mm" PhysicalSizeY="1" PhysicalSizeYUnit="µm"',
            (1.0, 1.0),
        ),
        ('PhysicalSizeX="0.25"', None),
        ('PhysicalSizeX="0.25" PhysicalSizeY="0.25" PhysicalSizeYUnit="parsec"', None),
    ],
)
def test_mpp_from_ome_xml(attributes, expected):
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        f'<Pixels ID="Pixels:0" {attributes}/></Image></OME>'
    )
    result = mpp_from_ome_xml(xml)
    assert result == (None if expected is None else pytest.approx(expected))
