"""Run several trainings one after another in one process: a test file's scenarios share one start.

Usage (under torchrun or the deepspeed launcher, or plain ``python`` for one rank)::

    scenarios.py SPEC.json

SPEC is the last argument: the deepspeed launcher puts ``--local_rank=N`` before it.

SPEC holds ``{"imports": [module files], "runs": [{"name": ..., "argv": [...]}, ...]}``.
The module files are imported first (they register the test's models, hooks, trainers); then
each run is ``BaseScheduler(argv).schedule()``, its stdout and stderr written to
``<SPEC stem>.<name>.rank<r>.out`` next to SPEC, and every rank's exit code of each run to
``<SPEC stem>.rank<r>.json`` (0, or the code of the ``SystemExit`` it ended with; ``null``
while it runs). The process itself exits 0 once every run has ended: that file, not the
exit status, is the outcome (a test may expect a run to fail). A run that ends the process
itself (``solver.stop_at_iter``, a preemption) leaves ``null`` and must come last.

Why one process: a 2-rank start costs ~10 s of CPU in imports alone, more than a toy
training. The process group stays up between runs: engine's shutdown is replaced by a
barrier until the last run, because a second gloo rendezvous in the same torchrun process
waits forever. Each run still seeds itself, builds its own engines and reads its own
checkpoints, so what a run computes does not depend on the runs before it; a resume test
keeps its resume in a start of its own (a new process reading files only).
"""

import contextlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from engine.schedule import launch
from engine.schedule.scheduler import BaseScheduler


def import_file(path: str) -> None:
    """Import a module file under its stem, as a training script would import it."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = Path(path).stem
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def keep_group_between_runs(last: bool) -> None:
    """Until the last run, engine's end-of-run shutdown only synchronises the ranks."""
    import torch.distributed as dist

    def barrier_only(barrier: bool = True) -> None:
        if barrier and dist.is_initialized():
            dist.barrier()

    launch.shutdown_distributed = real_shutdown if last else barrier_only


def run_one(argv: list, out_file: Path) -> int:
    """One training, its console output in ``out_file``; returns its exit code."""
    with open(out_file, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            BaseScheduler(argv).schedule()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
    return 0


real_shutdown = launch.shutdown_distributed

if __name__ == "__main__":
    spec_path = Path(sys.argv[-1])  # the deepspeed launcher adds --local_rank=N before it
    spec = json.loads(spec_path.read_text())
    for module_file in spec.get("imports", []):
        import_file(module_file)
    rank = int(os.environ.get("RANK", 0))
    codes = {}
    for i, run in enumerate(spec["runs"]):
        keep_group_between_runs(last=i == len(spec["runs"]) - 1)
        out_file = spec_path.with_name(f"{spec_path.stem}.{run['name']}.rank{rank}.out")
        codes_file = spec_path.with_name(f"{spec_path.stem}.rank{rank}.json")
        codes[run["name"]] = None
        codes_file.write_text(json.dumps(codes))
        codes[run["name"]] = run_one(run["argv"], out_file)
        codes_file.write_text(json.dumps(codes))
