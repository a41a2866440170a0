"""Everything about how this process was started: launcher env, threads, process group.

Turns the launcher's environment variables into one ``LaunchInfo``. Supports plain
``python`` (world size 1, or ``--num-gpus N`` spawning N local workers), ``torchrun`` and
the ``deepspeed`` launcher, which all end up with RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* set.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional
from urllib.parse import urlparse

from engine.errors import ConfigError

logger = logging.getLogger(__name__)
_SHM_PATTERN = "/dev/shm/deepspeed_allreduce_buffer_*"


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "python", "spawn", "torchrun" or "deepspeed"


def launched_externally() -> bool:
    """Whether a launcher (torchrun, deepspeed, a spawn parent) already set the rendezvous env."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def read_launch_env() -> LaunchInfo:
    """Describe this process from the env a launcher set (call ``prepare_single_process_env`` first when none did)."""
    world = int(os.environ["WORLD_SIZE"])
    if "TORCHELASTIC_RUN_ID" in os.environ:
        launcher, local_world = "torchrun", int(os.environ.get("LOCAL_WORLD_SIZE", world))
    elif "LOCAL_SIZE" in os.environ:  # set by deepspeed/launcher/launch.py
        launcher, local_world = "deepspeed", int(os.environ["LOCAL_SIZE"])
    else:
        launcher, local_world = os.environ.get("ENGINE_LAUNCHER", "python"), int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return LaunchInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", 0)), local_world, launcher)


def parse_dist_url(dist_url: Optional[str]) -> tuple:
    """``tcp://host:port`` to (host, port); ``auto``/None picks a free local port."""
    if not dist_url or dist_url == "auto":
        return "127.0.0.1", free_port()
    parsed = urlparse(dist_url)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ConfigError(f"--dist-url: expected tcp://HOST:PORT or 'auto', got {dist_url!r}")
    return parsed.hostname, parsed.port


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_rendezvous_env(rank: int, world_size: int, local_rank: int, local_world_size: int,
                       master_addr: str, master_port: int, launcher: str) -> None:
    """What a launcher would have set; plain ``python`` runs need it (DeepSpeed otherwise tries MPI)."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(local_world_size), MASTER_ADDR=master_addr, MASTER_PORT=str(master_port),
        ENGINE_LAUNCHER=launcher,
    )


def configure_threads(info: LaunchInfo) -> int:
    """Give each local rank its share of the cores.

    The deepspeed launcher leaves every rank with all cores' worth of threads: on 2 cores
    with 2 ranks a step was 2.6× slower than with one thread per rank. An OMP_NUM_THREADS
    chosen by the user is kept (torchrun's own default of 1 is replaced by the fair share).
    """
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    user_choice = os.environ.get("OMP_NUM_THREADS")
    if user_choice and info.launcher != "torchrun" and user_choice.isdigit():
        threads = int(user_choice)
    else:
        threads = max(1, cores // max(1, info.local_world_size))
    torch.set_num_threads(threads)
    return threads


def select_device(requested: str) -> str:
    """``auto`` → cuda when a GPU is visible, else cpu; asking for cuda without one is an error."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise ConfigError("trainer.device = 'cuda', but no CUDA device is visible; use 'auto' or 'cpu'")
    device = "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"
    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed is imported
    return device


_ARCH_TOKEN = re.compile(r"^(\d+)\.(\d+)[a-z]?(\+PTX)?$", re.IGNORECASE)


def readable_arch_list(value: str) -> str:
    """``TORCH_CUDA_ARCH_LIST`` without architecture-specific suffixes: ``"8.0 9.0a+PTX"`` → ``"8.0;9.0+PTX"``.

    Other tokens (``Hopper``, typos) are kept as written; repeated ones appear once.
    """
    out = []
    for token in value.replace(" ", ";").split(";"):
        match = _ARCH_TOKEN.match(token.strip())
        fixed = f"{match[1]}.{match[2]}{match[3] or ''}" if match else token.strip()
        if fixed and fixed not in out:
            out.append(fixed)
    return ";".join(out)


def fix_cuda_arch_list() -> Optional[str]:
    """Rewrite ``TORCH_CUDA_ARCH_LIST`` so DeepSpeed's JIT op builds can read it; the note to log, if changed.

    DeepSpeed 0.19.8 sorts the list with ``int()`` on each part of ``major.minor``, so a
    suffixed entry, as set by CUDA images for Hopper (``9.0a``), stops the first JIT build
    (FusedAdam on GPU) with ``ValueError: invalid literal for int() with base 10: '0a'``.
    The base architecture builds DeepSpeed's ops the same.
    """
    value = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    fixed = readable_arch_list(value)
    if not value.strip() or fixed == ";".join(t for t in value.replace(" ", ";").split(";") if t):
        return None
    os.environ["TORCH_CUDA_ARCH_LIST"] = fixed
    return (f"TORCH_CUDA_ARCH_LIST={value!r} set to {fixed!r} for this run: DeepSpeed's JIT op builder cannot "
            "parse architecture suffixes like '9.0a'")


def init_distributed(info: LaunchInfo, device: str, *, shm_comm: bool, timeout_s: float = 1800.0) -> None:
    """Start the process group through DeepSpeed (gloo on CPU, nccl on GPU).

    ``timeout_s`` (``trainer.dist_timeout``) bounds how long a collective waits for a stuck
    rank. DeepSpeed makes its own groups (ZeRO's data-parallel group) with ``new_group()``
    and no timeout, which torch fills with its module default of 30 minutes, not the world
    group's: measured, a ZeRO-2 step with a hung peer waited past 120 s with a 5 s world
    timeout. Setting torch's default first makes every group honour ``timeout_s``.
    """
    import datetime

    import deepspeed
    import torch
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = datetime.timedelta(seconds=timeout_s)
    if getattr(c10d, "default_pg_nccl_timeout", None) is not None:
        c10d.default_pg_nccl_timeout = datetime.timedelta(seconds=timeout_s)

    if device == "cuda":
        torch.cuda.set_device(info.local_rank)
    elif not shm_comm:
        # The shm allreduce op JIT-compiles for ~50 s and leaks 2×66 MB /dev/shm files per run
        # under the deepspeed launcher; gloo alone trains identically.
        _mark_incompatible(deepspeed.ops, "deepspeed_shm_comm")
    deepspeed.init_distributed(
        dist_backend="nccl" if device == "cuda" else "gloo",
        auto_mpi_discovery=False,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


class _ProbeOnFirstRead(dict):
    """DeepSpeed's op-compatibility table that runs DeepSpeed's probe only when read.

    Reading ``deepspeed.ops.__compatible_ops__`` probes every op builder (C compiler
    subprocesses, library checks: ~0.6 s wall per rank here), yet a CPU run only needs to
    switch one op off. The keys set here answer at once; any other read fills the table
    from DeepSpeed's own probe first, so what DeepSpeed reports stays the same.
    """

    def __init__(self, probe: Callable[[], Dict[str, bool]], **known: bool) -> None:
        super().__init__(known)
        self._probe: Optional[Callable[[], Dict[str, bool]]] = probe

    def _fill(self) -> None:
        if self._probe is not None:
            probe, self._probe = self._probe, None
            known = dict(self)
            self.update(probe())
            self.update(known)  # what was set by hand wins, as it did over the probed table

    def __getitem__(self, key: str) -> bool:
        if not dict.__contains__(self, key):
            self._fill()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self._fill()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        if not dict.__contains__(self, key):
            self._fill()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)

    def keys(self) -> Any:
        self._fill()
        return dict.keys(self)

    def values(self) -> Any:
        self._fill()
        return dict.values(self)

    def items(self) -> Any:
        self._fill()
        return dict.items(self)


def _mark_incompatible(ops: Any, name: str) -> None:
    """Set ``ops.__compatible_ops__[name] = False`` without running DeepSpeed's probe now.

    Args:
        ops: the ``deepspeed.ops`` module, whose ``__getattr__`` probes on first access.
        name: the op to switch off (``deepspeed_shm_comm``).
    """
    table = vars(ops).get("__compatible_ops__")
    probe = getattr(ops, "_probe_compatible_ops", None)  # DeepSpeed's lazy probe (0.19+)
    if table is None and probe is None:  # a DeepSpeed that probed at import: its table is there
        table = ops.__compatible_ops__
    if table is None:  # not probed yet: defer the probe to whoever reads another op
        table = _ProbeOnFirstRead(probe)
        setattr(ops, "__compatible_ops__", table)
    table[name] = False


def shutdown_distributed(barrier: bool = True) -> None:
    """Destroy the process group and remove DeepSpeed's shm buffers this job left behind.

    ``barrier=False`` after a failure: waiting for peers that may have died would hang.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
        finally:
            import deepspeed.comm

            deepspeed.comm.destroy_process_group()
    remove_shm_buffers()


def remove_shm_buffers() -> None:
    """DeepSpeed's shm op never unlinks its buffers; rank 0 of each node removes those of its job."""
    if int(os.environ.get("LOCAL_RANK", 0)) != 0:
        return
    for path in glob.glob(_SHM_PATTERN):
        if _belongs_to_this_job(path):
            try:
                os.remove(path)
            except OSError:
                pass


def _belongs_to_this_job(path: str) -> bool:
    # deepspeed/ops/csrc/cpu/comm/shm.cpp names it <prefix>_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    return bool(port) and os.path.basename(path).startswith(f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_")


# ---- telling the other ranks who failed ----------------------------------------------------------
#: store key under which a failing rank leaves one line for its peers (the rendezvous store
#: outlives the process group; under torchrun it is the agent's, so it survives any rank)
_FAILED_KEY = "engine/failed/{}"
#: what a rank writes when it did not fail itself but lost a peer in a collective
PEER_LOST = "lost a peer"
#: how gloo/NCCL and c10d say that a collective failed because another rank is gone or late
_PEER_LOSS_SIGNS = ("Connection closed by peer", "Connection reset by peer", "third_party/gloo", "ProcessGroupGloo",
                    "NCCL communicator was aborted", "Watchdog caught collective operation timeout")


def is_peer_loss(exc: BaseException) -> bool:
    """Whether ``exc`` came from a collective whose peer died or stopped answering (not from this rank's code)."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(sign in text for sign in _PEER_LOSS_SIGNS))


def _store(timeout_s: float):
    import datetime

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    store = dist.distributed_c10d._get_default_store()
    store.set_timeout(datetime.timedelta(seconds=timeout_s))
    return store


def report_failure(rank: int, text: str) -> None:
    """Best effort, before this rank closes its sockets: leave ``text`` where peers look (``failed_ranks``)."""
    try:
        store = _store(5.0)
        if store is not None:
            store.set(_FAILED_KEY.format(rank), text[:2000])
    except Exception:  # the store's host may be gone too; the launcher still names the rank
        pass


def failed_ranks(world_size: int, me: int, wait_s: float = 3.0) -> Dict[int, str]:
    """What the other ranks reported through ``report_failure``; waits up to ``wait_s`` for a first report.

    A rank killed by a signal reports nothing: it is among the ranks absent from the result.
    """
    found: Dict[int, str] = {}
    try:
        store = _store(2.0)
        if store is None:
            return found
        deadline = time.monotonic() + wait_s
        while True:
            for r in range(world_size):
                key = _FAILED_KEY.format(r)
                if r != me and r not in found and store.check([key]):
                    found[r] = store.get(key).decode(errors="replace")
            causes = [r for r, text in found.items() if not text.startswith(PEER_LOST)]
            if causes or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
    except Exception:  # e.g. the store lived in rank 0, which died
        return found


def describe_peer_loss(rank: int, world_size: int, exc: BaseException) -> str:
    """The message a surviving rank logs: which rank(s) failed and why, as far as they told."""
    report_failure(rank, f"{PEER_LOST}: {str(exc).splitlines()[0][:300]}")
    found = failed_ranks(world_size, rank)
    causes = {r: t for r, t in found.items() if not t.startswith(PEER_LOST)}
    silent = [r for r in range(world_size) if r != rank and r not in found]
    if causes:
        who = "; ".join(f"rank {r} failed: {t}" for r, t in sorted(causes.items()))
    elif silent:
        who = (f"rank(s) {', '.join(map(str, silent))} reported nothing: killed (SIGKILL, out of memory) "
               "or hanging; see the launcher's output")
    else:
        who = "no rank reported a cause"
    gloo = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).splitlines()[0]).split(". This is typically")[0][:300]
    return f"rank {rank}: a collective failed because another rank is gone or stuck ({gloo}). {who}"
