"""Entry point: python|torchrun|deepspeed examples/gan_digits/train.py --config-file examples/gan_digits/configs/gan_digits.py"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # gan_codes
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "digits"))  # the digits example's dataset, reused

import codes.dataset  # noqa: E402,F401  (registers DigitsDataset)
import gan_codes  # noqa: E402,F401  (registers the GAN networks, model and trainer)
from engine.schedule.scheduler import BaseScheduler  # noqa: E402

if __name__ == "__main__":
    BaseScheduler().schedule()
