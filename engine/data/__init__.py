"""Datasets and loaders: the names seed-era code imports from ``engine.data``."""

from engine.data.build import BUILD_DATASET_REGISTRY, build_dataset
from engine.data.dataset import EngineDataSet

__all__ = ["BUILD_DATASET_REGISTRY", "EngineDataSet", "build_dataset"]
