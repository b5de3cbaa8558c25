"""Networks: timm backbones (random, pretrained from timm / the Hugging Face hub, or a local
file) and the input they expect. Used by training and inference alike; knows nothing of
domain adaptation.

Typical use::

    net = create_backbone("vit_small_patch16_224", 4, pretrained="default", input_size=224)
    net = create_backbone("resnet50", 4, pretrained="hf-hub:ORG/NAME")
    model_input_config(net).mean   # normalisation the weights were trained with
"""

from pathda.models.backbone import (
    BackbonePlan,
    build_backbone,
    create_backbone,
    load_backbone_weights,
    plan_backbone,
)
from pathda.models.hub import DEFAULT_TAG, HUB_PREFIX, BackboneSource, resolve_source
from pathda.models.input_config import ModelInputConfig, model_input_config

__all__ = [
    "DEFAULT_TAG",
    "HUB_PREFIX",
    "BackbonePlan",
    "BackboneSource",
    "ModelInputConfig",
    "build_backbone",
    "create_backbone",
    "load_backbone_weights",
    "model_input_config",
    "plan_backbone",
    "resolve_source",
]
