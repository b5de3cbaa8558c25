"""The one rule that names a slide: file name -> slide stem.

Every command pairs files by this stem: ``tile`` finds ``<stem>.xml`` beside a slide,
``segment`` writes ``<out>/<stem>/``, ``score`` pairs predictions and truths by it. The
rule is Python's ``Path.stem`` plus dropping an ``.ome`` left over from a double
extension, so ``X.ome.tif``, ``X.tif``, ``X.ome.xml`` and ``X.xml`` all name slide ``X``
and one annotation file serves every command.
"""

from __future__ import annotations

from pathlib import Path

OME_INFIX = ".ome"


def slide_stem(name: str | Path) -> str:
    """Slide name of a file: extension dropped, then a trailing ``.ome`` (any case).

    Examples:
        >>> slide_stem("A01.svs"), slide_stem("X.ome.tif"), slide_stem("dir/X.OME.xml")
        ('A01', 'X', 'X')
        >>> slide_stem("A.v2.tiff"), slide_stem(".hidden"), slide_stem("noext")
        ('A.v2', '.hidden', 'noext')
    """
    return strip_ome(Path(name).stem)


def strip_ome(stem: str) -> str:
    """``stem`` without a trailing ``.ome`` (any case): ``X.ome`` -> ``X``."""
    if stem.lower().endswith(OME_INFIX) and len(stem) > len(OME_INFIX):
        return stem[: -len(OME_INFIX)]
    return stem
