"""Tile rendering: seamless tiles, class-specific morphology, domain colour shift."""

from __future__ import annotations

import numpy as np
import pytest

from pathda.annotations import BACH_CLASSES, rasterise
from pathda.synth import get_domain, make_layout
from pathda.synth.domains import with_changes
from pathda.synth.render import render_tile, tissue_optical_density
from pathda.synth.scene import build_scene

SIZE = (1536, 1536)


@pytest.fixture(scope="module")
def layout():
    return make_layout(SIZE, 0.467, seed=5)


def _lesion_centre(layout, label: str) -> tuple[int, int]:
    ann = next(a for a in layout.lesions if a.label == label)
    x0, y0, x1, y1 = ann.bounds
    return int((x0 + x1) / 2), int((y0 + y1) / 2)


@pytest.mark.parametrize("domain", ["lab-a", "lab-b"])
def test_tiles_are_seamless(layout, domain: str) -> None:
    scene = build_scene(layout, get_domain(domain), seed=5)
    cx, cy = _lesion_centre(layout, "Carcinoma in situ")
    x0, y0 = cx - 128, cy - 128
    whole = render_tile(scene, x0, y0, 256, 256)
    parts = np.zeros_like(whole)
    for dy in (0, 128):
        for dx in (0, 128):
            parts[dy : dy + 128, dx : dx + 128] = render_tile(scene, x0 + dx, y0 + dy, 128, 128)
    np.testing.assert_array_equal(whole, parts)
    assert whole.std() > 10  # there is tissue in it


def test_tiles_are_seamless_at_other_resolution() -> None:
    layout = make_layout((3000, 3000), 0.25, seed=9)
    scene = build_scene(layout, get_domain("scanner-c"), seed=9)
    cx, cy = _lesion_centre(layout, "Carcinoma invasive")
    whole = render_tile(scene, cx - 96, cy - 96, 192, 192)
    parts = np.concatenate(
        [render_tile(scene, cx - 96, cy - 96 + dy, 192, 64) for dy in (0, 64, 128)], axis=0
    )
    np.testing.assert_array_equal(whole, parts)


def test_outside_slide_is_glass(layout) -> None:
    preset = get_domain("lab-b")
    tile = render_tile(build_scene(layout, preset, 5), -600, -600, 64, 64).astype(float)
    glass = np.array(preset.background_rgb)
    expected = glass.mean() + preset.saturation * (glass - glass.mean()) + preset.brightness
    assert np.abs(tile.mean((0, 1)) - expected).max() < 1.5
    assert 1.5 < tile.std((0, 1)).mean() < 2 * preset.noise_sigma


def _class_od(layout, seed: int = 5):
    """Hematoxylin/eosin OD and labels of the whole (small) slide, from the renderer."""
    scene = build_scene(layout, get_domain("lab-a"), seed)
    w, h = SIZE
    od_h, od_e = tissue_optical_density(scene, (0, 0, w, h))
    labels = rasterise(list(layout.lesions), BACH_CLASSES, (h, w))
    tissue = (od_h + od_e) > 0.08
    return od_h, od_e, labels, tissue


def test_nuclear_density_increases_with_grade(layout) -> None:
    od_h, _, labels, tissue = _class_od(layout)
    frac = [float((od_h[(labels == c) & tissue] > 0.6).mean()) for c in range(4)]
    normal, benign, in_situ, invasive = frac
    assert normal < benign < min(in_situ, invasive), frac
    assert min(in_situ, invasive) > 2 * normal, frac


def test_classes_differ_in_texture(layout) -> None:
    od_h, od_e, labels, tissue = _class_od(layout)
    # Invasive stroma is desmoplastic: less eosin than normal collagen.
    stroma = tissue & (od_h < 0.3)
    e_normal = od_e[stroma & (labels == 0)].mean()
    e_invasive = od_e[stroma & (labels == 3)].mean()
    assert e_invasive < 0.85 * e_normal
    # Atypical nuclei are larger: share of nuclear pixels more than 3.5 µm inside a nucleus
    # (benign nuclei have radius ~3.3 µm, atypical 4.2-6.8 µm).
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(od_h > 0.6) * 0.467

    def thick_share(cls: int) -> float:
        nuclear = (od_h > 0.6) & (labels == cls)
        return float((depth[nuclear] > 3.5).mean())

    assert thick_share(2) > 3 * thick_share(1)
    assert thick_share(3) > 3 * thick_share(1)


def test_domain_changes_colour_not_content(layout) -> None:
    cx, cy = _lesion_centre(layout, "Carcinoma invasive")
    sharp_b = with_changes(get_domain("lab-b"), blur_um=0.0, noise_sigma=0.0, name="b-sharp")
    clean_a = with_changes(get_domain("lab-a"), noise_sigma=0.0, name="a-clean")
    a = render_tile(build_scene(layout, clean_a, 5), cx - 128, cy - 128, 256, 256).astype(float)
    b = render_tile(build_scene(layout, sharp_b, 5), cx - 128, cy - 128, 256, 256).astype(float)
    # Same structures: darkness is strongly correlated pixel by pixel...
    corr = np.corrcoef(a.sum(2).ravel(), b.sum(2).ravel())[0, 1]
    assert corr > 0.8
    # ...but the colours differ: lab-b hematoxylin is bluer (blue minus red higher in nuclei).
    dark_a = a.sum(2) < np.percentile(a.sum(2), 10)
    dark_b = b.sum(2) < np.percentile(b.sum(2), 10)
    blue_a = (a[dark_a][:, 2] - a[dark_a][:, 0]).mean()
    blue_b = (b[dark_b][:, 2] - b[dark_b][:, 0]).mean()
    assert blue_b > blue_a + 10
