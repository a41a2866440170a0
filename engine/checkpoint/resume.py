"""What happens before the first step: resume a run, or start from pretrained weights."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from engine import comm
from engine.checkpoint import layout
from engine.weights import safe_load
from engine.checkpoint.checkpointer import Checkpointer
from engine.weights.pretrained import load_weights
from engine.errors import EngineError
from engine.checkpoint import universal

logger = logging.getLogger("engine")


def resume_or_load(trainer: Any, resume: Union[bool, str]) -> None:
    """``--resume`` → the newest complete checkpoint (if any); else ``trainer.weights`` when set.

    Args:
        trainer: the built trainer: its ``checkpoint`` (the ``Checkpointer``) says where tags are
            and receives the loaded RNG, its ``model`` is loaded, its ``load_state_dict`` gets the position.
        resume: False, True (``--resume``: a missing checkpoint is warned about) or ``"auto"``
            (``--resume auto`` / ``trainer.resume = "auto"``: a missing checkpoint means the first
            start of a job that may be requeued, so it is only logged).
    """
    if not resume and str(getattr(trainer.cfg.TRAINER, "RESUME", "off")).lower() == "auto":
        resume = "auto"
    if resume:
        root = trainer.checkpoint.root
        tag = choose_tag(root)
        if tag is not None:
            if resume == "auto":
                logger.info(f"--resume auto: found the complete checkpoint {os.path.join(root, tag)}; resuming")
            load_checkpoint(trainer.checkpoint, trainer.model, trainer.load_state_dict, os.path.join(root, tag))
            return
        if resume == "auto":
            logger.info(f"--resume auto: no complete checkpoint in {root}; starting fresh")
        else:
            logger.warning(f"--resume: no complete checkpoint in {root}; starting from scratch")
    weights = trainer.cfg.TRAINER.WEIGHTS
    if weights:
        load_weights(trainer.model.g_model, weights, strict=trainer.cfg.TRAINER.WEIGHTS_STRICT)
        if getattr(trainer.model, "ema", None) is not None:
            trainer.model.ema.reset()  # the average starts at the pretrained weights, not the random init


def usable_tags(root: str, rank: int) -> List[str]:
    """Complete tags whose state file for ``rank`` loads, newest first; skipped ones are logged."""
    usable = []
    for tag in layout.list_tags(root):
        tag_dir = os.path.join(root, tag)
        ok, why = layout.check_complete(tag_dir)
        if ok:
            ok, why = _state_file_loads(layout.rank_state_file(tag_dir, _source_rank(tag_dir, rank)))
        if ok:
            usable.append(tag)
        else:
            logger.warning(f"--resume: skipping {tag_dir}: {why}")
    return usable


def _state_file_loads(path: str) -> Tuple[bool, str]:
    """Whether the state file loads; a file refused as unsafe is not skipped but raised (never a fallback)."""
    try:
        safe_load.load(path)
    except safe_load.UnsafeCheckpointError:
        raise
    except FileNotFoundError:
        return False, f"{path} missing"
    except Exception as exc:  # a corrupt pickle raises many kinds
        return False, f"{path} unreadable: {type(exc).__name__}: {exc}"
    return True, ""


def _source_rank(tag_dir: str, rank: int) -> int:
    """Whose state file this rank reads: its own, or rank 0's when the world size changed."""
    try:
        saved = int(layout.read_marker(tag_dir).get("world_size", 0))
    except (OSError, ValueError):
        return rank
    return rank if saved == comm.get_world_size() else 0


def choose_tag(root: str) -> Optional[str]:
    """The newest tag usable on every rank (ranks may see different files on non-shared disks).

    A refused (unsafe) file on any rank stops every rank with its message: the ranks agree
    first, so none is left waiting in a collective the others never reach.
    """
    try:
        mine, refusal = usable_tags(root, comm.get_rank()), None
    except safe_load.UnsafeCheckpointError as exc:
        mine, refusal = [], (exc.path, exc.found)
    everyone = comm.all_gather_object((mine, refusal))
    refusals = [theirs for _, theirs in everyone if theirs]
    if refusals:
        raise safe_load.UnsafeCheckpointError(*(refusal or refusals[0]))
    common = [t for t in mine if all(t in other for other, _ in everyone)]
    return common[0] if common else None


def load_checkpoint(checkpointer: Checkpointer, model: Any, load_state: Callable[[Mapping[str, Any]], None],
                    tag_dir: str) -> Dict[str, Any]:
    """Restore every engine of ``model``, then the trainer's position; the RNG goes to ``checkpointer``.

    Nothing under ``tag_dir`` is written. The RNG waits in the checkpointer for an explicit
    ``restore_rng()`` (``CheckpointHook.before_train``): ``train()`` creates the data iterator
    first, which draws from torch's RNG.

    Args:
        checkpointer: the run's ``Checkpointer`` (its seed reseeds RNG on another world size).
        model: the model bundle (``engines``; optional ``load_extra_state``, ``ema``).
        load_state: the trainer's ``load_state_dict``.
        tag_dir: a complete tag.

    Returns:
        The trainer state that was loaded.
    """
    info = layout.read_marker(tag_dir)
    safe_load.check_folder(tag_dir)  # before anything is loaded: a crafted file is named, nothing changed
    engines = model.engines
    if sorted(engines) != sorted(info.get("engines", [])):
        raise EngineError(f"--resume: {tag_dir} holds engines {info.get('engines')}, the model has {sorted(engines)}")
    old_world, world = int(info.get("world_size", 0)), comm.get_world_size()
    if old_world != world:
        own, rng = _load_resized(model, checkpointer.seed, tag_dir, info, old_world)
    else:
        for name, engine in engines.items():
            with safe_load.deepspeed_loads(os.path.join(tag_dir, name)):
                path, _ = engine.load_checkpoint(tag_dir, tag=name)
            if path is None:
                raise EngineError(f"--resume: DeepSpeed could not load engine {name!r} from {os.path.join(tag_dir, name)}")
        own = safe_load.load(layout.rank_state_file(tag_dir, comm.get_rank()))
        load_extra = getattr(model, "load_extra_state", None)
        if load_extra is not None:
            load_extra(own.get("model", {}))
        rng = own["rng"]
    load_state(own["trainer"])
    checkpointer.resumed(rng)
    lrs = "  ".join(f"lr/{k} {v:.6e}" for k, v in model.learning_rates().items())
    logger.info(f"resumed from {tag_dir} at step {int(own['trainer']['iteration'])}: {lrs}")
    return own["trainer"]


def _load_resized(model: Any, seed: int, tag_dir: str, info: Dict[str, Any],
                  old_world: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load a tag saved on ``old_world`` ranks into this run: (rank 0's state file, new RNG state).

    Engines go through DeepSpeed's universal form (``engine.checkpoint.universal``); the
    trainer state is rank 0's (the sampler position travels as a global sample index, see
    ``BaseTrainer.load_state_dict``); RNG streams are reseeded from (seed, rank, step),
    because a saved stream belongs to a rank that may not exist any more.
    """
    world, rank = comm.get_world_size(), comm.get_rank()
    logger.warning(f"--resume: {tag_dir} was saved by {old_world} ranks, this run has {world}: "
                   f"ZeRO stage {info.get('zero_stage')} engines load through DeepSpeed's universal checkpoint "
                   f"(ZeRO-0 folders as they are)")
    engines = model.engines
    if any(universal.has_zero_partitions(os.path.join(tag_dir, name)) for name in engines):
        universal.prepare_universal(tag_dir, sorted(engines))
    for name, engine in engines.items():
        universal.load_engine(engine, tag_dir, name)
    first = safe_load.load(layout.rank_state_file(tag_dir, 0))
    universal.carry_extra_state(model, tag_dir, old_world, first)
    step = int(first["trainer"]["iteration"])
    logger.info(f"--resume: world size {old_world} -> {world}: RNG of rank {rank} reseeded from "
                f"(seed {seed}, rank {rank}, step {step}); runs are not bit-exact across world sizes")
    return first, universal.reseeded_rng(seed, rank, step)
