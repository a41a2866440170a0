"""The seed's package name (``engine.slover``, sic) for the LR schedulers, kept so its imports work.

New code imports ``engine.solver``; this package only re-exports from it.
"""

from engine.solver import LRMultiplierScheduler, WarmupCosineLR, WarmupMultiStepLR, WarmupPolynomialDecay

__all__ = ["LRMultiplierScheduler", "WarmupCosineLR", "WarmupMultiStepLR", "WarmupPolynomialDecay"]
