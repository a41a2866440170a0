"""Model bundles and networks: the names seed-era code imports from ``engine.model``."""

from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY, build_model, build_network
from engine.model.base_model import BaseModel
from engine.model.gan_model import BaseGanModel
from engine.model.ema import ModelEMA

#: the seed's name of the EMA class (engine's ModelEMA: built by the bundle from solver.ema)
EMA = ModelEMA

__all__ = ["BUILD_MODEL_REGISTRY", "BUILD_NETWORK_REGISTRY", "BaseGanModel", "BaseModel", "EMA", "ModelEMA",
           "build_model", "build_network"]
