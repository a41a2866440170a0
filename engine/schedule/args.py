"""The command line of every engine entry point (the seed's flags plus the launchers')."""

from __future__ import annotations

import argparse
from typing import List, Optional


def _resume_mode(text: str) -> str:
    if text.lower() != "auto":
        raise argparse.ArgumentTypeError(f"expected 'auto' or nothing, got {text!r}")
    return "auto"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train with engine. Launch with python, torchrun or deepspeed.",
        epilog="Example: deepspeed --num_gpus 2 train.py --config-file cfg.py --opts solver.max_iter 100",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file (.py, .yaml)")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine when launched with plain python (ignored under a launcher)")
    parser.add_argument("--num-machines", type=int, default=1, help="machines (plain python multi-machine runs)")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's index (plain python)")
    parser.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0, or 'auto' (plain python)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, choices=(True, "auto"), type=_resume_mode,
                        metavar="auto", help="resume from the newest complete checkpoint in output_dir; "
                                             "'--resume auto': the same, and a quiet fresh start when there is none "
                                             "(one command line for the first start and every requeue)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle checkpoint files (--resume, trainer.weights) with weights_only=False; "
                             "only for files you trust (default: engine's safe loader refuses unknown types)")
    parser.add_argument("--distribute", action="store_true", help="TrainFramework compatibility; distribution follows the launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides as dotted KEY VALUE pairs, e.g. solver.max_iter 500")
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)
