"""Reading and writing ImageScope XML, ASAP XML and QuPath GeoJSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import shapely

from pathda.annotations import (
    BACH_CLASSES,
    Annotation,
    rasterise,
    read_annotations,
    write_asap_xml,
    write_geojson,
    write_imagescope_xml,
)
from pathda.errors import AnnotationError, UnknownClassError

BACH_XML = """<?xml version="1.0"?>
<Annotations MicronsPerPixel="0.252100">
<Annotation Id="1" Name="" ReadOnly="0" Type="4" LineColor="65280" Visible="1">
  <Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>
  <Regions>
    <RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
    </RegionAttributeHeaders>
    <Region Id="1" Type="0" Text="Benign" NegativeROA="0">
      <Attributes/>
      <Vertices>
        <Vertex X="10.5" Y="10" Z="0"/><Vertex X="60" Y="10.25" Z="0"/>
        <Vertex X="60" Y="40" Z="0"/><Vertex X="10.5" Y="40" Z="0"/>
      </Vertices>
    </Region>
    <Region Id="2" Type="0" Text="Carcinoma in situ" NegativeROA="0">
      <Attributes/>
      <Vertices>
        <Vertex X="100" Y="100"/><Vertex X="200" Y="100"/>
        <Vertex X="200" Y="200"/><Vertex X="100" Y="200"/>
      </Vertices>
    </Region>
    <Region Id="3" Type="0" Text="" NegativeROA="1">
      <Attributes/>
      <Vertices>
        <Vertex X="120" Y="120"/><Vertex X="150" Y="120"/><Vertex X="150" Y="150"/>
      </Vertices>
    </Region>
    <Region Id="4" Type="0" Text="ignored">
      <Attributes><Attribute Name="Class" Id="1" Value="Carcinoma invasive"/></Attributes>
      <Vertices>
        <Vertex X="300" Y="10"/><Vertex X="380" Y="10"/><Vertex X="340" Y="90"/>
      </Vertices>
    </Region>
  </Regions>
  <Plots/>
</Annotation>
<Annotation Id="2" Name="Benign" Type="4">
  <Regions>
    <Region Id="5" Type="2" Text="">
      <Vertices><Vertex X="400" Y="300"/><Vertex X="440" Y="320"/></Vertices>
    </Region>
  </Regions>
</Annotation>
<Annotation Id="3" Name="">
  <Attributes><Attribute Name="Description" Value="Carcinoma invasive"/></Attributes>
  <Regions>
    <Region Id="6" Text="">
      <Vertices>
        <Vertex X="0" Y="300"/><Vertex X="50" Y="300"/><Vertex X="50" Y="350"/>
      </Vertices>
    </Region>
  </Regions>
</Annotation>
</Annotations>
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def canonical(annotations):
    """Class ids and rounded rings, order-independent, for comparing round trips."""
    return sorted(
        (
            BACH_CLASSES.id_of(a.label),
            np.round(a.exterior, 6).tobytes(),
            tuple(np.round(h, 6).tobytes() for h in a.holes),
        )
        for a in annotations
    )


def test_read_bach_imagescope(tmp_path):
    anns = read_annotations(write(tmp_path, "A01.xml", BACH_XML))
    assert [BACH_CLASSES.id_of(a.label) for a in anns] == [1, 2, 3, 1, 3]
    benign, in_situ, invasive, ellipse, layer_labelled = anns
    assert benign.exterior[0].tolist() == [10.5, 10.0]
    assert benign.exterior[1].tolist() == [60.0, 10.25]
    assert len(in_situ.holes) == 1
    assert in_situ.holes[0].tolist() == [[120, 120], [150, 120], [150, 150]]
    assert invasive.label == "Carcinoma invasive"  # Attribute value beats Region@Text
    assert len(ellipse.exterior) == 64
    assert ellipse.bounds == pytest.approx((400, 300, 440, 320))
    assert layer_labelled.label == "Carcinoma invasive"


def test_negative_region_is_a_hole_on_the_raster(tmp_path):
    anns = read_annotations(write(tmp_path, "A01.xml", BACH_XML))
    out = rasterise(anns, BACH_CLASSES, (100, 100), origin=(100, 100))
    # Right triangle with legs of 30 px; centres on its diagonal lie on a left edge: inside.
    hole_pixels = 30 * 31 // 2
    assert (out == 2).sum() == 100 * 100 - hole_pixels


def test_round_trip_imagescope_geojson_imagescope_asap(tmp_path):
    original = read_annotations(write(tmp_path, "A01.xml", BACH_XML))
    write_geojson(tmp_path / "a.geojson", original, BACH_CLASSES)
    via_geojson = read_annotations(tmp_path / "a.geojson")
    write_imagescope_xml(tmp_path / "b.xml", via_geojson, BACH_CLASSES, mpp=0.2521)
    via_imagescope = read_annotations(tmp_path / "b.xml")
    write_asap_xml(tmp_path / "c.xml", via_imagescope, BACH_CLASSES)
    via_asap = read_annotations(tmp_path / "c.xml")
    for anns in (via_geojson, via_imagescope, via_asap):
        assert canonical(anns) == canonical(original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A01.xml", "a.geojson", "b.xml", "c.xml"]


def test_written_geojson_is_qupath_style_and_valid(tmp_path):
    anns = read_annotations(write(tmp_path, "A01.xml", BACH_XML))
    write_geojson(tmp_path / "a.geojson", anns, properties={"source": "A01"})
    data = json.loads((tmp_path / "a.geojson").read_text())
    assert data["type"] == "FeatureCollection"
    ids = {f["id"] for f in data["features"]}
    assert len(ids) == len(anns)
    for feature in data["features"]:
        props = feature["properties"]
        assert props["objectType"] == "annotation"
        assert props["isLocked"] is False
        assert props["source"] == "A01"
        cid = BACH_CLASSES.id_of(props["classification"]["name"])
        assert props["classification"]["color"] == list(BACH_CLASSES.colors[cid])
        rings = feature["geometry"]["coordinates"]
        assert all(r[0] == r[-1] for r in rings)
        assert shapely.geometry.shape(feature["geometry"]).is_valid


def test_per_feature_properties_length_checked(tmp_path):
    ann = Annotation("benign", [(0, 0), (1, 0), (1, 1)])
    with pytest.raises(AnnotationError, match="2 property sets"):
        write_geojson(tmp_path / "x.geojson", [ann], properties=[{}, {}])


def test_written_imagescope_layout(tmp_path):
    ann = Annotation("Carcinoma invasive", [(0, 0), (10, 0), (10, 10)], ([(1, 1), (2, 1), (2, 2)],))
    write_imagescope_xml(tmp_path / "x.xml", [ann], mpp=0.5)
    root = ET.parse(tmp_path / "x.xml").getroot()
    assert root.get("MicronsPerPixel") == "0.5"
    layer = root.find("Annotation")
    assert layer.find("Attributes/Attribute").attrib["Value"] == "invasive"
    regions = layer.findall("Regions/Region")
    assert [r.get("Text") for r in regions] == ["invasive", "invasive"]
    assert [r.get("NegativeROA") for r in regions] == ["0", "1"]
    assert float(regions[0].get("Area")) == 50
    assert float(regions[0].get("AreaMicrons")) == 12.5


def test_writer_rejects_unknown_class(tmp_path):
    ann = Annotation("Tumour", [(0, 0), (1, 0), (1, 1)])
    for writer in (write_geojson, write_imagescope_xml, write_asap_xml):
        with pytest.raises(UnknownClassError, match="Tumour"):
            writer(tmp_path / "x.out", [ann])
    assert list(tmp_path.iterdir()) == []


def feature(geometry, classification):
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"classification": classification},
    }


SQUARE = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], [[2, 2], [4, 2], [4, 4], [2, 2]]]


def test_geojson_variants(tmp_path):
    poly = {"type": "Polygon", "coordinates": SQUARE}
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE, [SQUARE[0]]]}
    qupath02 = feature(poly, {"name": "Benign", "colorRGB": -16711936})
    as_string = feature(multi, "Carcinoma invasive")
    (tmp_path / "list.json").write_text(json.dumps([qupath02, as_string]))
    (tmp_path / "one.geojson").write_text(json.dumps(qupath02))
    anns = read_annotations(tmp_path / "list.json")
    assert [a.label for a in anns] == ["Benign", "Carcinoma invasive", "Carcinoma invasive"]
    assert [len(a.holes) for a in anns] == [1, 1, 0]
    assert anns[0].exterior.shape == (4, 2)
    assert len(read_annotations(tmp_path / "one.geojson")) == 1


def test_geojson_points_and_unclassified_are_skipped_with_warning(tmp_path):
    data = {
        "type": "FeatureCollection",
        "features": [
            feature({"type": "Point", "coordinates": [1, 2]}, "Benign"),
            feature({"type": "Polygon", "coordinates": SQUARE}, None),
            feature({"type": "Polygon", "coordinates": SQUARE}, {"name": "In situ"}),
        ],
    }
    path = write(tmp_path, "x.geojson", json.dumps(data))
    with pytest.warns(UserWarning, match=r"x\.geojson") as record:
        anns = read_annotations(path)
    assert len(record) == 2
    assert [a.label for a in anns] == ["In situ"]


ASAP_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="invasive" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="2" X="10" Y="10"/>
        <Coordinate Order="0" X="0" Y="0"/>
        <Coordinate Order="1" X="10" Y="0"/>
        <Coordinate Order="3" X="0" Y="10"/>
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 1" Type="Rectangle" PartOfGroup="DCIS" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="20" Y="0"/><Coordinate Order="1" X="30" Y="0"/>
        <Coordinate Order="2" X="30" Y="5"/><Coordinate Order="3" X="20" Y="5"/>
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 2" Type="Dot" PartOfGroup="invasive">
      <Coordinates><Coordinate Order="0" X="1" Y="1"/></Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="tumour" PartOfGroup="None" Color="#FF0000"><Attributes/></Group>
    <Group Name="invasive" PartOfGroup="tumour" Color="#FF0000"><Attributes/></Group>
    <Group Name="DCIS" PartOfGroup="tumour" Color="#FF0000"><Attributes/></Group>
  </AnnotationGroups>
</ASAP_Annotations>
"""


def test_read_asap(tmp_path):
    with pytest.warns(UserWarning, match="Dot"):
        anns = read_annotations(write(tmp_path, "a.xml", ASAP_XML))
    assert [a.label for a in anns] == ["invasive", "DCIS"]
    assert anns[0].exterior.tolist() == [[0, 0], [10, 0], [10, 10], [0, 10]]
    assert [BACH_CLASSES.id_of(a.label) for a in anns] == [3, 2]


@pytest.mark.parametrize(
    "text",
    ["", "   \n", "<Annotations/>", "<Annotations MicronsPerPixel='0.25'></Annotations>"],
)
def test_empty_files_mean_no_annotations(tmp_path, text):
    assert read_annotations(write(tmp_path, "e.xml", text)) == []


def test_empty_geojson(tmp_path):
    path = write(tmp_path, "e.geojson", '{"type": "FeatureCollection", "features": []}')
    assert read_annotations(path) == []


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("bad.xml", "this is not xml", "not valid XML"),
        ("bad.geojson", "{not json", "not valid JSON"),
        ("bad.xml", "<Slides/>", "root is <Slides>"),
        ("bad.json", '{"a": 1}', "not GeoJSON"),
        ("bad.xml", "<Annotations><Annotation Id='7'/></Annotations>", "Id=7 has no <Regions>"),
        (
            "bad.xml",
            "<Annotations><Annotation><Regions><Region Id='3' Text='Benign'/></Regions>"
            "</Annotation></Annotations>",
            "Region Id=3 has no <Vertices>",
        ),
        (
            "bad.xml",
            "<Annotations><Annotation><Regions><Region Text='Benign'><Vertices>"
            "<Vertex X='1' Y='1'/><Vertex X='2' Y='2'/></Vertices></Region></Regions>"
            "</Annotation></Annotations>",
            "at least 3 vertices",
        ),
        (
            "bad.xml",
            "<Annotations><Annotation><Regions><Region Text='Benign'><Vertices>"
            "<Vertex X='a' Y='1'/></Vertices></Region></Regions></Annotation></Annotations>",
            "not a number",
        ),
        (
            "bad.geojson",
            json.dumps([feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "x")]),
            "at least 3 vertices",
        ),
        ("bad.txt", "whatever", "unsupported annotation file type"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, name, text, match):
    path = write(tmp_path, name, text)
    with pytest.raises(AnnotationError, match=match) as info:
        read_annotations(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "nope.xml")


def region(text: str, points, negative: str = "0") -> str:
    vertices = "".join(f"<Vertex X='{x}' Y='{y}'/>" for x, y in points)
    return (
        f"<Region Text='{text}' NegativeROA='{negative}'><Vertices>{vertices}</Vertices></Region>"
    )


def layer(*regions: str, name: str = "") -> str:
    return f"<Annotation Name='{name}'><Regions>{''.join(regions)}</Regions></Annotation>"


def test_imagescope_negative_region_in_another_layer_and_orphans(tmp_path):
    big = [(0, 0), (100, 0), (100, 100), (0, 100)]
    small = [(10, 10), (20, 10), (20, 20), (10, 20)]
    inner = [(12, 12), (14, 12), (14, 14)]
    far = [(500, 500), (510, 500), (510, 510)]
    xml = (
        "<Annotations>"
        + layer(region("Benign", big), region("Invasive", small))
        + layer(region("", inner, "1"), region("", far, "1"))
        + "</Annotations>"
    )
    with pytest.warns(UserWarning, match=r"x\.xml: 1 negative"):
        anns = read_annotations(write(tmp_path, "x.xml", xml))
    assert [len(a.holes) for a in anns] == [0, 1]  # the smallest enclosing region gets it


def test_imagescope_unlabelled_region_is_skipped_with_warning(tmp_path):
    xml = "<Annotations>" + layer(region("", [(0, 0), (1, 0), (1, 1)])) + "</Annotations>"
    with pytest.warns(UserWarning, match="no label"):
        assert read_annotations(write(tmp_path, "x.xml", xml)) == []


def test_xml_encoding_declaration_is_honoured(tmp_path):
    xml = "<?xml version='1.0' encoding='ISO-8859-1'?><Annotations>" + layer(
        region("Bénin", [(0, 0), (1, 0), (1, 1)])
    )
    path = tmp_path / "x.xml"
    path.write_bytes((xml + "</Annotations>").encode("latin-1"))
    assert read_annotations(path)[0].label == "Bénin"
