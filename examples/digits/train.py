"""Entry point: python|torchrun|deepspeed examples/digits/train.py --config-file examples/digits/configs/digits.py"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # so `codes` imports from anywhere

import codes  # noqa: E402,F401  (importing registers the example's classes)
from engine.schedule.scheduler import BaseScheduler  # noqa: E402

if __name__ == "__main__":
    BaseScheduler().schedule()
