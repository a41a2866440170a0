"""Per-rank trainer state (RNG streams) and the rank check that keeps a partial save from hanging."""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from engine import comm
from engine.errors import EngineError

#: Seconds every rank waits for the others to arrive at a save; override with this env var.
SYNC_TIMEOUT_ENV = "ENGINE_CKPT_SYNC_TIMEOUT"
DEFAULT_SYNC_TIMEOUT = 300.0


def capture_rng() -> Dict[str, Any]:
    """This rank's RNG streams. Ranks are seeded differently, so each rank keeps its own file.

    Only tensors, numbers, strings and dicts: the file then loads with ``weights_only=True``
    without allowing any numpy type (numpy's own state is a tuple holding an ndarray).
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: Dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"bit_generator": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Dict[str, Any]) -> None:
    """Put back what ``capture_rng`` returned (or the tuples that tags written before it hold)."""
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state(saved: Any) -> tuple:
    if not isinstance(saved, dict):  # random.getstate() as it was
        return tuple(saved)
    return saved["version"], tuple(int(v) for v in saved["state"].tolist()), saved["gauss_next"]


def _numpy_state(saved: Any) -> tuple:
    if not isinstance(saved, dict):  # np.random.get_state() as it was
        return tuple(saved)
    keys = saved["keys"].numpy().astype(np.uint32)
    return saved["bit_generator"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]


def sync_timeout() -> float:
    return float(os.environ.get(SYNC_TIMEOUT_ENV, DEFAULT_SYNC_TIMEOUT))


def new_sync_group(timeout_s: Optional[float] = None) -> Any:
    """A gloo group with a short timeout, made by every rank together (``new_group`` is collective).

    DeepSpeed's ``save_checkpoint`` starts with a barrier on the main group, whose timeout is
    30 minutes (and on NCCL a hang may never time out); a gloo side group lets the rank
    check below fail in seconds with a message instead.
    """
    if not (comm.is_dist() and comm.get_world_size() > 1):
        return None
    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s or sync_timeout()))


def check_ranks_agree(group: Any, what: str, value: Any) -> List[Any]:
    """Every rank's ``value`` for ``what``; raises if a rank is missing (timeout) or disagrees.

    Called at the start of a save: a save entered on only some ranks would otherwise hang
    in DeepSpeed's first barrier.
    """
    if group is None:
        return [value]
    import torch.distributed as dist

    gathered: List[Any] = [None] * comm.get_world_size()
    try:
        dist.all_gather_object(gathered, value, group=group)
    except RuntimeError as exc:
        raise EngineError(
            f"checkpoint: rank {comm.get_rank()} waited for every rank to save {what} and some did not come "
            f"within {sync_timeout():.0f}s ({SYNC_TIMEOUT_ENV}); a checkpoint must be saved on every rank at "
            f"the same step (is the save called from rank-0-only code?). gloo said: {str(exc).splitlines()[0]}"
        ) from exc
    if any(v != value for v in gathered):
        raise EngineError(f"checkpoint: ranks disagree on {what}: {gathered}; every rank must save the same step")
    return gathered
