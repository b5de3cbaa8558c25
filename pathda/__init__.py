"""pathda: breast-cancer WSI segmentation with layer-wise domain adaptation."""

__version__ = "0.1.0"
