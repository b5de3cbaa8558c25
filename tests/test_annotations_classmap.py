"""Class maps and the Annotation model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathda.annotations import (
    BACH_CLASSES,
    Annotation,
    ClassMap,
    integer_bounds,
    parse_class_aliases,
)
from pathda.errors import AnnotationError, ConfigError, UnknownClassError


@pytest.mark.parametrize(
    ("label", "cid"),
    [
        ("Normal", 0),
        ("Benign", 1),
        ("Carcinoma in situ", 2),
        ("carcinoma  IN-situ", 2),
        ("insitu", 2),
        ("In_Situ", 2),
        ("Carcinoma invasive", 3),
        ("invasive carcinoma", 3),
        ("  Invasive ", 3),
    ],
)
def test_bach_labels(label, cid):
    assert BACH_CLASSES.id_of(label) == cid


def test_unknown_class_message_lists_names_and_fix():
    with pytest.raises(UnknownClassError) as info:
        BACH_CLASSES.id_of("Tumor", source="A01.xml")
    msg = str(info.value)
    assert "A01.xml" in msg
    assert "normal, benign, in situ, invasive" in msg
    assert "'Tumor=CLASS'" in msg
    assert "with_aliases" in msg
    assert info.value.label == "Tumor"


def test_with_aliases_by_name_and_id():
    cm = BACH_CLASSES.with_aliases({"Tumor": "invasive", "DCIS-like": 2, "Stroma": "0"})
    assert cm.id_of("tumor") == 3
    assert cm.id_of("dcis like") == 2
    assert cm.id_of("stroma") == 0
    with pytest.raises(UnknownClassError):
        BACH_CLASSES.id_of("Tumor")  # the original is unchanged
    with pytest.raises(UnknownClassError):
        BACH_CLASSES.with_aliases({"x": "nonsense"})
    with pytest.raises(ConfigError):
        BACH_CLASSES.with_aliases({"x": 9})
    with pytest.raises(ConfigError, match="both"):
        BACH_CLASSES.with_aliases({"Benign": "invasive"})


def test_with_aliases_redefines_an_alias():
    assert BACH_CLASSES.with_aliases({"dcis": "invasive"}).id_of("DCIS") == 3


def test_dict_round_trip_is_json_serialisable():
    cm = BACH_CLASSES.with_aliases({"Tumor": "invasive"})
    data = json.loads(json.dumps(cm.to_dict()))
    assert ClassMap.from_dict(data) == cm
    with pytest.raises(ConfigError):
        ClassMap.from_dict({"names": ["a"]})


def test_validation():
    with pytest.raises(ConfigError, match="colour"):
        ClassMap(("a", "b"), ((0, 0, 0),))
    with pytest.raises(ConfigError, match="differ"):
        ClassMap(("a", "A"), ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ConfigError, match="both"):
        ClassMap(("a", "b"), ((0, 0, 0), (1, 1, 1)), aliases={"b": 0})
    cm = ClassMap(("bg", "fg"), ((0, 0, 0), (255, 255, 255)))
    assert cm.severity == (0, 1)
    assert len(cm) == 2


def test_parse_class_aliases():
    assert parse_class_aliases(["Tumor=invasive", " DCIS = in situ "]) == {
        "Tumor": "invasive",
        "DCIS": "in situ",
    }
    with pytest.raises(ConfigError, match="NAME=CLASS"):
        parse_class_aliases(["Tumor"])


def test_annotation_normalises_rings():
    ann = Annotation("benign", [(0, 0), (4, 0), (4, 4), (0, 0)], holes=([[1, 1], [2, 1], [2, 2]],))
    assert ann.exterior.shape == (3, 2)
    assert ann.exterior.dtype == np.float64
    assert not ann.exterior.flags.writeable
    assert ann.bounds == (0.0, 0.0, 4.0, 4.0)
    assert ann.same_geometry(Annotation("benign", [(0, 0), (4, 0), (4, 4)], ann.holes))
    assert not ann.same_geometry(ann.with_label("invasive"))


@pytest.mark.parametrize(
    "points", [[(0, 0), (1, 1)], [(0, 0), (1, 1), (0, 0)], [(0, 0, 0)] * 3, [(0, np.nan)] * 3]
)
def test_annotation_rejects_degenerate_rings(points):
    with pytest.raises(AnnotationError):
        Annotation("benign", points)


def test_integer_bounds_encloses_float_bounds():
    assert integer_bounds((0.5, -1.5, 2.2, 3.0)) == (0, -2, 3, 3)
