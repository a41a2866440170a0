"""Generic training entry: import the user's modules, then run the scheduler.

    python tools/train.py --import codes --code-dir examples/digits --config-file examples/digits/configs/digits.py
    torchrun --nproc_per_node 2 tools/train.py --import codes --code-dir examples/digits --config-file ...

``--import MODULE`` (repeatable) names the modules whose import registers the user's
networks, datasets, models and trainers; ``--code-dir DIR`` is put on ``sys.path`` first.
Every other flag is the scheduler's (``--config-file --num-gpus --resume --opts ...``).
"""

import argparse
import sys
from typing import List, Tuple


def split_argv(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--import", dest="modules", action="append", default=[])
    parser.add_argument("--code-dir", dest="code_dirs", action="append", default=[])
    if "--opts" in argv:  # everything after --opts belongs to the config overrides
        cut = argv.index("--opts")
        known, rest = parser.parse_known_args(argv[:cut])
        return known, rest + argv[cut:]
    return parser.parse_known_args(argv)


def main(argv: List[str]) -> None:
    ours, scheduler_argv = split_argv(argv)
    from engine.schedule.scheduler import BaseScheduler
    from engine.schedule.user_code import import_user_modules

    import_user_modules(ours.modules, ours.code_dirs)

    BaseScheduler(scheduler_argv).schedule()


if __name__ == "__main__":
    main(sys.argv[1:])
