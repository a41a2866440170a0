"""Entry point: python|torchrun|deepspeed examples/gpt/train.py --config-file examples/gpt/configs/zero2.py"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpt  # noqa: E402,F401  (importing registers the example's classes)
import hf_network  # noqa: E402,F401  (the Hugging Face network; transformers is imported only when used)
from engine.schedule.scheduler import BaseScheduler  # noqa: E402

if __name__ == "__main__":
    BaseScheduler().schedule()
