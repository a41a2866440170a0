import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faulty  # noqa: E402,F401
from engine.schedule.scheduler import BaseScheduler  # noqa: E402

if __name__ == "__main__":
    BaseScheduler().schedule()
