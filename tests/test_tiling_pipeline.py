"""tile_slides end to end on tiny pyramidal TIFFs: labels, geometry, append, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import zarr

from pathda.annotations import Annotation, write_imagescope_xml
from pathda.errors import AnnotationError, ConfigError, StoreLockedError, UnknownClassError
from pathda.slide import open_slide
from pathda.synth.writer import write_pyramid_tiff
from pathda.tiling import TileConfig, TileStore, tile_slides
from pathda.tiling.lock import store_lock
from pathda.tiling.store import TILE_COLUMNS

SLIDE_MPP = 0.5
# 2 µm/px = downsample 4, a level of the synthetic pyramid: reads are exact, no resampling.
CONFIG = TileConfig(mpp=2.0, patch_size=16, min_tissue=0.5, workers=2, tissue={"mpp": 4.0})


def make_slide(path, size=(1024, 768), discs=((400, 380, 300),), seed=0):
    """A pyramidal JPEG TIFF: pink noisy discs (x, y, radius in level-0 px) on white glass."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = np.zeros((h, w), bool)
    for cx, cy, r in discs:
        inside |= (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    image = np.full((h, w, 3), 243, np.uint8)
    pink = np.array([200, 110, 170]) + rng.integers(-25, 25, (h, w, 3))
    image[inside] = np.clip(pink[inside], 0, 255)

    def render(x0, y0, tw, th):
        tile = np.full((th, tw, 3), 243, np.uint8)
        crop = image[y0 : y0 + th, x0 : x0 + tw]
        tile[: crop.shape[0], : crop.shape[1]] = crop
        return tile

    write_pyramid_tiff(path, size, render, mpp=SLIDE_MPP, tile_size=256)
    return path


def square(label, x0, y0, x1, y1):
    return Annotation(label, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float))


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    root = tmp_path_factory.mktemp("slides")
    a = make_slide(root / "a.tif")
    write_imagescope_xml(root / "a.xml", [square("Invasive", 256, 256, 512, 512)])
    b = make_slide(root / "b.tif", discs=((600, 300, 250),), seed=1)
    return root, a, b


def test_tiles_labels_and_geometry(slides, tmp_path):
    root, a, b = slides
    out = tile_slides([a, b], tmp_path / "t.zarr", CONFIG, quiet=True)
    store = TileStore(out)
    rec_a, rec_b = store.slides
    assert (rec_a.status, rec_a.domain, rec_b.domain) == ("done", "source", "target")
    assert rec_a.annotation == str(root / "a.xml")
    assert rec_a.n_tiles > 40
    assert rec_b.n_tiles > 30
    assert len(store) == rec_a.n_tiles + rec_b.n_tiles
    assert store.domains == ("source", "target")
    in_a = store.indices(slide=0)
    # Level-0 grid: a step of 16 px at 2 µm/px is 64 level-0 px at 0.5 µm/px.
    assert np.all(store.x[in_a] % 64 == 0)
    assert np.all(store.y[in_a] % 64 == 0)
    centre_x, centre_y = store.x[in_a] + 32, store.y[in_a] + 32
    in_square = (centre_x >= 256) & (centre_x < 512) & (centre_y >= 256) & (centre_y < 512)
    np.testing.assert_array_equal(store.labels[in_a], np.where(in_square, 3, 0))
    assert set(store.labels[store.indices(slide=1)]) == {-1}
    assert np.all(store.tissue_fraction >= 0.5)
    with open_slide(a) as slide:  # patches are the slide's pixels at the target mpp
        for i in in_a[[0, 17, -1]]:
            direct = slide.read_at_mpp((int(store.x[i]), int(store.y[i])), (16, 16), 2.0)
            np.testing.assert_array_equal(store[i], direct)
    assert (tmp_path / "t.zarr.masks" / "0000_a_tissue.png").is_file()


@pytest.mark.slow
def test_threads_processes_and_one_worker_agree(slides, tmp_path):
    _, a, b = slides
    outs = []
    for i, (parallel, workers) in enumerate([("thread", 1), ("thread", 2), ("process", 2)]):
        config = TileConfig(**{**CONFIG.__dict__, "parallel": parallel, "workers": workers})
        outs.append(tile_slides([a, b], tmp_path / f"{i}.zarr", config, quiet=True))
    first = zarr.open_group(outs[0], mode="r")
    for other in outs[1:]:
        g = zarr.open_group(other, mode="r")
        for name in ["patches", *TILE_COLUMNS]:
            np.testing.assert_array_equal(first[name][:], g[name][:])


def test_append_matches_one_run_and_refuses_other_grid(slides, tmp_path):
    _, a, b = slides
    both = tile_slides([a, b], tmp_path / "both.zarr", CONFIG, quiet=True)
    step = tile_slides([a], tmp_path / "step.zarr", CONFIG, quiet=True)
    appending = TileConfig(**{**CONFIG.__dict__, "append": True})
    with pytest.warns(UserWarning, match="already in"):
        tile_slides([a, b], step, appending, quiet=True)
    g1, g2 = zarr.open_group(both, mode="r"), zarr.open_group(step, mode="r")
    for name in ["patches", *TILE_COLUMNS]:
        np.testing.assert_array_equal(g1[name][:], g2[name][:])
    assert g2.attrs["complete"] is True
    other = TileConfig(**{**CONFIG.__dict__, "append": True, "patch_size": 32})
    with pytest.raises(ConfigError, match="other grid settings"):
        tile_slides([b], step, other, quiet=True)
    with pytest.raises(ConfigError, match="--append"):
        tile_slides([b], step, CONFIG, quiet=True)
    # Rerunning a finished command is a no-op.
    before = (step / "zarr.json").read_text()
    with pytest.warns(UserWarning, match="already in"):
        tile_slides([a, b], step, appending, quiet=True)
    assert (step / "zarr.json").read_text() == before


def test_majority_rule_skips_mixed_tiles(slides, tmp_path):
    _, a, _ = slides
    config = TileConfig(**{**CONFIG.__dict__, "label_rule": "majority", "label_min_fraction": 0.9})
    store = TileStore(tile_slides([a], tmp_path / "m.zarr", config, quiet=True))
    centre = TileStore(tile_slides([a], tmp_path / "c.zarr", CONFIG, quiet=True))
    assert store.slides[0].n_skipped_label >= 0
    assert len(store) + store.slides[0].n_skipped_label == len(centre)
    assert set(store.labels) <= {0, 3}


def test_second_writer_refused(slides, tmp_path):
    _, a, _ = slides
    out = tmp_path / "t.zarr"
    with store_lock(out), pytest.raises(StoreLockedError, match="being written"):
        tile_slides([a], out, CONFIG, quiet=True)
    assert not out.exists()


def test_bad_inputs_leave_no_store(slides, tmp_path):
    _root, a, _ = slides
    blank = make_slide(tmp_path / "blank.tif", size=(512, 512), discs=())
    with pytest.raises(ConfigError, match="no tiles"), pytest.warns(UserWarning, match="no tissue"):
        tile_slides([blank], tmp_path / "blank.zarr", CONFIG, quiet=True)
    assert not (tmp_path / "blank.zarr").exists()

    far = tmp_path / "far" / "a.tif"
    far.parent.mkdir()
    far.symlink_to(a)
    write_imagescope_xml(far.with_suffix(".xml"), [square("Invasive", 5000, 5000, 6000, 6000)])
    with pytest.raises(AnnotationError, match="wholly outside"):
        tile_slides([far], tmp_path / "far.zarr", CONFIG, quiet=True)
    assert not (tmp_path / "far.zarr").exists()

    odd = tmp_path / "odd" / "a.tif"
    odd.parent.mkdir()
    odd.symlink_to(a)
    write_imagescope_xml(odd.with_suffix(".xml"), [square("Invasive", 0, 0, 99, 99)])
    text = re.sub("(?i)invasive", "Tumour-ish", odd.with_suffix(".xml").read_text())
    odd.with_suffix(".xml").write_text(text)
    with pytest.raises(UnknownClassError, match="known classes"):
        tile_slides([odd], tmp_path / "odd.zarr", CONFIG, quiet=True)
    assert not (tmp_path / "odd.zarr").exists()


def test_blank_slide_among_others_is_recorded(slides, tmp_path):
    _, a, _ = slides
    blank = make_slide(tmp_path / "blank.tif", size=(512, 512), discs=())
    with pytest.warns(UserWarning, match="no tissue"):
        store = TileStore(tile_slides([blank, a], tmp_path / "t.zarr", CONFIG, quiet=True))
    assert store.slides[0].status == "no-tissue"
    assert store.slides[0].n_tiles == 0
    assert store.slides[1].tile_start == 0
    assert len(store) == store.slides[1].n_tiles


def test_preview_written(slides, tmp_path):
    _, a, _ = slides
    config = TileConfig(**{**CONFIG.__dict__, "preview": True})
    tile_slides([a], tmp_path / "t.zarr", config, quiet=True)
    assert (tmp_path / "t.zarr.previews" / "0000_a.png").stat().st_size > 0


def test_read_blocks_shrink_without_a_matching_pyramid_level(fixtures_dir):
    from pathda.tiling.manifest import SlideSpec
    from pathda.tiling.plan import plan_slide

    # One level at 0.2271 µm/px tiled at 1.868 µm/px: every read is 8.2x larger in level-0
    # pixels than in target pixels, so a block must span ~2048 / 8.2 target pixels only.
    spec = SlideSpec(fixtures_dir / "he" / "OS-1-detail.ome.tif", None, "t", "train")
    plan = plan_slide(spec, TileConfig(patch_size=16))
    assert plan.block_cells == 15
    assert plan.block_cells * 16 * plan.grid.downsample <= 2048
    assert plan.n_tiles == 64  # 133 px at 1.868 µm/px: 8 x 8 patches of 16 px
    assert len(plan.blocks) - 1 == 1
