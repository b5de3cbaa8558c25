"""Many slides: inputs checked up front, then each slide segmented on its own.

One bad slide should neither overwrite another's outputs nor stop the batch: two slides
with the same stem (``a/X.svs`` and ``b/X.tif`` both write ``<out>/X/``) and slides that
cannot be opened or have no resolution are refused before any work starts, and a slide
that fails mid-run is reported while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pathda.checkpoint import InferenceCheckpoint
from pathda.errors import ConfigError, PathdaError
from pathda.segment.config import SegmentConfig, SegmentResult
from pathda.segment.dense import build_dense_classifier
from pathda.slide import open_slide
from pathda.slide.naming import slide_stem
from pathda.slide.resolution import require_not_upsampled


@dataclass(frozen=True)
class SlideFailure:
    """A slide that failed mid-run and the one-line reason."""

    slide: Path
    message: str


def check_slide_inputs(
    slides: Sequence[Path], slide_mpp: float | None, model_mpp: float | None = None
) -> None:
    """Refuse a batch that cannot be run as given, before anything is written.

    Raises:
        ConfigError: two slides share an output name (their slide stem).
        PathdaError: a slide is missing, cannot be opened, has no resolution (and
            ``slide_mpp`` does not give one), or a resolution far coarser than the
            model's ``model_mpp`` (a 72-dpi placeholder; the same rule as ``tile``'s).
    """
    seen: dict[str, Path] = {}
    for slide in slides:
        stem = slide_stem(slide)
        if stem in seen:
            raise ConfigError(
                f"{slide}: same output name {stem!r} as {seen[stem]} (both would write "
                f"<out>/{stem}/); segment them into different --out folders or rename one"
            )
        seen[stem] = slide
    for slide in slides:
        with open_slide(slide, mpp=slide_mpp) as opened:
            mpp = opened.require_mpp()
        if model_mpp is not None:
            require_not_upsampled(opened.path, model_mpp, mpp)


def check_model(loaded: tuple[torch.nn.Module, InferenceCheckpoint], config: SegmentConfig) -> None:
    """Refuse settings the model cannot run (dense mode on a ViT, a stride off the
    network's grid) once, before any slide, instead of once per slide."""
    if config.mode == "dense":
        model, meta = loaded
        build_dense_classifier(model, meta, config.stride or max(1, meta.patch_size // 2))


def segment_slides(
    slides: Sequence[Path],
    run: Callable[[Path], SegmentResult],
    config: SegmentConfig,
    on_failure: Callable[[SlideFailure], None] | None = None,
    model_mpp: float | None = None,
) -> tuple[list[SegmentResult], list[SlideFailure]]:
    """Check every input, then ``run`` each slide; a slide's user error does not stop the rest.

    Args:
        slides: slide files, segmented in this order.
        run: segments one slide (e.g. ``segment_slide`` with the model and output folder bound).
        config: the settings (its ``slide_mpp`` is used to check the inputs).
        on_failure: called as soon as a slide fails (e.g. to print it).
        model_mpp: the model's µm/px, to refuse placeholder slide resolutions up front.

    Returns:
        The results of the slides that finished, and the failures.
    """
    check_slide_inputs(slides, config.slide_mpp, model_mpp)
    results: list[SegmentResult] = []
    failures: list[SlideFailure] = []
    for slide in slides:
        try:
            results.append(run(slide))
        except PathdaError as err:
            failures.append(SlideFailure(slide, str(err)))
            if on_failure is not None:
                on_failure(failures[-1])
    return results, failures
