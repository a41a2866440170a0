"""The GAN bundle: non-saturating loss, D then G each micro-batch, through BaseGanModel's helpers."""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch.nn import functional as F

from engine.model.build import BUILD_MODEL_REGISTRY
from engine.model.gan_model import BaseGanModel


@BUILD_MODEL_REGISTRY.register()
class DigitsGan(BaseGanModel):
    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.z_dim = int(cfg.TRAINER.MODEL.GENERATOR.get("z_dim", 32))

    def run_step(self, data: Dict[str, torch.Tensor], *, epoch: Any = None, **kwargs: Any) -> Dict[str, torch.Tensor]:
        real = self.to_device(data["input_data"])
        labels = self.to_device(data["target_data"])
        fake = self.g_model(self.to_device(torch.randn(len(real), self.z_dim)), labels)

        real_logit = self.dmodel_forward(real, labels)
        fake_logit = self.dmodel_forward(fake.detach(), labels)
        d_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        self.d_backward_step(d_loss)

        # D's parameters stay frozen from this forward until g_backward_step (DeepSpeed needs that)
        g_loss = F.softplus(-self.dmodel_forward(fake, labels, for_generator=True)).mean()
        self.g_backward_step(g_loss)
        return {"d_real": torch.sigmoid(real_logit).mean(), "d_fake": torch.sigmoid(fake_logit).mean()}

    def generator(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images for (noise, label); on EMA weights inside ``eval_context()`` or after ``disable_train()``."""
        return self.g_model(*self.to_device((z, labels)))
