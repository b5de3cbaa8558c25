"""Provenance attached to every artefact: what made it, from what, with which settings."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathda import __version__


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, paths, tuples and numpy scalars into JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch arrays, scalars
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def provenance(
    config: Any = None,
    slides: Sequence[str | Path] = (),
    mpp: float | Sequence[float] | None = None,
) -> dict[str, Any]:
    """Return the provenance record saved beside an artefact.

    Args:
        config: the resolved configuration (a dataclass or mapping).
        slides: source slide paths.
        mpp: microns per pixel of the artefact (or per slide).
    """
    return {
        "pathda_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "config": to_jsonable(config),
        "slides": [str(Path(s).resolve()) for s in slides],
        "mpp": to_jsonable(mpp),
    }
