"""Side-by-side montage of slides: thumbnail, zoomed crop at full resolution, domain label."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openslide
from PIL import Image, ImageDraw, ImageFont

from pathda.atomic import atomic_path
from pathda.errors import ConfigError, SlideOpenError
from pathda.synth.generate import sidecar_path


def make_montage(
    slides: Sequence[object],
    out_png: str | Path,
    thumb_px: int = 400,
    crop_px: int = 400,
) -> Path:
    """Write a PNG with one column per slide: labelled thumbnail above a level-0 crop.

    The crop (``crop_px`` level-0 pixels, shown at full resolution) is taken around a
    lesion when the slide's ``_mask.png`` is present (invasive, else in situ, else benign),
    otherwise at the centre; its place is outlined on the thumbnail.

    Args:
        slides: ``SynthSlide`` objects or image paths.
        out_png: output PNG path.
        thumb_px: longest side of each thumbnail, pixels.
        crop_px: side of each crop, pixels (level 0).

    Returns:
        ``out_png`` as a Path.
    """
    if not slides:
        raise ConfigError("make_montage: no slides given")
    columns = [_column(s, thumb_px, crop_px) for s in slides]
    font = _font(max(14, thumb_px // 22))
    label_h = int(font.size * 1.6) if hasattr(font, "size") else 24
    col_w = max(thumb_px, crop_px)
    gap = 8
    thumb_h = max(thumb.height for _, thumb, _ in columns)
    height = label_h + thumb_h + gap + crop_px
    canvas = Image.new("RGB", (len(columns) * (col_w + gap) + gap, height + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, thumb, crop) in enumerate(columns):
        x = gap + i * (col_w + gap)
        draw.text((x, 4), label, fill=(0, 0, 0), font=font)
        canvas.paste(thumb, (x, label_h))
        canvas.paste(crop, (x, label_h + thumb_h + gap))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out


def _column(slide: object, thumb_px: int, crop_px: int) -> tuple[str, Image.Image, Image.Image]:
    path = Path(getattr(slide, "image", slide))
    domain = getattr(slide, "domain", None) or _domain_from_sidecar(path) or path.stem
    try:
        osr = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, FileNotFoundError) as exc:
        raise SlideOpenError(f"{path}: cannot open slide for the montage ({exc})") from None
    with osr:
        w, h = osr.dimensions
        thumb = osr.get_thumbnail((thumb_px, thumb_px)).convert("RGB")
        cx, cy = _crop_centre(path, (w, h))
        x0 = int(np.clip(cx - crop_px // 2, 0, max(w - crop_px, 0)))
        y0 = int(np.clip(cy - crop_px // 2, 0, max(h - crop_px, 0)))
        crop = osr.read_region((x0, y0), 0, (crop_px, crop_px)).convert("RGB")
    scale = thumb.width / w
    draw = ImageDraw.Draw(thumb)
    box = [x0 * scale, y0 * scale, (x0 + crop_px) * scale, (y0 + crop_px) * scale]
    draw.rectangle(box, outline=(0, 0, 0), width=2)
    return f"{domain}  ({path.stem})", thumb, crop


def _domain_from_sidecar(path: Path) -> str | None:
    sidecar = sidecar_path(path)
    try:
        return json.loads(sidecar.read_text())["config"]["domain"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _crop_centre(path: Path, size: tuple[int, int]) -> tuple[int, int]:
    mask_path = path.with_name(path.stem + "_mask.png")
    w, h = size
    if mask_path.exists():
        mask = np.asarray(Image.open(mask_path))
        ds = w / mask.shape[1]
        for cls in (3, 2, 1):
            rows, cols = np.nonzero(mask == cls)
            if len(rows):
                # The lesion pixel closest to the lesion's centroid (inside even if concave).
                r0, c0 = rows.mean(), cols.mean()
                k = int(np.argmin((rows - r0) ** 2 + (cols - c0) ** 2))
                return int((cols[k] + 0.5) * ds), int((rows[k] + 0.5) * ds)
    return w // 2, h // 2


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
