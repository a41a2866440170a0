"""scikit-learn's bundled handwritten digits (1,797 real 8×8 scans): no download needed."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch

import engine.transforms.functional as F
from engine.data.build import BUILD_DATASET_REGISTRY
from engine.data.dataset import EngineDataSet


@BUILD_DATASET_REGISTRY.register()
class DigitsDataset(EngineDataSet):
    """The digits as uint8 images (upscaled to ``size``), split deterministically into train/val.

    Args:
        split: ``train`` or ``val``.
        val_fraction: share of the 1,797 images held out for validation.
        size: side of the square image fed to the network.
        transformer: augmentation configs (engine.transforms).
    """

    def __init__(self, split: str = "train", val_fraction: float = 0.2, size: int = 16,
                 transformer: Optional[List[Dict[str, Any]]] = None) -> None:
        super().__init__(transformer)
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.RandomState(0).permutation(len(digits.target))  # fixed split, whatever the run seed
        n_val = int(round(len(order) * val_fraction))
        chosen = order[:n_val] if split == "val" else order[n_val:]
        images = (digits.images[chosen] * (255.0 / 16.0)).round().astype(np.uint8)
        import cv2

        self.images = [cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR) for img in images]
        self.targets = digits.target[chosen].astype(np.int64)

    def get_results(self, index: int) -> Dict[str, Any]:
        img = self.images[index]
        return {
            "img": img.copy(), "img_shape": img.shape[:2], "ori_shape": img.shape[:2],
            "img_fields": ["img"], "color_fields": ["img"],
        }

    def __getitem__(self, index: int) -> Dict[str, Any]:
        results = self.data_pipeline(self.get_results(index))
        return {"input_data": F.to_tensor(results["img"]), "target_data": torch.tensor(self.targets[index])}

    def __len__(self) -> int:
        return len(self.targets)
