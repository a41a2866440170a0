"""Stop and save requests from outside the loop: signals and trigger files, agreed on by every rank.

Why a flag and a step boundary: a signal handler that saved would run in the middle of a
collective or an optimizer update; here the handler only records the signal, and the
checkpoint hook asks :class:`StopRequests` after each step. Every rank then takes part in
one small all-reduce (MAX) of what it saw, so a signal that reached only some ranks (SLURM
signals a step's tasks one by one; ``kill`` hits one pid) stops every rank after the same
step, and they save one complete tag together.

Trigger files are for people without signals: ``output_dir/SAVE_NOW`` saves a tag and goes
on, ``output_dir/STOP_NOW`` saves and stops as a signal would. Rank 0 removes the file once
the save is complete, so a requeued run does not stop again at its first step.

A stop ends the process with :data:`EXIT_REQUEUE` (75, ``EX_TEMPFAIL``: "try again"), see
``docs/preemption.md`` for SLURM ``--requeue`` and torchrun ``--max-restarts``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any, Dict, List, Optional, Sequence

import torch

from engine import comm
from engine.checkpoint.state import new_sync_group
from engine.errors import ConfigError
from engine.utils.suggest import did_you_mean

logger = logging.getLogger("engine")

#: Exit code of a run stopped by a signal or ``STOP_NOW`` after a complete save: EX_TEMPFAIL
#: from sysexits.h, i.e. "temporary failure, run me again".
EXIT_REQUEUE = 75
SAVE_NOW = "SAVE_NOW"
STOP_NOW = "STOP_NOW"


def signal_numbers(names: Sequence[str], where: str = "solver.save_on_signal") -> List[int]:
    """``["SIGTERM", "usr1"]`` → signal numbers; an unknown name is a ``ConfigError`` with close names.

    Args:
        names: signal names, with or without the ``SIG`` prefix, any case.
        where: the config key path, for the message.

    Returns:
        The signal numbers, in the order given, without duplicates.
    """
    known = {s.name: s for s in signal.Signals}
    numbers: List[int] = []
    for name in names:
        key = str(name).upper()
        key = key if key.startswith("SIG") else "SIG" + key
        if key not in known or key in ("SIGKILL", "SIGSTOP"):
            catchable = [n for n in known if n not in ("SIGKILL", "SIGSTOP")]
            raise ConfigError(f"{where}: {name!r} is not a signal that can be caught; expected names like "
                              f"SIGTERM, SIGUSR1, SIGINT.{did_you_mean(key, catchable)}")
        if int(known[key]) not in numbers:
            numbers.append(int(known[key]))
    return numbers


class SignalFlag:
    """Signal handlers that only record what arrived; the previous handlers come back on ``uninstall``.

    A second signal while a save runs changes nothing but the count: nothing is interrupted,
    so nothing on disk can be half written by the handler itself.
    """

    def __init__(self, numbers: Sequence[int]) -> None:
        self.numbers = list(numbers)
        self.received: Optional[int] = None  # the first signal that came
        self.count = 0
        self._previous: Dict[int, Any] = {}

    def install(self) -> bool:
        """Install the handlers; returns False (and installs nothing) outside the main thread."""
        if not self.numbers or threading.current_thread() is not threading.main_thread():
            return False
        for number in self.numbers:
            self._previous[number] = signal.signal(number, self._handle)
        return True

    def uninstall(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, number: int, frame: Optional[FrameType]) -> None:
        self.count += 1
        if self.received is None:
            self.received = number


@dataclass(frozen=True)
class Request:
    """What every rank agreed on after a step: save a tag, stop after it, and why."""

    save: bool = False
    stop: bool = False
    reason: str = ""


NO_REQUEST = Request()


class StopRequests:
    """Signals and trigger files of this rank, turned into one decision shared by every rank.

    Args:
        output_dir: where ``SAVE_NOW`` / ``STOP_NOW`` are looked for.
        signals: signal numbers that request save-and-stop (empty: none are caught).
        timeout_s: how long the per-step agreement waits for a slow rank (``trainer.dist_timeout``).
    """

    def __init__(self, output_dir: str, signals: Sequence[int], timeout_s: float = 1800.0) -> None:
        self.output_dir = output_dir
        self.flag = SignalFlag(signals)
        self.timeout_s = timeout_s
        self._group: Any = None

    def start(self) -> None:
        """Install the handlers and make the gloo group of the agreement (collective: every rank calls it)."""
        self._group = new_sync_group(self.timeout_s)
        self.flag.install()

    def stop(self) -> None:
        self.flag.uninstall()

    def poll(self) -> Request:
        """Every rank's signals and trigger files, agreed on (a collective on every rank, every call)."""
        world, rank = comm.get_world_size(), comm.get_rank()
        seen = torch.zeros(world + 2, dtype=torch.int64)  # [signal of each rank..., SAVE_NOW, STOP_NOW]
        seen[rank] = self.flag.received or 0
        seen[world] = int(os.path.exists(os.path.join(self.output_dir, SAVE_NOW)))
        seen[world + 1] = int(os.path.exists(os.path.join(self.output_dir, STOP_NOW)))
        if world > 1 and comm.is_dist():
            import torch.distributed as dist

            # a lost or stuck peer times out here like any collective (trainer.dist_timeout) and is
            # reported by the scheduler as a peer loss, so the error is not wrapped
            dist.all_reduce(seen, op=dist.ReduceOp.MAX, group=self._group)
        by_rank = {r: signal.Signals(int(n)).name for r, n in enumerate(seen[:world].tolist()) if n}
        if by_rank:
            names = ", ".join(f"{name} on rank {r}" for r, name in sorted(by_rank.items()))
            return Request(save=True, stop=True, reason=names)
        if seen[world + 1]:
            return Request(save=True, stop=True, reason=f"{STOP_NOW} in {self.output_dir}")
        if seen[world]:
            return Request(save=True, stop=False, reason=f"{SAVE_NOW} in {self.output_dir}")
        return NO_REQUEST

    def done(self, request: Request) -> None:
        """After the requested save: rank 0 removes the trigger file that asked for it."""
        if not comm.is_main_process():
            return
        for name in (SAVE_NOW, STOP_NOW):
            if name in request.reason:
                try:
                    os.remove(os.path.join(self.output_dir, name))
                except FileNotFoundError:
                    pass

    def late_signals(self) -> int:
        """Signals that came after the first (during the save); they were recorded and ignored."""
        return max(0, self.flag.count - 1)
