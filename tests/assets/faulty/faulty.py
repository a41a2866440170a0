"""The toy project with faults on demand, for tests/distributed/test_rank_failure.py.

``ENGINE_TEST_FAULT=<kind>:<rank>:<step>`` picks one fault (env, so that one config serves
every case and a rank can be singled out):

- ``raise``: the model raises ``ValueError`` in that rank's step ``step``
- ``kill``: that rank SIGKILLs itself in step ``step`` (an OOM kill, a lost node)
- ``hang``: that rank sleeps for an hour in step ``step`` (a stuck rank: peers wait in a collective)
- ``worker_crash`` / ``worker_hang`` / ``worker_raise``: a data-loader worker of that rank dies
  of SIGKILL / sleeps / raises when it loads its first sample (``step`` is ignored)
"""

import os
import signal
import sys
import time

from torch.utils.data import get_worker_info

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "toy"))

import toy  # noqa: E402
from engine import comm  # noqa: E402
from engine.data.build import BUILD_DATASET_REGISTRY  # noqa: E402
from engine.model.build import BUILD_MODEL_REGISTRY  # noqa: E402


def fault(kinds):
    """(kind, rank, step) when ENGINE_TEST_FAULT names one of ``kinds`` for this rank, else None."""
    spec = os.environ.get("ENGINE_TEST_FAULT", "")
    if not spec:
        return None
    kind, rank, step = spec.split(":")
    if kind not in kinds or int(rank) != int(os.environ.get("RANK", 0)):
        return None
    return kind, int(rank), int(step)


def announce(kind):
    """The moment of the fault, for the tests' fault-to-exit timing."""
    print(f"FAULT {kind} at {time.time():.3f}", flush=True)


@BUILD_DATASET_REGISTRY.register()
class FaultyRegression(toy.ToyRegression):
    def __getitem__(self, index):
        found = fault(("worker_crash", "worker_hang", "worker_raise"))
        if found and get_worker_info() is not None:
            announce(found[0])
            if found[0] == "worker_crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if found[0] == "worker_hang":
                time.sleep(3600)
            raise ValueError(f"faulty dataset: sample {index} cannot be decoded")
        return super().__getitem__(index)


@BUILD_MODEL_REGISTRY.register()
class FaultyModel(toy.ToyModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.steps_run = 0

    def run_step(self, data, *, epoch=None, **kwargs):
        found = fault(("raise", "kill", "hang"))
        if found and found[2] == self.steps_run:
            kind, rank, step = found
            announce(kind)
            if kind == "raise":
                raise ValueError(f"faulty model: rank {comm.get_rank()} fails at step {step}")
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        self.steps_run += 1
        return super().run_step(data, epoch=epoch, **kwargs)
