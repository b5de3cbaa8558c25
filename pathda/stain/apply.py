"""File-level stain normalisation: fit on a reference image, normalise a set of image files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathda.atomic import write_json
from pathda.device import resolve_device
from pathda.errors import ConfigError
from pathda.provenance import provenance
from pathda.stain.base import StainNormaliser
from pathda.stain.image_io import read_rgb_image, write_rgb_image

BLOCK_PX = 1024
"""Images larger than this (either side, pixels) are applied block by block."""


def fit_normaliser(
    method: str,
    reference: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
    **options: Any,
) -> StainNormaliser:
    """Create the ``method`` normaliser and fit it on reference image(s).

    Args:
        method: registry name, e.g. ``"macenko"``.
        reference: an RGB array, an image path (PNG/JPEG/TIFF), or a sequence of either
            (pooled as one reference).
        **options: method options, e.g. ``luminosity_threshold=0.8``.

    Raises:
        ConfigError: unknown method or option, or a reference without usable tissue.
        ImageReadError: a reference file cannot be read.
    """
    from pathda.stain import create_normaliser

    normaliser = create_normaliser(method, **options)
    items = [reference] if isinstance(reference, (str, Path, np.ndarray)) else list(reference)
    images = [read_rgb_image(r) if isinstance(r, (str, Path)) else r for r in items]
    try:
        return normaliser.fit(images)
    except ConfigError as err:
        names = ", ".join(str(r) for r in items if isinstance(r, (str, Path))) or "reference"
        raise ConfigError(f"{names}: {err}") from err


def save_params(normaliser: StainNormaliser, path: str | Path, reference: Any = None) -> None:
    """Write the fitted parameters (``to_dict``) plus provenance as JSON, atomically."""
    slides = [reference] if isinstance(reference, (str, Path)) else []
    write_json(path, {**normaliser.to_dict(), "provenance": provenance(slides=slides)})


def load_params(path: str | Path) -> StainNormaliser:
    """Read a parameters file written by ``save_params`` (or any ``to_dict`` JSON).

    Raises:
        ConfigError: the file is missing, not JSON, or not valid stain parameters.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read stain parameters ({err})") from err
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: stain parameters must be a JSON object")
    try:
        return StainNormaliser.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def normalise_images(
    images: Sequence[str | Path],
    params: str | Path | StainNormaliser,
    out_dir: str | Path,
    batch_size: int = 64,
    device: str = "cpu",
    quiet: bool = False,
) -> list[Path]:
    """Normalise image files into ``out_dir`` (same file names), each with its own estimate.

    Each image's stain statistics come from the whole image; small images of equal size are
    batched (``batch_size`` at a time) since per-tile statistics are the same thing, and images
    larger than ``BLOCK_PX`` are estimated once and then processed in ``BLOCK_PX`` blocks.

    Args:
        images: PNG/JPEG/TIFF paths.
        params: a parameters JSON path or a fitted normaliser.
        out_dir: output folder (created); files keep their names and formats.
        batch_size: images per batch.
        device: torch device for the batched methods, e.g. ``"cuda"``.
        quiet: no progress bar.

    Returns:
        The written paths, in input order.

    Raises:
        ConfigError: bad parameters, or two inputs with the same file name.
        ImageReadError: an input cannot be read.
    """
    from rich.progress import Progress

    normaliser = params if isinstance(params, StainNormaliser) else load_params(params)
    resolve_device(device)  # a bad or unavailable device fails before any work
    paths = [Path(p) for p in images]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ConfigError("input images share file names; outputs would overwrite each other")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("normalising stains", total=len(paths))
        for start in range(0, len(paths), max(1, batch_size)):
            chunk = paths[start : start + max(1, batch_size)]
            for path, result in zip(
                chunk, _normalise_chunk(normaliser, chunk, device), strict=True
            ):
                target = out_dir / path.name
                write_rgb_image(target, result)
                written.append(target)
                progress.advance(task)
    return written


def _normalise_chunk(
    normaliser: StainNormaliser, paths: Sequence[Path], device: str
) -> list[np.ndarray]:
    """Normalised arrays for ``paths``: same-size small images in one batch, large ones alone."""
    images = [read_rgb_image(p) for p in paths]
    results: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        if max(image.shape[:2]) > BLOCK_PX:
            tensor = torch.from_numpy(image).to(device)
            results[i] = normaliser.transform_image(tensor, block_px=BLOCK_PX).cpu().numpy()
        else:
            by_shape.setdefault(image.shape, []).append(i)
    for indices in by_shape.values():
        batch = torch.from_numpy(np.stack([images[i] for i in indices])).to(device)
        out = normaliser.transform(batch).cpu().numpy()
        for i, tile in zip(indices, out, strict=True):
            results[i] = tile
    return results  # type: ignore[return-value]
