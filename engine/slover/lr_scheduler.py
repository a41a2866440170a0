"""``engine.slover.lr_scheduler`` of the seed: the same schedulers as ``engine.solver.lr_scheduler``."""

from engine.solver.lr_scheduler import LRMultiplierScheduler, WarmupCosineLR, WarmupMultiStepLR, WarmupPolynomialDecay

__all__ = ["LRMultiplierScheduler", "WarmupCosineLR", "WarmupMultiStepLR", "WarmupPolynomialDecay"]
