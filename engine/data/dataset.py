"""``EngineDataSet``: the base class of user datasets (the seed's contract)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from torch.utils.data import Dataset

from engine.data.build import current_config_path
from engine.transforms.build import build_transforms


class EngineDataSet(Dataset):
    """A dataset whose subclasses fill a ``results`` dict and call ``self.data_pipeline(results)``.

    Args:
        transformer: transform configs, ``[dict(name='RandomFlip', p=0.5), ...]``, built
            through ``BUILD_TRANSFORMER_REGISTRY`` into ``self.data_pipeline``.

    Subclasses implement ``__getitem__`` and ``__len__``; those used with mix transforms
    (``MosaicTransform``) also implement ``get_results(index)``, the un-augmented results
    dict of one sample, which the mosaic draws its extra images from.
    """

    def __init__(self, transformer: Optional[List[Dict[str, Any]]] = None) -> None:
        super().__init__()
        self.data_pipeline = build_transforms(
            list(transformer or []), where=f"{current_config_path()}.transformer", dataset=self
        )

    def get_results(self, index: int) -> Dict[str, Any]:
        raise NotImplementedError(
            f"{type(self).__name__}.get_results(index) is needed by mix transforms such as MosaicTransform: "
            "return the results dict of sample `index` before data_pipeline"
        )
