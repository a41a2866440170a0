"""Exponential moving average of a DeepSpeed engine's weights, at every ZeRO stage.

Why not a full copy of the model: under ZeRO-3 a rank holds ``1/N`` of every parameter
(``p.ds_tensor``); a full EMA would cost a gather per step and the whole model's memory on
every rank. Here each rank averages exactly what it holds: the full weights at ZeRO 0-2
(every rank has them after ``step()``), its own flat partition at ZeRO-3. An element-wise
average of a shard equals the shard of the average, so no communication is needed to update.

Evaluation on EMA weights (``swapped()``) copies the EMA into the live storage and back.
At ZeRO-3 that storage is ``ds_tensor``: DeepSpeed gathers one module at a time from it
during the forward, so peak memory stays one layer. Cached gathered copies (persistent small
parameters, prefetched ones) would silently keep the training values, which is why the
partition cache is emptied before the swap and again before restoring.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch

logger = logging.getLogger("engine")

#: version of the ``state_dict`` layout written into checkpoints
STATE_FORMAT = 1


def warmup_decay(decay: float, num_updates: int) -> float:
    """The decay used for an update after ``num_updates`` earlier ones: ``min(decay, (1+n)/(10+n))``.

    Early in training the weights move fast and the initial weights are noise: a smaller decay
    at first lets the average forget them (TensorFlow's ``ExponentialMovingAverage`` rule).
    ``num_updates < 0`` switches the warm-up off.
    """
    if num_updates < 0:
        return decay
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def zero_stage(engine: Any) -> int:
    getter = getattr(engine, "zero_optimization_stage", None)
    return int(getter()) if callable(getter) else 0


class ModelEMA:
    """EMA of ``engine.module``'s parameters and floating buffers (integer buffers are copied).

    Args:
        engine: a DeepSpeed engine (or anything with ``.module``; ZeRO-0 is assumed then).
        decay: the decay rate in [0, 1]; 1 keeps the initial weights, 0 follows the weights.
        num_updates: updates counted as already done, for the warm-up; -1 disables warm-up.
    """

    def __init__(self, engine: Any, decay: float, num_updates: int = 0) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.engine = engine
        self.module: torch.nn.Module = getattr(engine, "module", engine)
        self.decay = float(decay)
        self.warmup = num_updates >= 0
        self.num_updates = max(0, int(num_updates))
        self.sharded = zero_stage(engine) == 3
        self.params: Dict[str, torch.Tensor] = {}
        self.buffers: Dict[str, torch.Tensor] = {}
        self._swapped = False
        self.reset()

    # ---- the live tensors the EMA follows ------------------------------------------------------
    def _live_params(self) -> Iterator[Tuple[str, torch.Tensor]]:
        """(name, storage) of each parameter: this rank's flat shard under ZeRO-3, else the weight."""
        for name, param in self.module.named_parameters():
            yield name, (param.ds_tensor.data if self.sharded else param.data)

    def _live_buffers(self) -> Iterator[Tuple[str, torch.Tensor]]:
        for name, buf in self.module.named_buffers():
            if buf is not None:
                yield name, buf.data

    def current_decay(self) -> float:
        return warmup_decay(self.decay, self.num_updates if self.warmup else -1)

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average at the current weights (at build, and after loading pretrained weights)."""
        self.params = {name: live.detach().float().clone() for name, live in self._live_params()}
        self.buffers = {name: live.detach().clone().float() if live.is_floating_point() else live.detach().clone()
                        for name, live in self._live_buffers()}

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step: ``ema = d·ema + (1-d)·w``. Call once per optimizer step, after ``engine.step()``."""
        d = self.current_decay()
        for name, live in self._live_params():
            self.params[name].lerp_(live.float(), 1.0 - d)  # = d·ema + (1-d)·w in one pass
        for name, live in self._live_buffers():
            if live.is_floating_point():
                self.buffers[name].lerp_(live.float(), 1.0 - d)
            else:
                self.buffers[name].copy_(live)
        self.num_updates += 1

    # ---- evaluation on EMA weights -------------------------------------------------------------
    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Run the block with the EMA in the module's weights; the training weights come back bit for bit."""
        if self._swapped:  # nested: already on EMA weights
            yield
            return
        self._empty_partition_cache()
        saved_params = self._copy_into(dict(self._live_params()), self.params)
        saved_buffers = self._copy_into(dict(self._live_buffers()), self.buffers)
        self._swapped = True
        try:
            yield
        finally:
            self._empty_partition_cache()  # drop gathered EMA copies before the shards change back
            live_params, live_buffers = dict(self._live_params()), dict(self._live_buffers())
            with torch.no_grad():
                for name, value in saved_params.items():
                    live_params[name].copy_(value)
                for name, value in saved_buffers.items():
                    live_buffers[name].copy_(value)
            self._swapped = False

    @staticmethod
    @torch.no_grad()
    def _copy_into(live: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        saved = {}
        for name, tensor in live.items():
            saved[name] = tensor.clone()
            tensor.copy_(source[name].to(dtype=tensor.dtype, device=tensor.device))
        return saved

    def _empty_partition_cache(self) -> None:
        if self.sharded:
            self.engine.empty_partition_cache()

    # ---- checkpoint --------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """This rank's EMA: shards under ZeRO-3 (with what ``consolidate_ema`` needs), else full tensors."""
        state: Dict[str, Any] = {
            "format": STATE_FORMAT, "decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
            "sharded": self.sharded, "params": {k: v.cpu().clone() for k, v in self.params.items()},
            "buffers": {k: v.cpu().clone() for k, v in self.buffers.items()},
        }
        if self.sharded:
            import torch.distributed as dist

            params = dict(self.module.named_parameters())
            state["shapes"] = {name: tuple(p.ds_shape) for name, p in params.items()}
            state["rank"] = dist.get_rank() if dist.is_initialized() else 0
            state["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
        return state

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` saved by the same rank of a run with the same layout."""
        if bool(state.get("sharded")) != self.sharded:
            raise ValueError(f"EMA state was saved {'sharded (ZeRO-3)' if state.get('sharded') else 'unsharded'}, "
                             f"this run is {'sharded (ZeRO-3)' if self.sharded else 'unsharded'}; "
                             "export it with tools/convert_ckpt.py --ema and load it as weights instead")
        for kind, mine in (("params", self.params), ("buffers", self.buffers)):
            theirs = state[kind]
            if sorted(theirs) != sorted(mine):
                raise ValueError(f"EMA state {kind} do not match the network: "
                                 f"missing {sorted(set(mine) - set(theirs))[:10]}, unexpected {sorted(set(theirs) - set(mine))[:10]}")
            for name, value in theirs.items():
                if value.shape != mine[name].shape:
                    raise ValueError(f"EMA state {name}: shape {tuple(value.shape)}, expected {tuple(mine[name].shape)}")
                mine[name].copy_(value)
        self.num_updates = int(state["num_updates"])
        self.warmup = bool(state.get("warmup", True))

    def full_state_dict(self) -> Dict[str, torch.Tensor]:
        """The whole EMA on every rank (a collective under ZeRO-3): tests and live export."""
        if not self.sharded:
            return {**{k: v.clone() for k, v in self.params.items()}, **{k: v.clone() for k, v in self.buffers.items()}}
        import torch.distributed as dist

        out: Dict[str, torch.Tensor] = {}
        for name, param in self.module.named_parameters():
            group = getattr(param, "ds_process_group", None)
            shard = self.params[name]
            pieces = [torch.empty_like(shard) for _ in range(dist.get_world_size(group))]
            dist.all_gather(pieces, shard, group=group)
            out[name] = torch.cat(pieces)[: param.ds_numel].view(param.ds_shape)
        out.update({k: v.clone() for k, v in self.buffers.items()})
        return out


def consolidate_ema(states: List[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
    """One full fp32 state dict from the per-rank EMA states of a checkpoint (no process group needed).

    ZeRO-3 splits each flattened parameter into equal contiguous pieces in rank order, the last
    one padded; concatenating the shards and cutting at the parameter's size gives it back.
    """
    if not states:
        raise ValueError("no EMA state to consolidate")
    first = states[0]
    if not first.get("sharded"):
        return {**first["params"], **first["buffers"]}
    ordered = sorted(states, key=lambda s: s["rank"])
    world = int(first["world_size"])
    if [s["rank"] for s in ordered] != list(range(world)):
        raise ValueError(f"EMA shards of ranks {[s['rank'] for s in ordered]} found, expected 0..{world - 1}")
    out: Dict[str, torch.Tensor] = {}
    for name, shape in first["shapes"].items():
        numel = 1
        for size in shape:
            numel *= int(size)
        out[name] = torch.cat([s["params"][name] for s in ordered])[:numel].view(tuple(shape)).clone()
    out.update(first["buffers"])
    return out


def build_ema(engine: Any, cfg_ema: Mapping[str, Any]) -> Optional[ModelEMA]:
    """The EMA that ``solver.ema`` asks for, or None when it is off."""
    if not cfg_ema["enabled"]:
        return None
    ema = ModelEMA(engine, float(cfg_ema["decay_rate"]), int(cfg_ema["num_updates"]))
    memory = sum(t.numel() * t.element_size() for t in ema.params.values())
    logger.info(f"EMA of the generator: decay {ema.decay}, warm-up {'on' if ema.warmup else 'off'}, "
                f"{memory / 2**20:.2f} MiB on this rank{' (its ZeRO-3 shard)' if ema.sharded else ''}")
    return ema
