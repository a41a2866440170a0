"""Importing this package registers the GAN example's networks, model and trainer (and the digits dataset)."""

from gan_codes.model import DigitsGan
from gan_codes.network import DigitsDiscriminator, DigitsGenerator
from gan_codes.trainer import GanDigitsTrainer

__all__ = ["DigitsGan", "DigitsDiscriminator", "DigitsGenerator", "GanDigitsTrainer"]
