"""Refusing a working resolution much finer than the slide's: the one rule tile and segment share.

Reading patches at more than twice the slide's own resolution invents pixels; in practice it
means the file's resolution is wrong, most often the 72 dpi (352.8 µm/px) that image writers
stamp when they know nothing, which would make a grid of one slide pixel per cell.
"""

from __future__ import annotations

from pathlib import Path

from pathda.errors import ConfigError

MAX_UPSAMPLING = 0.5
"""Refuse working resolutions finer than this fraction of the slide's µm/px."""


def require_not_upsampled(path: str | Path, working_mpp: float, slide_mpp: float) -> None:
    """Raise when reading ``path`` at ``working_mpp`` would upsample it more than 2x.

    Raises:
        ConfigError: names the slide, both resolutions and the fix (`slide_mpp`).
    """
    if working_mpp < MAX_UPSAMPLING * slide_mpp:
        raise ConfigError(
            f"{path}: the slide's {slide_mpp:.4g} µm/px is far coarser than the {working_mpp:.4g} "
            "µm/px it is to be read at (patches would be upsampled); if the file states its "
            "resolution wrongly (72 dpi = 352.8 µm/px is what image writers stamp when they "
            "know nothing), pass its real level-0 resolution as `slide_mpp`"
        )
