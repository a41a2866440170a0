"""Importing this package registers the digits example's dataset, network, model and trainer."""

from codes.dataset import DigitsDataset
from codes.model import DigitsModel
from codes.network import DigitsNet
from codes.trainer import DigitsTrainer

__all__ = ["DigitsDataset", "DigitsModel", "DigitsNet", "DigitsTrainer"]
