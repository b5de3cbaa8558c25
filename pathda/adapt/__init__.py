"""Layer-wise domain adaptation: gradient reversal, domain heads/critics, adaptation methods.

Typical use::

    backbone = create_backbone("seresnet50", num_classes=4)
    method = create_method("ldann")                  # any name in METHODS
    model = method.build_model(backbone, input_size=(3, 224, 224))
    optimizers = build_optimizers(model, method, lr=1e-3)
    metrics = method.step(model, optimizers, x_src, y_src, x_tgt, progress=epoch / epochs)
    torch.save(model.export_inference_state(), "model.pth")   # heads dropped
"""

from pathda.adapt.attach import FeatureTaps, layerwise_tap_points, pooled_tap_points
from pathda.adapt.dann import DANN, LayerwiseDANN
from pathda.adapt.grl import GradientReversal, grl_coefficient
from pathda.adapt.heads import DomainHead, squeeze
from pathda.adapt.methods import (
    METHODS,
    AdaptationMethod,
    build_optimizers,
    create_method,
    default_tap_points,
    register_method,
)
from pathda.adapt.model import DomainAdaptationModel
from pathda.adapt.penalty import critic_objective, gradient_penalty
from pathda.adapt.wasserstein import LayerwiseWasserstein

# Backbones live in pathda.models (inference needs them without adaptation); re-exported
# here because every adaptation user builds one.
from pathda.models import create_backbone, load_backbone_weights

__all__ = [
    "DANN",
    "METHODS",
    "AdaptationMethod",
    "DomainAdaptationModel",
    "DomainHead",
    "FeatureTaps",
    "GradientReversal",
    "LayerwiseDANN",
    "LayerwiseWasserstein",
    "build_optimizers",
    "create_backbone",
    "create_method",
    "critic_objective",
    "default_tap_points",
    "gradient_penalty",
    "grl_coefficient",
    "layerwise_tap_points",
    "load_backbone_weights",
    "pooled_tap_points",
    "register_method",
    "squeeze",
]
