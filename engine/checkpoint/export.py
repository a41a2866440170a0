"""Export one network of a checkpoint tag: one file, or Hugging Face style shards plus an index.

Why lazily: a consolidated model can be larger than the host's free memory. ZeRO 1-3 tags are
read by ``engine.checkpoint.zero_stream``: each parameter is gathered from the memory-mapped
rank partitions only when its output shard is written, and the rank files are unmapped after
each shard. Shards are planned from shapes alone and written one at a time, so the process
holds the pages of one output shard plus what is being written, never every shard or the
full model at once (``benchmarks/checkpoint_io.py`` measures peak RSS against the largest
output file for ZeRO 1, 2 and 3).

safetensors files are written by a small streaming writer (header from shapes, then one
tensor at a time), so for them the unit held is one tensor, not one shard; ``--format pt``
(``torch.save``) holds one shard.

Tied (shared) parameters are written once, under their first name; the other names are
listed in the file metadata / index as ``tied`` (alias → written name). ``read_exported``
puts them back, so ``network.load_state_dict(read_exported(path), strict=True)`` works for
a single file and for ``*.index.json`` alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from engine.checkpoint import layout
from engine.weights import safe_load
from engine.checkpoint.zero_stream import StreamError, zero_state
from engine.utils.fileio import atomic_write, atomic_write_text
# the reader of these files moved to engine.weights.exported (pretrained loading reads them too); kept here
from engine.weights.exported import iter_exported, read_exported  # noqa: F401
from engine.model.pipeline import pipeline_state_dict
from engine.model.tensor_parallel import merge_tp_shards
from engine.model.ema import consolidate_ema

logger = logging.getLogger("engine")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FORMATS = {"safetensors": ".safetensors", "pt": ".pt"}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class ExportError(Exception):
    """Bad input for an export: the message names the file and what is wrong."""


def parse_size(text: str) -> int:
    """``5GB`` → 5·10⁹ bytes, ``500MiB`` → 500·2²⁰ (Hugging Face's convention); a bare number is bytes."""
    match = _SIZE_RE.match(str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise ExportError(f"--max-shard-size {text!r}: use a size like 5GB, 500MB, 2GiB or a number of bytes")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ExportError(f"--max-shard-size {text!r} must be positive")
    return size


def resolve(path: str, tag: Optional[str]) -> Tuple[str, str]:
    """(checkpoints root, tag) from an output dir, a checkpoints dir or a tag dir."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ExportError(f"{path}: no such directory")
    if os.path.isdir(os.path.join(path, "checkpoints")):
        path = os.path.join(path, "checkpoints")
    elif layout.tag_step(os.path.basename(path)) is not None and tag is None:
        return os.path.dirname(path), os.path.basename(path)
    if tag is None:
        complete = layout.complete_tags(path)
        if not complete:
            raise ExportError(f"{path}: no complete checkpoint tag (found: {layout.list_tags(path) or 'none'})")
        tag = complete[0]
    if not os.path.isdir(os.path.join(path, tag)):
        raise ExportError(f"{os.path.join(path, tag)}: no such tag (found: {layout.list_tags(path) or 'none'})")
    return path, tag


def _checked_marker(tag_dir: str) -> Dict[str, Any]:
    ok, why = layout.check_complete(tag_dir)
    if not ok:
        raise ExportError(f"{tag_dir} is not a complete checkpoint: {why}")
    return layout.read_marker(tag_dir)


def lazy_state(tag_dir: str, network: str) -> Dict[str, Any]:
    """name → tensor or DeepSpeed lazy tensor (``.contiguous()`` materialises it) of one engine."""
    info = _checked_marker(tag_dir)
    if network not in info.get("engines", []):
        raise ExportError(f"{tag_dir} has no network {network!r}; it holds {info.get('engines')}")
    pieces = info.get("export", {}).get(network, {})
    if "pipeline_key_map" in pieces:  # one file per layer, under pipeline keys
        return pipeline_state_dict(os.path.join(tag_dir, network), pieces["pipeline_key_map"])
    if "tp_specs" in pieces:  # each tensor-parallel rank holds column/row shards of the weights
        tp_size = int(pieces["tp_size"])
        if int(info.get("zero_stage", 0)) == 3:
            shards = _zero3_tp_shards(os.path.join(tag_dir, network), tp_size)
        else:
            shards = [safe_load.load(os.path.join(tag_dir, network, f"mp_rank_{rank:02d}_model_states.pt"))["module"]
                      for rank in range(tp_size)]
        return merge_tp_shards(shards, pieces["tp_specs"])
    if int(info.get("zero_stage", 0)) == 0:
        model_file = os.path.join(tag_dir, network, "mp_rank_00_model_states.pt")
        return dict(safe_load.load(model_file, mmap=True)["module"])
    stage = int(info["zero_stage"])
    try:
        return zero_state(os.path.join(tag_dir, network), stage)
    except StreamError as exc:  # a layout the streaming reader does not know: DeepSpeed's own (more memory)
        logger.warning(f"export: {exc}; falling back to DeepSpeed's zero_to_fp32, which holds the fp32 model "
                       "in memory")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    with safe_load.deepspeed_loads(os.path.join(tag_dir, network)):  # lazy mode reads every rank file here
        return dict(get_fp32_state_dict_from_zero_checkpoint(tag_dir, tag=network, lazy_mode=True))


_ZERO3_FILE = re.compile(r"^zero_pp_rank_(\d+)_mp_rank_(\d+)_(model|optim)_states\.pt$")


def _zero3_tp_shards(engine_dir: str, tp_size: int) -> List[Dict[str, torch.Tensor]]:
    """Each tensor-parallel rank's weights from a ZeRO-3 tag, rebuilt from the fp32 partitions.

    DeepSpeed's own consolidation reads every rank file of a folder as partitions of one model,
    which a TP tag is not, and AutoTP's layout differs per parameter group: the layers split by
    TP are partitioned over their data-parallel group, while the replicated ones built under
    zero.Init stay partitioned over the whole world (seen: flat groups of 161 and 8448 elements
    on each of 2 ranks for groups of 321 and 8448). A group's width is the one of (dp, world)
    whose per-parameter ``ceil(numel / width)`` pieces add up to the rank's flat group. The
    result holds one TP shard per rank in memory (fp32), the rank files memory-mapped.
    """
    files: Dict[Tuple[int, int], Dict[str, str]] = {}
    for name in os.listdir(engine_dir):
        match = _ZERO3_FILE.match(name)
        if match:
            files.setdefault((int(match[1]), int(match[2])), {})[match[3]] = os.path.join(engine_dir, name)
    dp_size = 1 + max((dp for dp, _ in files), default=-1)
    expected = {(dp, mp) for dp in range(dp_size) for mp in range(tp_size)}
    if not files or set(files) != expected or any(len(kinds) != 2 for kinds in files.values()):
        raise ExportError(f"{engine_dir}: expected ZeRO-3 model and optimizer files for {tp_size} tensor-parallel "
                          f"ranks × {dp_size} data-parallel ranks, found {sorted(os.listdir(engine_dir))}")
    world = dp_size * tp_size
    flats = {key: safe_load.load(paths["optim"], mmap=True)["optimizer_state_dict"]["fp32_flat_groups"]
             for key, paths in files.items()}
    shards = []
    for mp in range(tp_size):
        model = safe_load.load(files[(0, mp)]["model"])
        if model.get("frozen_param_shapes"):
            raise ExportError(f"{engine_dir}: frozen parameters in a tensor-parallel ZeRO-3 tag are not supported")
        state: Dict[str, torch.Tensor] = {}
        for group, shapes in enumerate(model["param_shapes"]):
            size = flats[(0, mp)][group].numel()
            widths = [w for w in (dp_size, world) if sum(-(-s.numel() // w) for s in shapes.values()) == size]
            if not widths:
                raise ExportError(f"{engine_dir}: parameter group {group} of TP rank {mp} does not match its "
                                  f"{size}-element partition at data-parallel or world width")
            members = ([(dp, mp) for dp in range(dp_size)] if widths[0] == dp_size
                       else [(rank // tp_size, rank % tp_size) for rank in range(world)])  # AutoTP: TP ranks adjacent
            offset = 0
            for name, shape in shapes.items():
                numel, piece = shape.numel(), -(-shape.numel() // widths[0])
                joined = torch.cat([flats[member][group][offset:offset + piece] for member in members])
                state[name] = joined[:numel].view(shape).clone()
                offset += piece
        for name in model.get("buffer_names", []):
            state[name] = model["module"][name]
        shards.append(state)
    return shards


def ema_state(tag_dir: str) -> Dict[str, torch.Tensor]:
    """The generator's EMA from the per-rank state files (ZeRO-3 ranks hold one shard each)."""
    info = _checked_marker(tag_dir)
    if not info.get("ema"):
        raise ExportError(f"{tag_dir} holds no EMA (trained with solver.ema.enabled off?)")
    states = []
    for rank in range(int(info["world_size"])):
        path = layout.rank_state_file(tag_dir, rank)
        states.append(safe_load.load(path).get("model", {}).get("ema"))
        if states[-1] is None:
            raise ExportError(f"{path} holds no EMA state")
        if not states[-1].get("sharded"):
            break  # unsharded: every rank holds the whole average
    try:
        return consolidate_ema(states)
    except ValueError as exc:
        raise ExportError(f"{tag_dir}: {exc}") from None


def _identity(value: Any) -> Any:
    """What makes two entries the same parameter: the object (lazy) or the storage view (real)."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return ("empty", id(value))
        return (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.stride())
    return ("object", id(value))


def split_tied(state: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """(entries to write, alias → written name): each tied tensor is kept once, under its first name."""
    first: Dict[Any, str] = {}
    unique: Dict[str, Any] = {}
    tied: Dict[str, str] = {}
    for name, value in state.items():
        key = _identity(value)
        if key in first:
            tied[name] = first[key]
        else:
            first[key] = name
            unique[name] = value
    return unique, tied


def _nbytes(value: Any, dtype: torch.dtype) -> int:
    shape = tuple(value.shape)
    numel = 1
    for size in shape:
        numel *= int(size)
    out = dtype if value.dtype.is_floating_point else value.dtype
    return numel * torch.empty((), dtype=out).element_size()


def plan_shards(state: Mapping[str, Any], dtype: torch.dtype, max_bytes: int) -> List[List[str]]:
    """Names per shard, in order, each shard at most ``max_bytes`` (a larger tensor gets its own)."""
    shards: List[List[str]] = [[]]
    size = 0
    for name, value in state.items():
        nbytes = _nbytes(value, dtype)
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def _materialise(value: Any, dtype: torch.dtype) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else value.contiguous()
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.detach().clone().contiguous()  # own storage: no view of a mapped file or of a tied tensor


_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}


def _tensor_bytes(tensor: torch.Tensor) -> Any:
    """The raw bytes of one tensor (little-endian, C order) without a second copy where possible."""
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else b""


def write_safetensors_streaming(entries: Mapping[str, Any], path: str, dtype: torch.dtype,
                                metadata: Dict[str, str]) -> None:
    """The safetensors format written one tensor at a time (header from shapes, then each tensor's bytes).

    Why not ``safetensors.torch.save_file``: it wants every tensor of the file materialised (and
    builds the file in memory); here a lazy ZeRO-3 parameter is gathered, written and dropped.
    """
    header: Dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, value in entries.items():
        out = dtype if value.dtype.is_floating_point else value.dtype
        if out not in _ST_DTYPES:
            raise ExportError(f"{name}: dtype {out} has no safetensors name")
        nbytes = _nbytes(value, dtype)
        header[name] = {"dtype": _ST_DTYPES[out], "shape": [int(x) for x in value.shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name, value in entries.items():
            tensor = value if isinstance(value, torch.Tensor) else value.contiguous()
            if tensor.is_floating_point():
                tensor = tensor.to(dtype)
            f.write(_tensor_bytes(tensor))
            del tensor  # one tensor in memory at a time


def _write_file(entries: Mapping[str, Any], path: str, fmt: str, metadata: Dict[str, str],
                dtype: torch.dtype) -> None:
    """Temp file, fsync, rename: a crash never leaves half a file under the final name."""

    def write(tmp: str) -> None:
        if fmt == "safetensors":
            write_safetensors_streaming(entries, tmp, dtype, metadata)
        else:  # torch.save needs the shard whole: one shard in memory at a time
            torch.save({"state_dict": {name: _materialise(value, dtype) for name, value in entries.items()},
                        "meta": metadata}, tmp)

    atomic_write(path, write)


def output_paths(out: str, fmt: str, count: int) -> Tuple[List[str], Optional[str]]:
    """(shard files, index file or None). ``out`` is a file name, or a folder (then ``model.<ext>``)."""
    ext = FORMATS[fmt]
    if os.path.isdir(out) or not os.path.splitext(out)[1]:
        out = os.path.join(out, "model" + ext)
    folder, stem = os.path.dirname(os.path.abspath(out)), os.path.splitext(os.path.basename(out))[0]
    if count == 1:
        return [os.path.abspath(out)], None
    files = [os.path.join(folder, f"{stem}-{i:05d}-of-{count:05d}{ext}") for i in range(1, count + 1)]
    return files, os.path.join(folder, f"{stem}{ext}.index.json")


def write_export(state: Mapping[str, Any], out: str, *, fmt: str = "safetensors", dtype: str = "fp32",
                 max_shard_size: str = "5GB", metadata: Optional[Dict[str, str]] = None) -> List[str]:
    """Write ``state`` (tensors or lazy tensors) to ``out``; returns the files written, index last."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: use one of {sorted(FORMATS)}")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: use one of {sorted(DTYPES)}")
    target = DTYPES[dtype]
    unique, tied = split_tied(state)
    shards = plan_shards(unique, target, parse_size(max_shard_size))
    files, index = output_paths(out, fmt, len(shards))
    os.makedirs(os.path.dirname(files[0]), exist_ok=True)
    meta = dict(metadata or {}, format="pt", dtype=dtype, tied=json.dumps(tied))
    weight_map: Dict[str, str] = {}
    total = 0
    release = getattr(state, "release", None)  # lazy ZeRO sources: unmap what this shard read
    for names, path in zip(shards, files):
        _write_file({name: unique[name] for name in names}, path, fmt, meta, target)
        total += sum(_nbytes(unique[name], target) for name in names)
        weight_map.update({name: os.path.basename(path) for name in names})
        if release is not None:
            release()
    if index is None:
        return files
    body = {"metadata": dict(meta, total_size=total, tied=tied), "weight_map": weight_map}
    atomic_write_text(index, json.dumps(body, indent=2))  # written last: the index says the shard set is whole
    return files + [index]
