"""Parameters of a ZeRO 1-3 engine folder, read lazily from the ranks' fp32 partitions.

Why not DeepSpeed's ``zero_to_fp32``: for ZeRO 1-2 it concatenates every rank's flat fp32
partition into one vector first (the whole fp32 model in memory, then views of it), and in
its ZeRO-3 lazy mode the memory-mapped rank files stay mapped for the whole export, so every
page read stays resident (the whole fp32 model again by the end). Here each parameter is a
:class:`PartitionedParam` that knows where its pieces lie (rank, group, start, end) and is
built only when its output file is written; :class:`RankPartitions` maps the rank files on
demand and ``release()`` unmaps them, which the export calls after each output shard. The
resident set is then the floor plus the pages of one output shard plus the tensors being
written, whatever the model size.

Layouts (what DeepSpeed's optimizers save, ``optimizer_state_dict``):

* ZeRO 1-2: ``single_partition_of_fp32_groups[g]`` on rank r is slice r of group g's flat
  vector (parameters back to back in ``param_shapes[g]`` order, each followed by its
  ``param_alignment_paddings`` entry when saved, the group padded to a multiple of 2·world).
* ZeRO-3: ``fp32_flat_groups`` on rank r holds, for every parameter in order, its r-th slice
  of ``ceil(numel / world)`` elements (the last rank's slice padded); a rank's groups are
  consecutive pieces of that one sequence.

Every file is read memory-mapped through ``engine.weights.safe_load`` (``weights_only=True``
with engine's allow-list of the few DeepSpeed data types its files hold).
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import os
import re
import sys
from typing import Any, Dict, List, Sequence, Tuple

import torch

from engine.weights import safe_load

_OPTIM_FILE = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_00_optim_states\.pt$")
_MODEL_FILE_Z3 = re.compile(r"^zero_pp_rank_(\d+)_mp_rank_00_model_states\.pt$")


class StreamError(Exception):
    """The folder is not a ZeRO layout this reader knows; the message names the file."""


class RankPartitions:
    """Every rank's flat fp32 groups of one engine folder, mapped when first needed.

    Args:
        files: the ranks' optimizer files, rank order.
        key: ``single_partition_of_fp32_groups`` (ZeRO 1-2) or ``fp32_flat_groups`` (ZeRO-3).
    """

    def __init__(self, files: Sequence[str], key: str) -> None:
        self.files = list(files)
        self.key = key
        self._groups: List[List[torch.Tensor]] = []

    def groups(self) -> List[List[torch.Tensor]]:
        """[rank][group] → that rank's flat fp32 tensor of the group (memory-mapped)."""
        if not self._groups:
            for path in self.files:
                state = safe_load.load(path, mmap=True)["optimizer_state_dict"]
                if self.key not in state:
                    raise StreamError(f"{path}: no {self.key} in optimizer_state_dict")
                groups = state[self.key]
                self._groups.append(list(groups) if isinstance(groups, (list, tuple)) else [groups])
                del state  # the optimizer moments stay unread (mapped, never touched)
        return self._groups

    def release(self) -> None:
        """Unmap every rank file: the pages read so far leave the resident set."""
        self._groups = []


class PartitionedParam:
    """A parameter gathered from rank partitions when asked (``.contiguous()``), like a lazy tensor.

    Args:
        source: the rank partitions it reads.
        shape: the parameter's shape.
        pieces: (rank, group, start, end) slices, in order; their concatenation starts with
            the parameter's elements (ZeRO-3 pieces end with padding, cut off).
    """

    dtype = torch.float32

    def __init__(self, source: RankPartitions, shape: Sequence[int], pieces: List[Tuple[int, int, int, int]]) -> None:
        self.source = source
        self.shape = torch.Size(shape)
        self.pieces = pieces

    def contiguous(self) -> torch.Tensor:
        groups = self.source.groups()
        parts = [groups[rank][group][start:end] for rank, group, start, end in self.pieces]
        flat = parts[0] if len(parts) == 1 else torch.cat(parts)
        tensor = flat[: self.shape.numel()].clone().view(self.shape)  # own memory: not a view of a mapped page
        for part in parts:
            drop_mapped_pages(part)
        return tensor


def drop_mapped_pages(tensor: torch.Tensor) -> None:
    """Let the kernel drop the resident pages under ``tensor``, a slice of a read-only file mapping.

    Why: pages read through a mapping stay in this process's resident set until it is
    unmapped; dropping them after each parameter keeps the export's peak at one parameter's
    pages instead of one shard's. Safe only because the mapping (``torch.load(mmap=True)``,
    private, never written) is backed by the file: a later read faults the same bytes back in.
    Linux only (``madvise(MADV_DONTNEED)``); elsewhere a no-op, and the per-shard unmapping
    still bounds the peak.
    """
    libc = _libc()
    if libc is None or tensor.numel() == 0:
        return
    page = mmap.PAGESIZE
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    low, high = start // page * page, -(-end // page) * page
    libc.madvise(ctypes.c_void_p(low), ctypes.c_size_t(high - low), _MADV_DONTNEED)


_MADV_DONTNEED = 4


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def engine_files(folder: str) -> Tuple[List[str], List[str]]:
    """(optimizer files, model files) of a ZeRO engine folder, each in rank order."""
    optim: Dict[int, str] = {}
    model: Dict[int, str] = {}
    for name in os.listdir(folder):
        match = _OPTIM_FILE.match(name)
        if match:
            optim[int(match[1])] = os.path.join(folder, name)
        match = _MODEL_FILE_Z3.match(name)
        if match:
            model[int(match[1])] = os.path.join(folder, name)
    if not optim or sorted(optim) != list(range(len(optim))):
        raise StreamError(f"{folder}: expected zero_pp_rank_<r>_mp_rank_00_optim_states.pt for ranks 0..N-1, "
                          f"found {sorted(os.listdir(folder))}")
    if not model and os.path.isfile(os.path.join(folder, "mp_rank_00_model_states.pt")):
        return [optim[r] for r in sorted(optim)], [os.path.join(folder, "mp_rank_00_model_states.pt")]
    return [optim[r] for r in sorted(optim)], [model[r] for r in sorted(model)]


def _numel(shape: Any) -> int:
    return int(shape.numel()) if hasattr(shape, "numel") else math.prod(int(s) for s in shape)


def zero_state(folder: str, stage: int) -> "LazyState":
    """name → tensor (buffers, frozen parameters) or :class:`PartitionedParam` of one ZeRO engine folder."""
    optim_files, model_files = engine_files(folder)
    key = "fp32_flat_groups" if stage == 3 else "single_partition_of_fp32_groups"
    source = RankPartitions(optim_files, key)
    world = len(optim_files)
    first = safe_load.load(model_files[0], mmap=True)
    state = LazyState(source)
    names = set(first.get("buffer_names", []))
    for name, value in first["module"].items():  # ZeRO 1-2: the whole module is here; only buffers are read
        if name in names:
            state[name] = (value.float() if value.is_floating_point() else value).clone()
    _frozen(state, first, model_files, stage)
    shapes: List[Dict[str, Any]] = list(first["param_shapes"])
    if stage == 3:
        _zero3_params(state, source, shapes, world, folder)
    else:
        paddings = safe_load.load(optim_files[0], mmap=True)["optimizer_state_dict"].get("param_alignment_paddings")
        _zero12_params(state, source, shapes, world, paddings, folder)
    source.release()
    for alias, name in dict(first.get("shared_params", {})).items():
        if name in state:
            state[alias] = state[name]  # the same object: the export writes it once
    del first
    return state


class LazyState(dict):
    """The state dict an export writes; ``release()`` unmaps the rank files after each output shard."""

    def __init__(self, source: RankPartitions) -> None:
        super().__init__()
        self.source = source

    def release(self) -> None:
        self.source.release()


def _frozen(state: Dict[str, Any], first: Dict[str, Any], model_files: List[str], stage: int) -> None:
    """Frozen parameters: whole in the model file (ZeRO 1-2), one fragment per rank file (ZeRO-3)."""
    shapes = first.get("frozen_param_shapes") or {}
    if not shapes:
        return
    if stage < 3:
        for name in shapes:
            state[name] = first["frozen_param_fragments"][name].clone()
        return
    fragments = [safe_load.load(path, mmap=True)["frozen_param_fragments"] for path in model_files]
    for name, shape in shapes.items():
        state[name] = torch.cat([f[name] for f in fragments])[: _numel(shape)].clone().view(tuple(shape))


def _zero12_params(state: Dict[str, Any], source: RankPartitions, shapes: List[Dict[str, Any]], world: int,
                   paddings: Any, folder: str) -> None:
    groups = source.groups()
    for g, group_shapes in enumerate(shapes):
        sizes = [int(groups[r][g].numel()) for r in range(world)]
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        offset = 0
        pads = paddings[g] if paddings is not None else None
        for i, (name, shape) in enumerate(group_shapes.items()):
            numel = _numel(shape)
            end = offset + numel
            if end > bounds[-1]:
                raise StreamError(f"{folder}: parameter {name} ends at element {end} of group {g}, "
                                  f"which holds {bounds[-1]} over {world} ranks")
            pieces = [(r, g, max(offset, bounds[r]) - bounds[r], min(end, bounds[r + 1]) - bounds[r])
                      for r in range(world) if bounds[r] < end and offset < bounds[r + 1]]
            state[name] = PartitionedParam(source, tuple(shape), pieces)
            offset = end + (int(pads[i]) if pads is not None else 0)
        align = 2 * world
        if align * math.ceil(offset / align) != align * math.ceil(bounds[-1] / align):
            raise StreamError(f"{folder}: group {g} has {bounds[-1]} elements over {world} ranks, "
                              f"its parameters use {offset}")


def _zero3_params(state: Dict[str, Any], source: RankPartitions, shapes: List[Dict[str, Any]], world: int,
                  folder: str) -> None:
    groups = source.groups()
    sizes = [int(t.numel()) for t in groups[0]]
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    offset = 0
    for name, shape in ((n, s) for group in shapes for n, s in group.items()):
        per = -(-_numel(shape) // world)
        end = offset + per
        if end > bounds[-1]:
            raise StreamError(f"{folder}: parameter {name} ends at element {end} of a rank partition "
                              f"of {bounds[-1]} elements")
        pieces = [(r, g, max(offset, bounds[g]) - bounds[g], min(end, bounds[g + 1]) - bounds[g])
                  for r in range(world) for g in range(len(sizes)) if bounds[g] < end and offset < bounds[g + 1]]
        state[name] = PartitionedParam(source, tuple(shape), pieces)
        offset = end
    if offset != bounds[-1]:
        raise StreamError(f"{folder}: the parameters use {offset} elements of each rank partition, "
                          f"which holds {bounds[-1]}")
