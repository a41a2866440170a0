"""OpenCV augmentations for images, masks, keypoints and boxes, built from config dicts.

Importing this package registers every transform in ``BUILD_TRANSFORMER_REGISTRY``.
The ``results`` dict convention is described in :mod:`engine.transforms.results`; the
reference of every transform and parameter is ``docs/transforms.md``.
"""

from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY, build_transform
from engine.transforms.build import build_transforms
from engine.transforms.base import BaseTransform
from engine.transforms.pipe import Compose, OneOf, RandomChoice
from engine.transforms.pixel import (
    BasicColorTransform, Normalize, RandomBrightness, RandomBrightnessContrast, RandomCLAHE, RandomColorJitter,
    RandomCompress, RandomContrast, RandomGamma, RandomGaussianBlur, RandomHue, RandomSaturation, RandomSharpen,
    RandomToneCurve, ToGray,
)
from engine.transforms.spatial import Pad32, RandomAffine, RandomCrop, RandomFlip, RandomResize, Resize
from engine.transforms.mix import MosaicTransform

TransformCompose = Compose  # the seed's name of the pipeline

__all__ = [
    "BUILD_TRANSFORMER_REGISTRY", "build_transform", "build_transforms", "BaseTransform", "BasicColorTransform",
    "Compose", "OneOf", "RandomChoice", "TransformCompose",
    "RandomBrightness", "RandomContrast", "RandomSaturation", "RandomHue", "RandomGamma", "RandomCLAHE",
    "RandomCompress", "RandomSharpen", "RandomToneCurve", "RandomBrightnessContrast", "RandomGaussianBlur",
    "ToGray", "Normalize", "RandomColorJitter",
    "RandomAffine", "RandomFlip", "Resize", "RandomResize", "RandomCrop", "Pad32", "MosaicTransform",
]
