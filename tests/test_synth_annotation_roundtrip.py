"""Acceptance: synthetic XML -> GeoJSON -> mask equals the generator's ground-truth mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pathda.annotations import BACH_CLASSES, rasterise, read_annotations, write_geojson
from pathda.synth import synthesise_slides


def test_xml_to_geojson_to_mask_is_pixel_exact(tmp_path):
    (slide,) = synthesise_slides(
        tmp_path, n=1, domain="lab-a", size=(1536, 1024), seed=4, mask_downsample=8, quiet=True
    )
    truth = np.asarray(Image.open(slide.mask))
    assert set(np.unique(truth)) > {0}  # the slide has lesions to compare
    from_xml = read_annotations(slide.annotation)
    geojson = tmp_path / "roundtrip.geojson"
    write_geojson(geojson, from_xml, BACH_CLASSES)
    from_geojson = read_annotations(geojson)
    assert len(from_geojson) == len(from_xml)
    mask = rasterise(from_geojson, BACH_CLASSES, truth.shape, downsample=8)
    # Same polygons, same pixel-centre rule: no tolerance needed, not even at edges.
    np.testing.assert_array_equal(mask, truth)
