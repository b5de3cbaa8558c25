"""Synthetic H&E whole-slide images with ground truth and controllable domain shift.

``synthesise_slides`` writes pyramidal JPEG TIFFs (OpenSlide ``generic-tiff``) with a
BACH-like ImageScope XML annotation, a ground-truth label mask and a ``.synth.json`` sidecar. The
tissue (normal stroma, fat and lobules; benign glands; in situ ducts; invasive nests)
depends only on the seed; the domain (``DOMAINS``) sets how it is stained and scanned.

Examples:
    >>> slides = synthesise_slides("synth", n=2, domain="lab-b")        # doctest: +SKIP
    >>> make_montage(slides, "montage.png")                             # doctest: +SKIP
"""

from pathda.synth.domains import DOMAINS, DomainPreset, get_domain, register_domain
from pathda.synth.generate import SynthSlide, label_mask, synthesise_slides
from pathda.synth.layout import SlideLayout, make_layout
from pathda.synth.montage import make_montage

__all__ = [
    "DOMAINS",
    "DomainPreset",
    "SlideLayout",
    "SynthSlide",
    "get_domain",
    "label_mask",
    "make_layout",
    "make_montage",
    "register_domain",
    "synthesise_slides",
]
