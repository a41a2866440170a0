"""The digits model bundle: cross-entropy through LossKeyCompose, accuracy logged beside it."""

from __future__ import annotations

from typing import Any, Dict

import torch

from engine.loss.pipe import LossKeyCompose
from engine.model.base_model import BaseModel
from engine.model.build import BUILD_MODEL_REGISTRY


@BUILD_MODEL_REGISTRY.register()
class DigitsModel(BaseModel):
    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.loss = LossKeyCompose(cfg.TRAINER.MODEL.LOSS)

    def run_step(self, data: Dict[str, torch.Tensor], *, epoch: Any = None, **kwargs: Any) -> Dict[str, torch.Tensor]:
        images = self.to_device(data["input_data"])
        targets = self.to_device(data["target_data"])
        logits = self.g_model(images)
        loss = self.loss({"cls": [(logits, targets)]})
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
        return {"loss": loss, "acc": accuracy}

    def generator(self, data: torch.Tensor) -> torch.Tensor:
        return self.g_model(self.to_device(data))
