"""``synthesise_slides``: write synthetic H&E slides with ground truth, one domain at a time."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pathda._types import IntPair
from pathda.annotations import BACH_CLASSES, rasterise, write_imagescope_xml
from pathda.atomic import atomic_path, write_json
from pathda.errors import ConfigError
from pathda.provenance import provenance
from pathda.slide.naming import slide_stem
from pathda.synth.domains import DomainPreset, get_domain
from pathda.synth.layout import BACH_XML_CLASSES, SlideLayout, make_layout
from pathda.synth.render import render_tile
from pathda.synth.scene import build_scene
from pathda.synth.writer import tiff_description, write_pyramid_tiff

SIDECAR_SUFFIX = ".synth.json"


@dataclass(frozen=True)
class SynthSlide:
    """One synthetic slide on disk.

    Attributes:
        image: pyramidal tiled JPEG TIFF (OpenSlide ``generic-tiff``).
        annotation: BACH-like ImageScope XML, or None when written without annotation.
        mask: ground-truth label PNG (uint8 0 normal/glass, 1 benign, 2 in situ,
            3 invasive) at ``mask_downsample`` level-0 pixels per mask pixel.
        domain: name of the staining/scanning domain.
        mpp: µm per level-0 pixel.
        size: (width, height) of level 0 in pixels.
        seed: seed of this slide's layout and texture (same seed = same tissue).
    """

    image: Path
    annotation: Path | None
    mask: Path
    domain: str
    mpp: float
    size: tuple[int, int]
    seed: int

    @property
    def sidecar(self) -> Path:
        """The JSON file with provenance and generator parameters, ``<stem>.synth.json``.

        Not ``<stem>.json``: annotation discovery looks for ``<stem>.json`` GeoJSON.
        """
        return sidecar_path(self.image)


def sidecar_path(image: Path) -> Path:
    """Where the provenance sidecar of a synthetic slide ``image`` lives."""
    return image.with_name(f"{slide_stem(image)}{SIDECAR_SUFFIX}")


def synthesise_slides(
    out_dir: str | Path,
    n: int = 2,
    domain: str | DomainPreset = "lab-a",
    size: IntPair = (2048, 2048),
    seed: int = 0,
    mpp: float = 0.467,
    tile_size: int = 512,
    annotate: bool = True,
    mask_downsample: int = 8,
    prefix: str | None = None,
    quiet: bool = False,
    workers: int | None = None,
) -> list[SynthSlide]:
    """Write ``n`` synthetic H&E slides of one domain with annotations and label masks.

    Slide ``i`` is named ``{prefix or domain}_{i:02d}`` and uses seed ``seed + i``; its
    tissue depends only on that seed, size and mpp, so two domains with the same seed
    show the same tissue in different colours. The image is byte-identical for equal
    arguments.

    Args:
        out_dir: output folder (created).
        n: number of slides.
        domain: a name in ``DOMAINS`` or a ``DomainPreset``.
        size: (width, height) of level 0 in pixels.
        seed: seed of the first slide.
        mpp: µm per level-0 pixel (structure sizes are set in µm).
        tile_size: TIFF tile edge in pixels (multiple of 16).
        annotate: write the ImageScope XML annotation.
        mask_downsample: level-0 pixels per mask pixel.
        prefix: file-name prefix instead of the domain name.
        quiet: no progress bar.
        workers: rendering/encoding threads (default: CPU count, at most 8); the output
            does not depend on it.

    Returns:
        One :class:`SynthSlide` per slide, in order.

    Raises:
        ConfigError: unknown domain or invalid size/mpp/tile size/count.

    Example:
        >>> slides = synthesise_slides("synth", n=1, size=(1024, 1024))   # doctest: +SKIP
    """
    preset = get_domain(domain)
    width, height = _check_args(n, size, mpp, tile_size, mask_downsample)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem_prefix = prefix or preset.name
    n_tiles = math.ceil(width / tile_size) * math.ceil(height / tile_size)
    slides = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
    ) as progress:
        for i in range(n):
            stem = f"{stem_prefix}_{i:02d}"
            task = progress.add_task(f"synth {stem}", total=n_tiles)
            slides.append(
                _write_slide(
                    out / stem,
                    preset,
                    (width, height),
                    seed + i,
                    float(mpp),
                    tile_size,
                    annotate,
                    mask_downsample,
                    lambda t=task: progress.advance(t),
                    workers,
                )
            )
    return slides


def _check_args(n, size, mpp, tile_size, mask_downsample) -> IntPair:
    if int(n) < 1:
        raise ConfigError(f"number of slides must be >= 1, got {n}")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (width, height) in pixels, got {size!r}") from None
    if width < 64 or height < 64:
        raise ConfigError(f"slide size must be at least 64 x 64 pixels, got {width} x {height}")
    if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and 0.05 <= mpp <= 20):
        raise ConfigError(f"mpp must be a number of µm per pixel in 0.05..20, got {mpp!r}")
    if int(tile_size) % 16 or int(tile_size) < 16:
        raise ConfigError(f"tile size must be a positive multiple of 16, got {tile_size}")
    if int(mask_downsample) < 1:
        raise ConfigError(f"mask downsample must be >= 1, got {mask_downsample}")
    return width, height


def _write_slide(
    base: Path,
    preset: DomainPreset,
    size: IntPair,
    seed: int,
    mpp: float,
    tile_size: int,
    annotate: bool,
    mask_downsample: int,
    on_tile,
    workers: int | None,
) -> SynthSlide:
    layout = make_layout(size, mpp, seed)
    scene = build_scene(layout, preset, seed)
    image = base.with_suffix(".tiff")
    with atomic_path(image) as tmp:
        write_pyramid_tiff(
            tmp,
            size,
            lambda x, y, w, h: render_tile(scene, x, y, w, h),
            mpp,
            tile_size=tile_size,
            quality=preset.jpeg_quality,
            description=_description(preset, seed),
            on_tile=on_tile,
            workers=workers,
        )
    annotation = None
    if annotate:
        annotation = base.with_suffix(".xml")
        write_imagescope_xml(annotation, list(layout.lesions), BACH_XML_CLASSES, mpp)
    mask = base.with_name(base.name + "_mask.png")
    labels = label_mask(layout, mask_downsample)
    with atomic_path(mask) as tmp:
        Image.fromarray(labels).save(tmp, format="PNG")
    slide = SynthSlide(image, annotation, mask, preset.name, mpp, size, seed)
    write_json(slide.sidecar, _sidecar(slide, preset, layout, tile_size, mask_downsample, labels))
    return slide


def _description(preset: DomainPreset, seed: int) -> str:
    return f"domain={preset.name}|seed={seed}"


def label_mask(layout: SlideLayout, downsample: int) -> np.ndarray:
    """Ground-truth BACH label raster (uint8, ceil(h / d) x ceil(w / d)) of a layout."""
    w, h = layout.size
    shape = (math.ceil(h / downsample), math.ceil(w / downsample))
    return rasterise(list(layout.lesions), BACH_CLASSES, shape, float(downsample), (0, 0))


def _sidecar(slide, preset, layout, tile_size, mask_downsample, labels) -> dict:
    # Per class, not np.bincount: that would copy a 50k-slide mask to int64 (300+ MB).
    counts = np.array([np.count_nonzero(labels == c) for c in range(len(BACH_CLASSES))])
    record = provenance(
        config={
            "generator": "pathda.synth.synthesise_slides",
            "domain": asdict(preset),
            "size": list(slide.size),
            "seed": slide.seed,
            "mpp": slide.mpp,
            "tile_size": tile_size,
            "mask_downsample": mask_downsample,
            "annotate": slide.annotation is not None,
        },
        slides=[slide.image],
        mpp=slide.mpp,
    )
    record["image_description"] = tiff_description(slide.mpp, _description(preset, slide.seed))
    record["files"] = {
        "image": slide.image.name,
        "annotation": slide.annotation.name if slide.annotation else None,
        "mask": slide.mask.name,
    }
    record["mask_classes"] = list(BACH_CLASSES.names)
    record["mask_class_fractions"] = (counts / counts.sum()).round(5).tolist()
    record["tissue_polygons"] = [np.asarray(a.exterior).tolist() for a in layout.tissue]
    return record
