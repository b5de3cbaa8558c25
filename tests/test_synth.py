"""synthesise_slides end to end: files, readers, annotation/mask agreement, determinism, CLI."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from pathda.annotations import BACH_CLASSES, rasterise, read_annotations
from pathda.cli import main
from pathda.errors import ConfigError
from pathda.synth import DOMAINS, SynthSlide, get_domain, make_montage, synthesise_slides
from pathda.synth.writer import pyramid_dimensions
from pathda.tiling.manifest import resolve_inputs

SIZE = (1280, 1024)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[SynthSlide]:
    out = tmp_path_factory.mktemp("synth")
    a = synthesise_slides(out, n=1, domain="lab-a", size=SIZE, seed=3, quiet=True)
    b = synthesise_slides(out, n=1, domain="lab-b", size=SIZE, seed=3, quiet=True)
    return a + b


def test_files_and_names(slides: list[SynthSlide]) -> None:
    a, b = slides
    assert a.image.name == "lab-a_00.tiff"
    assert b.image.name == "lab-b_00.tiff"
    assert a.annotation is not None
    assert a.annotation.name == "lab-a_00.xml"
    assert a.mask.name == "lab-a_00_mask.png"
    assert (a.domain, a.size, a.seed, a.mpp) == ("lab-a", SIZE, 3, 0.467)
    for s in slides:
        assert s.image.exists()
        assert s.mask.exists()
        assert s.sidecar.exists()
    assert not list(a.image.parent.glob(".*partial*"))  # no temporary files left


def test_sidecar_has_provenance_and_parameters(slides: list[SynthSlide]) -> None:
    record = json.loads(slides[1].sidecar.read_text())
    assert record["pathda_version"]
    assert record["mpp"] == pytest.approx(0.467)
    assert record["config"]["domain"]["name"] == "lab-b"
    assert record["config"]["seed"] == 3
    assert record["config"]["size"] == list(SIZE)
    assert sum(record["mask_class_fractions"]) == pytest.approx(1.0, abs=1e-3)


def test_openslide_reads_pyramid_and_mpp(slides: list[SynthSlide]) -> None:
    path = str(slides[0].image)
    assert openslide.OpenSlide.detect_format(path) == "generic-tiff"
    with openslide.OpenSlide(path) as osr:
        assert osr.level_dimensions == tuple(pyramid_dimensions(SIZE))
        assert osr.level_count == 2
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.467, abs=1e-3)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.467, abs=1e-3)
        region = np.asarray(osr.read_region((256, 128), 0, (300, 200)).convert("RGB"))
        low = np.asarray(osr.read_region((0, 0), 1, osr.level_dimensions[1]).convert("RGB"))
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(h, w, 3) for w, h in pyramid_dimensions(SIZE)]
        level0 = levels[0].asarray()
        assert "mpp=0.467" in tif.pages[0].description
        np.testing.assert_array_equal(levels[1].asarray(), low)
    np.testing.assert_array_equal(level0[128:328, 256:556], region)


def test_xml_labels_are_bach(slides: list[SynthSlide]) -> None:
    anns = read_annotations(slides[0].annotation)
    labels = {a.label for a in anns}
    assert labels == {"Benign", "Carcinoma in situ", "Carcinoma invasive"}
    assert {BACH_CLASSES.id_of(lbl) for lbl in labels} == {1, 2, 3}


def test_mask_equals_rasterised_xml(slides: list[SynthSlide]) -> None:
    for s in slides:
        mask = np.asarray(Image.open(s.mask))
        assert mask.dtype == np.uint8
        assert mask.shape == (SIZE[1] // 8, SIZE[0] // 8)
        again = rasterise(read_annotations(s.annotation), BACH_CLASSES, mask.shape, 8)
        np.testing.assert_array_equal(mask, again)
        assert set(np.unique(mask)) == {0, 1, 2, 3}


def test_same_seed_same_tissue_across_domains(slides: list[SynthSlide]) -> None:
    a, b = slides
    assert a.annotation.read_bytes() == b.annotation.read_bytes()
    np.testing.assert_array_equal(np.asarray(Image.open(a.mask)), np.asarray(Image.open(b.mask)))


def test_domains_differ_in_colour(slides: list[SynthSlide]) -> None:
    a, b = (tifffile.imread(s.image).astype(np.float64) for s in slides)
    # Glass: lab-b's is yellowish (blue well below red), lab-a's is neutral.
    glass_a, glass_b = a[:8, :8].reshape(-1, 3).mean(0), b[:8, :8].reshape(-1, 3).mean(0)
    assert glass_a[2] >= glass_a[0] - 2
    assert glass_b[0] - glass_b[2] > 15
    # Tissue colour shifts clearly on the same content.
    tissue = a.sum(axis=2) < 600
    assert np.abs(a[tissue].mean(0) - b[tissue].mean(0)).max() > 15


def test_deterministic_bytes(tmp_path) -> None:
    kwargs = dict(n=1, domain="scanner-c", size=(700, 600), seed=11, quiet=True)
    first = synthesise_slides(tmp_path / "1", **kwargs, workers=1)[0]
    second = synthesise_slides(tmp_path / "2", **kwargs, workers=2)[0]
    assert first.image.read_bytes() == second.image.read_bytes()
    assert first.mask.read_bytes() == second.mask.read_bytes()
    other = synthesise_slides(tmp_path / "3", **{**kwargs, "seed": 12})[0]
    assert other.image.read_bytes() != first.image.read_bytes()


def test_no_annotation_and_prefix(tmp_path) -> None:
    (s,) = synthesise_slides(tmp_path, n=1, size=(256, 256), annotate=False, prefix="x", quiet=True)
    assert s.annotation is None
    assert s.image.name == "x_00.tiff"
    assert s.mask.exists()
    assert not list(tmp_path.glob("*.xml"))


def test_pathda_tiles_its_own_unannotated_output(tmp_path) -> None:
    """The provenance sidecar is ``.synth.json``, never taken for the slide's annotation."""
    (s,) = synthesise_slides(tmp_path, n=1, size=(256, 256), annotate=False, quiet=True)
    assert s.sidecar.name == "lab-a_00.synth.json"
    [spec] = resolve_inputs([s.image])
    assert (spec.annotation, spec.domain) == (None, "target")


def test_unknown_domain_lists_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"lab-a.*lab-b.*scanner-c"):
        synthesise_slides(tmp_path, domain="lab-z")
    with pytest.raises(ConfigError):
        get_domain("nope")
    with pytest.raises(ConfigError, match="choose one of"):
        DOMAINS["nope"]
    assert {"lab-a", "lab-b", "scanner-c"} <= set(DOMAINS)


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"size": (10, 10)}, {"mpp": -1.0}, {"tile_size": 100}, {"mask_downsample": 0}],
)
def test_bad_arguments(tmp_path, kwargs) -> None:
    with pytest.raises(ConfigError):
        synthesise_slides(tmp_path, quiet=True, **kwargs)


def test_montage(slides: list[SynthSlide], tmp_path) -> None:
    out = make_montage(slides, tmp_path / "m.png", thumb_px=200, crop_px=150)
    img = Image.open(out)
    assert img.width >= 2 * 200
    assert img.height >= 160 + 150  # 200 x 160 thumbnails of 1280 x 1024 slides
    assert np.asarray(img).std() > 10  # not blank


def test_cli_writes_slides_per_domain(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "synth",
                str(tmp_path),
                "--n",
                "1",
                "--domain",
                "lab-a,lab-b",
                "--size",
                "320x256",
                "--slide-mpp",
                "0.5",
                "--quiet",
                "--montage",
                str(tmp_path / "m.png"),
            ]
        )
    assert exc.value.code == 0
    from pathda.slide import open_slide

    with open_slide(tmp_path / "lab-a_00.tiff") as slide:
        assert slide.require_mpp() == pytest.approx(0.5)
    names = sorted(p.name for p in tmp_path.glob("*.tiff"))
    assert names == ["lab-a_00.tiff", "lab-b_00.tiff"]
    assert (tmp_path / "m.png").exists()
    with openslide.OpenSlide(str(tmp_path / "lab-b_00.tiff")) as osr:
        assert osr.dimensions == (320, 256)


def test_cli_bad_domain_exits_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path), "--domain", "nope", "--quiet"])
    assert exc.value.code == 2
    assert "unknown synthetic domain" in capsys.readouterr().err


def test_cli_argument_parsing() -> None:
    from pathda.cli.synth import parse_domains, parse_size

    assert parse_size("2048") == (2048, 2048)
    assert parse_size("2048x1536") == (2048, 1536)
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_size("big")
    assert parse_domains(["lab-a,lab-b", "lab-a", " scanner-c "]) == ["lab-a", "lab-b", "scanner-c"]
