"""Shared helpers of the test suite: running engine entry points as a user would, with timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "assets" / "toy"
DIGITS = REPO / "examples" / "digits"


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
