"""Classifier-free rules scored like a model: a floor that any real result must beat.

``all-normal`` labels every pixel normal; ``all-in-situ`` labels the tissue mask "in
situ" (background stays normal). The BACH score weighs errors by class distance, so
the middle-of-the-scale answer "in situ" scores well without finding anything; showing
it beside the arms keeps such a degenerate strategy from passing for a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathda.errors import ConfigError

RULES = {"all-normal": 0, "all-in-situ": 2}
"""Rule name -> label given to tissue (0 normal, 2 in situ)."""


def rule_mask(tissue: np.ndarray, rule: str) -> np.ndarray:
    """uint8 label mask of ``rule`` on a boolean tissue mask (background is normal)."""
    if rule not in RULES:
        raise ConfigError(f"unknown baseline rule {rule!r}; use one of {', '.join(RULES)}")
    tissue = np.asarray(tissue, dtype=bool)
    return np.where(tissue, RULES[rule], 0).astype(np.uint8)


def score_rule(
    slides: Sequence[Path], truths: Sequence[Path], rule: str, out_dir: Path, downsample: float
) -> Path:
    """Score ``rule`` on each slide against its truth; writes ``out_dir/scores.json``.

    The tissue mask is pathda.tissue.detect_tissue on a thumbnail at ``downsample``.
    Masks are written as ``out_dir/masks/<stem>_mask.png`` and scored with ``pathda
    score``'s code, so the numbers are comparable with the arms'.
    """
    from PIL import Image

    from pathda.evaluation import score_predictions, write_report
    from pathda.slide import open_slide
    from pathda.tissue import detect_tissue

    out_dir = Path(out_dir)
    mask_dir = out_dir / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    sizes = set()
    masks = []
    for slide_path in slides:
        with open_slide(slide_path) as slide:
            sizes.add(tuple(slide.dimensions))
            thumb = slide.thumbnail(max_size=round(max(slide.dimensions) / downsample))
            mpp = slide.require_mpp() * max(slide.dimensions) / max(thumb.shape[:2])
        mask = rule_mask(detect_tissue(thumb, mpp=mpp), rule)
        path = mask_dir / f"{Path(slide_path).stem}_mask.png"
        Image.fromarray(mask).save(path)
        masks.append(path)
    if len(sizes) != 1:
        raise ConfigError(f"baseline rules need test slides of one size, got {sorted(sizes)}")
    report = score_predictions(masks, list(truths), downsample, slide_size=sizes.pop())
    scores, _ = write_report(report, out_dir)
    return scores
