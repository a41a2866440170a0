"""Resuming a tag on a different number of ranks: DeepSpeed universal checkpoints + trainer state.

Why a conversion: ZeRO 1-3 optimizer files hold one flat partition per data-parallel rank;
DeepSpeed refuses them on another DP size ("The checkpoint being loaded used a DP world size
of N ..."). ``ds_to_universal`` rewrites them per parameter (``zero/<name>/fp32.pt``,
``exp_avg.pt``, ...), which any world size can re-partition. A ZeRO-0 engine folder has no
optimizer partitions (one ``mp_rank_00_model_states.pt`` with everything) and loads as is.

Where the conversion goes: ``<tag>/universal/<engine>/``, a derived cache next to the files
it came from, deleted with the tag by rotation. It is built in ``<tag>/.universal.tmp.<pid>``
and renamed into place, so a crash never leaves a half cache that looks ready; the tag's own
files (those in its manifest) are only read. Rank 0 converts while the others wait on a gloo
side group whose timeout covers the conversion; a rank that then still does not see the
cache (no shared disk) converts for its node.

How it is loaded: ``checkpoint.load_universal`` is read by DeepSpeed from the engine's config
at every ``load_checkpoint`` call, not at ``initialize``, so it is switched on for that one
call and back off. (The top-level key ``load_universal_checkpoint`` is silently ignored.)
"""

from __future__ import annotations

import glob
import json
import logging
import os
import random
import shutil
import subprocess
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
import torch

from engine import comm
from engine.checkpoint import layout
from engine.weights import safe_load
from engine.checkpoint.state import capture_rng, new_sync_group, restore_rng
from engine.errors import EngineError
from engine.model.ema import consolidate_ema

logger = logging.getLogger("engine")

UNIVERSAL = "universal"
READY = "UNIVERSAL.json"
#: seconds one engine's conversion may take before it is killed
TIMEOUT_ENV = "ENGINE_UNIVERSAL_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0


def conversion_timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))


def has_zero_partitions(engine_dir: str) -> bool:
    """True when the engine folder holds per-rank optimizer partitions (ZeRO 1-3, bf16 optimizer)."""
    return bool(glob.glob(os.path.join(engine_dir, "*optim_states.pt")))


def universal_root(tag_dir: str) -> str:
    return os.path.join(tag_dir, UNIVERSAL)


def is_ready(tag_dir: str) -> bool:
    return os.path.isfile(os.path.join(universal_root(tag_dir), READY))


def convert_engine(engine_dir: str, out_dir: str, timeout: Optional[float] = None) -> None:
    """``ds_to_universal`` on one engine folder, in a child process (killable, memory freed after)."""
    cmd, child_env = safe_load.child_command("deepspeed.checkpoint.ds_to_universal", [
        "--input_folder", engine_dir, "--output_folder", out_dir, "--inject_missing_state",
        "--num_extract_workers", "1", "--num_merge_workers", "1"])  # its loads unpickle safely too
    limit = timeout or conversion_timeout()
    env = dict(os.environ, **child_env)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
        env.pop(key, None)  # the converter needs no process group; do not let it find ours
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        raise EngineError(f"--resume: converting {engine_dir} to a universal checkpoint took over {limit:.0f}s "
                          f"({TIMEOUT_ENV}); killed") from None
    if done.returncode == safe_load.REFUSED_EXIT:  # the child printed the refusal, file named
        refused = next((line for line in done.stdout.splitlines() if "refused to load" in line), done.stdout[-2000:])
        raise EngineError(f"--resume: converting {engine_dir} to a universal checkpoint: {refused}")
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise EngineError(f"--resume: ds_to_universal failed on {engine_dir} (exit {done.returncode}):\n{tail}")


def build_universal(tag_dir: str, engines: List[str]) -> str:
    """Convert every partitioned engine of ``tag_dir`` into ``<tag>/universal`` (temp dir + rename)."""
    final = universal_root(tag_dir)
    if is_ready(tag_dir):
        return final
    for stale in glob.glob(os.path.join(tag_dir, ".universal.tmp.*")):
        shutil.rmtree(stale, ignore_errors=True)  # a conversion that died; never looked ready
    tmp = os.path.join(tag_dir, f".universal.tmp.{os.getpid()}")
    start = time.perf_counter()
    try:
        converted = []
        for name in engines:
            engine_dir = os.path.join(tag_dir, name)
            if has_zero_partitions(engine_dir):
                convert_engine(engine_dir, os.path.join(tmp, name))
                converted.append(name)
        info = {"source": tag_dir, "engines": converted, "source_world_size": layout.read_marker(tag_dir).get("world_size")}
        with open(os.path.join(tmp, READY), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        layout.fsync_tree(tmp)
        if os.path.isdir(final):  # a leftover without READY (cannot happen via rename; be safe)
            shutil.rmtree(final)
        os.rename(tmp, final)
        layout.fsync_dir(tag_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(f"--resume: converted {converted or 'no engine'} of {tag_dir} to universal form in "
                f"{time.perf_counter() - start:.1f}s ({final})")
    return final


def prepare_universal(tag_dir: str, engines: List[str]) -> str:
    """The universal folder of ``tag_dir``, built once: rank 0 converts, every rank waits for it."""
    group = new_sync_group(conversion_timeout() + 120)
    error: Optional[str] = None
    if comm.get_rank() == 0:
        error = _try(lambda: build_universal(tag_dir, engines))
    _agree(group, error)
    if not is_ready(tag_dir) and comm.get_local_rank() == 0:  # this node does not share rank 0's disk
        error = _try(lambda: build_universal(tag_dir, engines))
    _agree(group, error)
    if not is_ready(tag_dir):
        raise EngineError(f"--resume: {universal_root(tag_dir)} is not there on rank {comm.get_rank()} after conversion")
    return universal_root(tag_dir)


def _try(work: Callable[[], Any]) -> Optional[str]:
    try:
        work()
    except Exception as exc:  # reported on every rank below, so no rank waits for ever
        return f"{type(exc).__name__}: {exc}"
    return None


def _agree(group: Any, error: Optional[str]) -> None:
    """A barrier that also carries a failure from any rank to every rank."""
    if group is None:
        if error:
            raise EngineError(error)
        return
    import torch.distributed as dist

    errors: List[Optional[str]] = [None] * comm.get_world_size()
    dist.all_gather_object(errors, error, group=group)
    failed = [f"rank {r}: {e}" for r, e in enumerate(errors) if e]
    if failed:
        raise EngineError("--resume with a new world size failed: " + "; ".join(failed))


def load_engine(engine: Any, tag_dir: str, name: str) -> None:
    """Load one engine of ``tag_dir`` on this (different) world size."""
    if not has_zero_partitions(os.path.join(tag_dir, name)):
        with safe_load.deepspeed_loads(os.path.join(tag_dir, name)):
            path, _ = engine.load_checkpoint(tag_dir, tag=name)  # ZeRO-0: whole state in one file
    else:
        config = engine._config
        before = config.load_universal_checkpoint
        config.load_universal_checkpoint = True
        try:
            with safe_load.deepspeed_loads(os.path.join(universal_root(tag_dir), name)):
                path, _ = engine.load_checkpoint(universal_root(tag_dir), tag=name)
        finally:
            config.load_universal_checkpoint = before
    if path is None:
        raise EngineError(f"--resume: DeepSpeed could not load engine {name!r} of {tag_dir} on a new world size")


def reseeded_rng(seed: int, rank: int, step: int) -> Dict[str, Any]:
    """RNG states drawn from ``(seed, rank, step)``: the old per-rank streams do not map to new ranks.

    Returned as a state for ``restore_rng`` (applied after ``iter(loader)``, like a saved one);
    the current streams are left as they were.
    """
    derived = int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
    before = capture_rng()
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)
    state = capture_rng()
    restore_rng(before)
    return state


def carry_extra_state(model: Any, tag_dir: str, old_world: int, rank0_state: Mapping[str, Any]) -> None:
    """Per-rank model state (EMA) across world sizes; re-initialised with a warning when it cannot be.

    Unsharded EMA (ZeRO 0-2) is the same on every rank: rank 0's copy is used. A ZeRO-3 EMA is
    one flat shard per rank: the old shards are joined (``consolidate_ema``) and cut again for
    this rank's partition, as ZeRO-3 cuts parameters (equal pieces, the last one padded).
    """
    load_extra = getattr(model, "load_extra_state", None)
    if load_extra is None:
        return
    extra = dict(rank0_state.get("model", {}) or {})
    ema = getattr(model, "ema", None)
    saved = extra.get("ema")
    if ema is not None and saved is not None and (saved.get("sharded") or ema.sharded):
        try:
            extra["ema"] = _reshard_ema(ema, tag_dir, old_world, saved)
        except Exception as exc:
            logger.warning(f"--resume: the EMA of {tag_dir} cannot be carried to world size "
                           f"{comm.get_world_size()} ({exc}); it restarts from the loaded weights")
            ema.reset()
            return
    try:
        load_extra(extra)
    except ValueError as exc:
        logger.warning(f"--resume: model extra state of {tag_dir} does not fit this world size ({exc}); "
                       "the EMA restarts from the loaded weights")
        if ema is not None:
            ema.reset()


def _reshard_ema(ema: Any, tag_dir: str, old_world: int, saved: Mapping[str, Any]) -> Dict[str, Any]:
    if not (saved.get("sharded") and ema.sharded):
        raise ValueError("saved and current EMA differ in sharding (ZeRO stage changed)")
    states = [safe_load.load(layout.rank_state_file(tag_dir, r))["model"]["ema"] for r in range(old_world)]
    full = consolidate_ema(states)
    rank, world = comm.get_rank(), comm.get_world_size()
    params = {}
    for name, param in ema.module.named_parameters():
        flat = full[name].reshape(-1)
        per = -(-flat.numel() // world)
        padded = torch.zeros(per * world, dtype=flat.dtype)
        padded[: flat.numel()] = flat
        params[name] = padded[rank * per:(rank + 1) * per].clone()
    return dict(saved, params=params, rank=rank, world_size=world)
