"""Input resolution: paths, globs, CSV manifests, annotation lookup, duplicates."""

from __future__ import annotations

import pytest

from pathda.errors import ConfigError, InputError
from pathda.tiling.manifest import SlideSpec, resolve_inputs


@pytest.fixture
def files(tmp_path):
    for name in ["a.tif", "b.tif", "c.svs", "a.xml", "notes.txt"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "b.geojson").write_text("{}")
    return tmp_path


def test_paths_and_globs_find_sibling_annotations(files):
    specs = resolve_inputs([str(files / "*.tif"), files / "c.svs"], split="val")
    assert [s.slide.name for s in specs] == ["a.tif", "b.tif", "c.svs"]
    assert specs[0] == SlideSpec(files / "a.tif", files / "a.xml", "source", "val")
    assert specs[1].annotation is None
    assert specs[1].domain == "target"


def test_annotation_dir_and_domain(files):
    with pytest.warns(UserWarning, match="tiled as unlabelled"):
        specs = resolve_inputs([files / "a.tif", files / "b.tif"], files / "ann", domain="lab1")
    assert specs[0].annotation is None
    assert specs[1].annotation == files / "ann" / "b.geojson"
    assert {s.domain for s in specs} == {"lab1"}


def test_manifest_resolves_relative_to_its_folder(files):
    sub = files / "lists"
    sub.mkdir()
    (sub / "m.csv").write_text(
        "slide,annotation,domain,split\n../a.tif,../a.xml,hosp1,train\n../b.tif,,,test\n"
    )
    specs = resolve_inputs([sub / "m.csv"])
    assert specs[0] == SlideSpec(files / "a.tif", files / "a.xml", "hosp1", "train")
    assert specs[1] == SlideSpec(files / "b.tif", None, "target", "test")


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("path\na.tif\n", "'slide' column"),
        ("slide,colour\na.tif,red\n", "unknown manifest column"),
        ("slide\nmissing.tif\n", "not found"),
        ("slide,annotation\na.tif,missing.xml\n", "annotation .* not found"),
        ("slide\n", "lists no slides"),
    ],
)
def test_bad_manifests(files, csv_text, message):
    (files / "m.csv").write_text(csv_text)
    with pytest.raises(InputError, match=message):
        resolve_inputs([files / "m.csv"])


def test_missing_inputs_and_duplicates(files):
    with pytest.raises(InputError, match="slide not found"):
        resolve_inputs([files / "nope.tif"])
    with pytest.raises(InputError, match="matches no files"):
        resolve_inputs([str(files / "*.ndpi")])
    with pytest.raises(InputError, match="is a folder"):
        resolve_inputs([files / "ann"])
    with pytest.raises(ConfigError, match="given twice"):
        resolve_inputs([files / "a.tif", str(files / "a.*f")])
    with pytest.raises(InputError, match="annotation folder not found"):
        resolve_inputs([files / "a.tif"], files / "nothing")
