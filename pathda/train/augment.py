"""Training augmentation (albumentations) and input normalisation.

Geometry: flips and 90° rotations (histology has no canonical orientation).
Input normalisation (mean/std, stain) is ``pathda.model_input.InputPipeline``,
shared with inference. Colour: mild H&E stain jitter in the optical-density space (HEStain with the
Ruifrok preset and small intensity changes) plus slight brightness/contrast,
kept mild on purpose so that the domain shift that adaptation must handle is
not simply washed out by augmentation.
"""

from __future__ import annotations

import albumentations as A


def training_augmentation(stain_jitter: str = "mild") -> A.Compose:
    """Albumentations pipeline on (H, W, 3) uint8 patches; the output stays uint8.

    ``stain_jitter="strong"`` replaces the mild colour jitter by strong HED and HSV
    jitter, after Tellez et al. 2019 ("HED-strong": stain scale and shift up to ±0.2 per
    channel; "HSV-strong": large hue and saturation shifts): the augmentation baseline a
    user tries before domain adaptation.
    """
    if stain_jitter not in _COLOUR_JITTER:
        raise ValueError(f"stain_jitter must be 'mild' or 'strong', got {stain_jitter!r}")
    hed, hsv = _COLOUR_JITTER[stain_jitter]
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            A.HEStain(method="preset", preset="ruifrok", **hed),
            A.ColorJitter(**hsv),
        ]
    )


# Per strength: HEStain and ColorJitter settings (one table, so the two strengths differ
# only where the numbers say so).
_COLOUR_JITTER: dict[str, tuple[dict, dict]] = {
    "mild": (
        {"intensity_scale_range": (0.9, 1.1), "intensity_shift_range": (-0.05, 0.05), "p": 0.5},
        {"brightness": 0.05, "contrast": 0.05, "saturation": 0.05, "hue": 0.0, "p": 0.3},
    ),
    "strong": (
        {"intensity_scale_range": (0.8, 1.2), "intensity_shift_range": (-0.2, 0.2), "p": 1.0},
        {"brightness": 0.2, "contrast": 0.2, "saturation": 0.3, "hue": 0.1, "p": 0.9},
    ),
}
