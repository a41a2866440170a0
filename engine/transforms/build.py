"""``build_transforms``: a config list into one pipeline; also the seed's path of ``BUILD_TRANSFORMER_REGISTRY``.

The registry and ``build_transform`` live in ``engine.transforms.registry``, below ``pipe.py``
(whose Compose/OneOf build their children with them), so this module may import ``Compose``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from engine.errors import ConfigError
from engine.transforms.pipe import Compose
from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY, build_transform

__all__ = ["BUILD_TRANSFORMER_REGISTRY", "build_transform", "build_transforms"]


def build_transforms(specs: Optional[Sequence[Any]], *, where: str = "transformer", dataset: Any = None):
    """Build a dataset's ``transformer`` list into one :class:`~engine.transforms.pipe.Compose`.

    Args:
        specs: list of ``dict(name=..., **params)`` (or callables); ``None`` is an empty pipeline.
        where: config key path of the list, e.g. ``dataloader.train_data_set.transformer``;
            items are named ``<where>[i]`` in errors.
        dataset: the dataset the pipeline belongs to, handed to transforms that take one
            (``MosaicTransform`` draws its extra images from it).

    Returns:
        A ``Compose`` calling the transforms in order.
    """
    if specs is None:
        specs = []
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ConfigError(f"{where}: expected a list of transform dicts, got {specs!r}")
    return Compose([build_transform(s, where=f"{where}[{i}]", dataset=dataset) for i, s in enumerate(specs)])
