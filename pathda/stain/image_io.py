"""Read and write plain RGB images (PNG, JPEG, TIFF) for stain references and ``stain apply``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathda.atomic import atomic_path
from pathda.errors import ImageReadError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *TIFF_SUFFIXES)


def read_rgb_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB ``(H, W, 3)``.

    TIFFs (including OME-TIFF) are read with tifffile, the first series' full-resolution level;
    other formats with Pillow. Grey images are replicated to three channels and an alpha
    channel is dropped.

    Raises:
        ImageReadError: the file is missing or cannot be decoded as an 8-bit image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            image = tifffile.imread(path, series=0, level=0)
        else:
            from PIL import Image

            with Image.open(path) as opened:
                image = np.asarray(opened.convert("RGBA") if opened.mode == "P" else opened)
    except Exception as err:  # decoders raise many types; all mean "cannot read this file"
        raise ImageReadError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    return _to_rgb_u8(image, path)


def _to_rgb_u8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise ImageReadError(
            f"{path}: expected an 8-bit image, got {image.dtype}; convert it to 8-bit RGB"
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar TIFF
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ImageReadError(f"{path}: expected an RGB image, got array shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def write_rgb_image(path: str | Path, image: np.ndarray) -> None:
    """Atomically write uint8 RGB ``(H, W, 3)``; the suffix picks the format.

    TIFF goes through tifffile (zlib, lossless); PNG and JPEG (quality 95) through Pillow.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(tmp, image, photometric="rgb", compression="zlib")
        else:
            from PIL import Image

            fmt = "JPEG" if suffix in (".jpg", ".jpeg") else "PNG"
            Image.fromarray(image).save(
                tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})
            )
