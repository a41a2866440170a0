"""Shared helpers of the test suite: running engine entry points as a user would, with timeouts."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import itertools
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "assets" / "toy"
DIGITS = REPO / "examples" / "digits"

#: master ports the tests hand out: below Linux's ephemeral range (32768-60999), so no process's outgoing
#: connection or ``bind(0)`` takes one between the test picking it and the launcher binding it
_PORTS = range(20000, 32000)


def _my_ports() -> List[int]:
    """This pytest process's candidate ports, in the order it hands them out.

    Under pytest-xdist every worker gets its own residue class of ``_PORTS`` (worker ``gw<i>`` of ``n``
    takes the ports ``p`` with ``p % n == i``), so two test files running at once never pick the same port;
    the order starts at a random place so that two sessions on one machine rarely walk in step.
    """
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    mine = [p for p in _PORTS if p % count == index % count]
    start = random.randrange(len(mine))
    return mine[start:] + mine[:start]


_MY_PORTS = itertools.cycle(_my_ports())


def free_port() -> int:
    """A TCP port nobody listens on now, for a launcher's ``--master_port`` (see :data:`_PORTS`).

    Returns:
        The next of this process's candidates that can be bound on every interface.

    Raises:
        AssertionError: none of them could (after one whole round).
    """
    for port in itertools.islice(_MY_PORTS, len(_PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port among {_PORTS}")


def run_cli(cmd: List[str], *, timeout: float = 240, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the whole group on timeout so nothing lingers."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    full_env.pop("RANK", None)
    full_env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, _ = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its process group and every descendant.

    Killing the group is not enough: torchrun starts each rank in a session of its own.
    """
    import psutil

    try:
        family = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def launcher_cmd(launcher: str, script: Path, nproc: int, port: int) -> List[str]:
    """The command line that starts ``script`` with ``nproc`` processes under ``launcher``."""
    if launcher == "python":
        return [sys.executable, str(script)]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={port}", str(script)]
    if launcher == "deepspeed":
        return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc),
                "--master_port", str(port), str(script)]
    raise ValueError(launcher)


def read_records(output_dir: Path, world_size: int) -> List[dict]:
    return [json.loads((output_dir / f"record_rank{r}.json").read_text()) for r in range(world_size)]


class Outcome(NamedTuple):
    """One run of :func:`run_scenarios`: its exit code on every rank and rank 0's console output.

    A last run that ended the process itself has the start's exit status on every rank
    (torchrun's is 0 only when every rank's was).
    """

    codes: List[int]
    stdout: str


def run_scenarios(runs: List[Tuple[str, List[str]]], workdir: Path, *, nproc: int = 2, imports: Iterable[Path] = (),
                  timeout: float = 300, env: Optional[Dict[str, str]] = None,
                  launcher: Optional[str] = None) -> Dict[str, Outcome]:
    """Run trainings one after another in one start of ``nproc`` processes (tests/assets/scenarios.py).

    Args:
        runs: (name, training argv) in order; a later run may read what an earlier one wrote.
        workdir: where the spec and each run's console output go.
        nproc: ranks; 1 runs under plain ``python``, more under torchrun.
        imports: module files imported before the first run (the test's registered classes).
        timeout: for the whole start, in seconds.
        env: extra environment of the start.
        launcher: as :func:`launcher_cmd` names them; by default torchrun for more than one rank.

    Returns:
        Run name → its :class:`Outcome`.

    Raises:
        AssertionError: a run did not end, other than the last one ending the process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "scenarios.json"
    spec.write_text(json.dumps({"imports": [str(p) for p in imports], "runs": [
        {"name": name, "argv": [str(a) for a in argv]} for name, argv in runs]}))
    launcher = launcher or ("torchrun" if nproc > 1 else "python")
    result = run_cli(launcher_cmd(launcher, REPO / "tests" / "assets" / "scenarios.py", nproc, free_port())
                     + [str(spec)], timeout=timeout, env=env)
    codes = []
    for rank in range(nproc):
        done = workdir / f"scenarios.rank{rank}.json"
        assert done.exists(), result.stdout[-4000:]
        codes.append(json.loads(done.read_text()))
    last = runs[-1][0]
    for c in codes:
        if c.get(last, 0) is None:
            c[last] = result.returncode  # it ended the process (solver.stop_at_iter, a preemption)
    unfinished = [name for name, _ in runs if any(c.get(name) is None for c in codes)]
    assert not unfinished and (result.returncode == 0 or codes[0][last] != 0), (unfinished, result.stdout[-4000:])
    return {name: Outcome([c[name] for c in codes], (workdir / f"scenarios.{name}.rank0.out").read_text())
            for name, _ in runs}


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, imported once: its ``main(argv)`` runs in this process."""
    if name not in _TOOLS:
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[name] = module
    return _TOOLS[name]


_TOOLS: Dict[str, ModuleType] = {}


def run_tool(name: str, *args) -> subprocess.CompletedProcess:
    """``tools/<name>.py ARGS`` in this process, as :func:`run_cli` would report it (stdout and stderr together).

    A tool start costs seconds of imports that the test process has already paid; the tools'
    own command lines stay covered by the tests that start them as a user would.
    """
    return run_main(load_tool(name).main, name, *args)


def run_main(main: Callable[[List[str]], Optional[int]], name: str, *args) -> subprocess.CompletedProcess:
    """``main(ARGS)`` of a command-line entry point in this process, reported as :func:`run_cli` would.

    Args:
        main: the entry point; it returns its exit code, or ends with ``SystemExit``.
        name: the command's name, for the reported ``args``.
        args: its command-line arguments (converted with ``str``).

    Returns:
        The exit code (0 for ``None``) and stdout and stderr together as ``stdout``.
    """
    argv = [str(a) for a in args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse, or an entry point that exits instead of returning
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess([name, *argv], code or 0, out.getvalue(), "")
