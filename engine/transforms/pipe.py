"""Composition: run transforms in order, or pick one of several per sample."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from engine.transforms.base import BaseTransform, config_error
from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY, build_transform

Transform = Callable[[dict], dict]


class _Composite(BaseTransform):
    """Holds child transforms given as built callables or as ``dict(name=..., ...)`` specs."""

    def __init__(self, transforms: Sequence[Any], p: float = 1.0, *, dataset: Any = None) -> None:
        super().__init__(p)
        if isinstance(transforms, (str, dict)) or not isinstance(transforms, Sequence):
            raise config_error(self, "transforms", transforms, "a list of transforms or transform dicts")
        owner = type(self).__name__
        self.transforms: List[Transform] = [
            build_transform(t, where=f"{owner}.transforms[{i}]", dataset=dataset) for i, t in enumerate(transforms)
        ]

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{type(self).__name__}(p={self.p}, transforms=[{inner}\n])"


@BUILD_TRANSFORMER_REGISTRY.register()
class Compose(_Composite):
    """Run ``transforms`` in order (all of them, with probability ``p``).

    A transform that returns ``None`` drops the sample: the rest are skipped and ``None`` is
    returned, so a dataset can retry with another index.
    """

    def transform(self, results: dict) -> Optional[dict]:
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results


def _weights(owner: Any, weights: Optional[Sequence[float]], n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n) if n else np.zeros(0)
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1) if np.ndim(weights) == 1 else None
    except (TypeError, ValueError):
        w = None
    if w is None or w.size != n or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise config_error(owner, "weights", weights, f"{n} non-negative numbers, not all zero (one per transform)")
    return w / w.sum()


def _pick(weights: np.ndarray) -> int:
    """One weighted index from numpy's global RNG (the loader seeds it per sample)."""
    return int(min(np.searchsorted(np.cumsum(weights), np.random.random(), side="right"), len(weights) - 1))


@BUILD_TRANSFORMER_REGISTRY.register()
class OneOf(_Composite):
    """With probability ``p``, apply exactly one child (albumentations' semantics).

    The child is picked with probability proportional to its own ``p`` (children without
    one weigh 1) and then applied unconditionally: the children's ``p`` are relative weights,
    not gates. Use :class:`RandomChoice` to keep the children's own gates.
    """

    def __init__(self, transforms: Sequence[Any], p: float = 0.5, *, dataset: Any = None) -> None:
        super().__init__(transforms, p, dataset=dataset)
        child_p = [getattr(t, "p", 1.0) for t in self.transforms]
        self._weights = _weights(self, child_p, len(self.transforms)) if sum(child_p) > 0 else \
            _weights(self, None, len(self.transforms))

    def transform(self, results: dict) -> dict:
        if not self.transforms:
            return results
        chosen = self.transforms[_pick(self._weights)]
        return chosen.transform(results) if isinstance(chosen, BaseTransform) else chosen(results)


@BUILD_TRANSFORMER_REGISTRY.register()
class RandomChoice(_Composite):
    """With probability ``p``, call one child picked by ``weights`` (uniform by default).

    Unlike :class:`OneOf` the chosen child still applies its own probability (torchvision's
    ``RandomChoice``).
    """

    def __init__(self, transforms: Sequence[Any], weights: Optional[Sequence[float]] = None, p: float = 1.0,
                 *, dataset: Any = None) -> None:
        super().__init__(transforms, p, dataset=dataset)
        self.weights = weights
        self._weights = _weights(self, self.weights, len(self.transforms))

    def transform(self, results: dict) -> dict:
        if not self.transforms:
            return results
        return self.transforms[_pick(self._weights)](results)
