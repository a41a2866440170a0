"""The digits trainer: validation accuracy as the evaluation metric, a verdict at the end."""

from __future__ import annotations

import logging
from typing import Any, Dict

import torch

from engine import comm
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer, iterate_evenly

logger = logging.getLogger("engine")
TARGET_ACCURACY = 0.95


@BUILD_TRAINER_REGISTRY.register()
class DigitsTrainer(BaseTrainer):
    def evaluate(self, model: Any, data_loader: Any) -> Dict[str, float]:
        correct = torch.zeros((), dtype=torch.float64)
        seen = torch.zeros((), dtype=torch.float64)
        for batch, weight in iterate_evenly(data_loader):
            logits = model.generator(batch["input_data"])
            hits = (logits.argmax(dim=1).cpu() == batch["target_data"]).double().sum()
            correct += hits * weight
            seen += len(batch["target_data"]) * weight
        totals = comm.all_reduce_sum(torch.stack([correct, seen]))
        return {"val/accuracy": (totals[0] / totals[1]).item()}

    def after_loop(self) -> None:
        accuracy = self.latest_metrics.get("val/accuracy")
        if accuracy is None:
            return
        verdict = "reached" if accuracy >= TARGET_ACCURACY else "did NOT reach"
        logger.info(f"final validation accuracy {accuracy:.4f}: {verdict} the {TARGET_ACCURACY:.0%} target")
