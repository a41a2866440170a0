import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine.schedule.scheduler import BaseScheduler  # noqa: E402
from codes import *  # noqa: E402,F401,F403  (registers the project's classes)

if __name__ == '__main__':
    BaseScheduler().schedule()
