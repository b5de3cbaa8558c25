"""Registry of staining/scanning domains: how one lab's H&E slides look.

A domain changes only the appearance (stain colours and amounts, optics, compression,
noise, glass tint), never the tissue: the same seed gives the same layout and cells in
every domain, so a domain shift can be measured on identical content.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pathda.errors import ConfigError
from pathda.registry import Registry

RGB = tuple[float, float, float]


def _unit(v: RGB) -> RGB:
    a = np.asarray(v, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class DomainPreset:
    """Appearance of one lab/scanner.

    Attributes:
        name: registry key.
        description: one line for humans.
        hematoxylin: RGB optical-density direction of hematoxylin (normalised to unit length).
        eosin: RGB optical-density direction of eosin (normalised to unit length).
        hematoxylin_scale: multiplier on hematoxylin optical density (staining strength).
        eosin_scale: multiplier on eosin optical density.
        blur_um: Gaussian blur sigma in µm (scanner optics / focus); 0 = sharp.
        jpeg_quality: JPEG quality of the TIFF tiles, 1..100.
        noise_sigma: sensor noise standard deviation in 8-bit grey levels.
        background_rgb: glass colour I0 (0..255 per channel) that Beer-Lambert transmits
            where there is no stain, before ``brightness`` and ``saturation`` apply.
        brightness: added to every channel after staining, in 8-bit grey levels.
        saturation: chroma multiplier after staining (1 = unchanged).
    """

    name: str
    description: str
    hematoxylin: RGB
    eosin: RGB
    hematoxylin_scale: float = 1.0
    eosin_scale: float = 1.0
    blur_um: float = 0.0
    jpeg_quality: int = 90
    noise_sigma: float = 1.0
    background_rgb: RGB = (244.0, 244.0, 246.0)
    brightness: float = 0.0
    saturation: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hematoxylin", _unit(self.hematoxylin))
        object.__setattr__(self, "eosin", _unit(self.eosin))
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"domain {self.name!r}: jpeg_quality must be 1..100")
        if self.blur_um < 0 or self.noise_sigma < 0:
            raise ConfigError(f"domain {self.name!r}: blur_um and noise_sigma must be >= 0")

    def stain_matrix(self) -> np.ndarray:
        """(2, 3) float32: rows are the hematoxylin and eosin OD vectors times their scales."""
        return np.array(
            [
                np.asarray(self.hematoxylin) * self.hematoxylin_scale,
                np.asarray(self.eosin) * self.eosin_scale,
            ],
            dtype=np.float32,
        )


DOMAINS: Registry[DomainPreset] = Registry("synthetic domain")
"""Domain name -> preset. Add one with :func:`register_domain`."""


def register_domain(preset: DomainPreset) -> DomainPreset:
    """Add ``preset`` to :data:`DOMAINS` under its name.

    Raises:
        ValueError: another preset already has that name.
    """
    return DOMAINS.add(preset.name, preset)


def get_domain(name: str | DomainPreset) -> DomainPreset:
    """Look a domain up by name (a preset passes through).

    Raises:
        ConfigError: unknown name; the message lists the known ones.
    """
    if isinstance(name, DomainPreset):
        return name
    return DOMAINS.get(name)


def with_changes(preset: DomainPreset, **changes: object) -> DomainPreset:
    """A copy of ``preset`` with some fields changed (e.g. a new name or blur)."""
    return replace(preset, **changes)  # type: ignore[arg-type]


register_domain(
    DomainPreset(
        name="lab-a",
        description="reference lab: Ruifrok-like H&E, sharp scan, JPEG 90, neutral glass",
        hematoxylin=(0.65, 0.70, 0.29),
        eosin=(0.12, 0.93, 0.35),
        hematoxylin_scale=1.0,
        eosin_scale=1.0,
        blur_um=0.0,
        jpeg_quality=90,
        noise_sigma=1.0,
        background_rgb=(242.0, 242.0, 245.0),
    )
)

register_domain(
    DomainPreset(
        name="lab-b",
        description="other lab and scanner: bluer, darker hematoxylin, pale orange eosin, "
        "blurred, JPEG 70, noisy, yellowish glass",
        hematoxylin=(0.80, 0.58, 0.16),
        eosin=(0.03, 0.55, 0.83),
        hematoxylin_scale=1.35,
        eosin_scale=0.75,
        blur_um=0.7,
        jpeg_quality=70,
        noise_sigma=3.5,
        background_rgb=(240.0, 234.0, 208.0),
        brightness=-4.0,
        saturation=0.9,
    )
)

register_domain(
    DomainPreset(
        name="scanner-c",
        description="overstained slide on a high-contrast scanner: heavy purple hematoxylin, "
        "magenta eosin, cool grey glass, JPEG 80",
        hematoxylin=(0.58, 0.76, 0.38),
        eosin=(0.20, 0.95, 0.30),
        hematoxylin_scale=1.6,
        eosin_scale=1.45,
        blur_um=0.4,
        jpeg_quality=80,
        noise_sigma=2.0,
        background_rgb=(228.0, 231.0, 238.0),
        brightness=-6.0,
        saturation=1.25,
    )
)

register_domain(
    DomainPreset(
        name="centre-d",
        description="milder, Camelyon17-like other centre: another stain batch (redder "
        "hematoxylin, stronger eosin) on another scanner (softer optics, JPEG 85), warm glass",
        hematoxylin=(0.70, 0.66, 0.27),
        eosin=(0.10, 0.90, 0.42),
        hematoxylin_scale=1.15,
        eosin_scale=1.2,
        blur_um=0.3,
        jpeg_quality=85,
        noise_sigma=1.5,
        background_rgb=(240.0, 236.0, 236.0),
        brightness=-2.0,
        saturation=1.05,
    )
)
