"""Export one network of a checkpoint tag as a single consolidated fp32 state dict.

    python tools/convert_ckpt.py OUTPUT_DIR_OR_CHECKPOINT_DIR [--tag TAG] [--engine generator] [--ema] [--out FILE]

ZeRO 1-3 shards are merged with DeepSpeed's ``get_fp32_state_dict_from_zero_checkpoint``
(no process group, no GPU); ZeRO-0 tags hold the full module already. The output loads
with ``safetensors.torch.load_file`` / ``torch.load`` into the plain network with
``strict=True``, and as ``trainer.weights``. Incomplete tags are refused; the output is
written to a temp file, fsynced and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from engine.checkpoint import layout  # noqa: E402


class ConvertError(Exception):
    """Bad input: printed as one line, exit code 2."""


def resolve(path: str, tag: Optional[str]) -> Tuple[str, str]:
    """(checkpoints root, tag) from an output dir, a checkpoints dir or a tag dir."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ConvertError(f"{path}: no such directory")
    if os.path.isdir(os.path.join(path, "checkpoints")):
        path = os.path.join(path, "checkpoints")
    elif layout.tag_step(os.path.basename(path)) is not None and tag is None:
        return os.path.dirname(path), os.path.basename(path)
    if tag is None:
        complete = layout.complete_tags(path)
        if not complete:
            raise ConvertError(f"{path}: no complete checkpoint tag (found: {layout.list_tags(path) or 'none'})")
        tag = complete[0]
    return path, tag


def consolidate(tag_dir: str, engine: str) -> Dict[str, torch.Tensor]:
    """The fp32 weights of ``engine`` in ``tag_dir`` (checked complete first)."""
    ok, why = layout.check_complete(tag_dir)
    if not ok:
        raise ConvertError(f"{tag_dir} is not a complete checkpoint: {why}")
    info = layout.read_marker(tag_dir)
    if engine not in info.get("engines", []):
        raise ConvertError(f"{tag_dir} has no engine {engine!r}; it holds {info.get('engines')}")
    if int(info.get("zero_stage", 0)) == 0:
        model_file = os.path.join(tag_dir, engine, "mp_rank_00_model_states.pt")
        module = torch.load(model_file, map_location="cpu", weights_only=False)["module"]
        return {k: v.float() if v.is_floating_point() else v for k, v in module.items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(tag_dir, tag=engine)


def consolidate_ema_weights(tag_dir: str) -> Dict[str, torch.Tensor]:
    """The generator's EMA from every rank's state file (ZeRO-3 ranks hold one shard each)."""
    from engine.model.ema import consolidate_ema

    ok, why = layout.check_complete(tag_dir)
    if not ok:
        raise ConvertError(f"{tag_dir} is not a complete checkpoint: {why}")
    info = layout.read_marker(tag_dir)
    if not info.get("ema"):
        raise ConvertError(f"{tag_dir} holds no EMA (trained with solver.ema.enabled off?)")
    states = []
    for rank in range(int(info["world_size"])):
        own = torch.load(layout.rank_state_file(tag_dir, rank), map_location="cpu", weights_only=False)
        states.append(own.get("model", {}).get("ema"))
        if states[-1] is None:
            raise ConvertError(f"{layout.rank_state_file(tag_dir, rank)} holds no EMA state")
        if not states[-1].get("sharded"):
            break  # unsharded: every rank holds the whole average
    try:
        return consolidate_ema(states)
    except ValueError as exc:
        raise ConvertError(f"{tag_dir}: {exc}") from None


def untie(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage (tied weights): give each key its own copy."""
    seen = set()
    out = {}
    for key, value in state.items():
        ptr = (value.untyped_storage().data_ptr(), value.storage_offset()) if value.numel() else None
        out[key] = value.clone().contiguous() if ptr in seen else value.contiguous()
        if ptr is not None:
            seen.add(ptr)
    return out


def write_atomic(state: Dict[str, torch.Tensor], out: str, metadata: Dict[str, str]) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(out)}.tmp.{os.getpid()}")
    try:
        if out.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(untie(state), tmp, metadata=metadata)
        else:
            torch.save({"state_dict": state, "meta": metadata}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="output dir, its checkpoints/ dir, or one tag dir")
    parser.add_argument("--tag", help="tag to export (default: the newest complete one)")
    parser.add_argument("--engine", default="generator", help="which network of the bundle")
    parser.add_argument("--ema", action="store_true", help="export the generator's EMA weights instead of the raw ones")
    parser.add_argument("--out", help="FILE.safetensors (default) or FILE.pt; default ./<tag>_<engine>.safetensors")
    args = parser.parse_args(argv)
    try:
        root, tag = resolve(args.path, args.tag)
        tag_dir = os.path.join(root, tag)
        if not os.path.isdir(tag_dir):
            raise ConvertError(f"{tag_dir}: no such tag (found: {layout.list_tags(root) or 'none'})")
        if args.ema and args.engine != "generator":
            raise ConvertError(f"--ema: only the generator has an EMA, not {args.engine!r}")
        what = f"{args.engine}_ema" if args.ema else args.engine
        out = args.out or f"{tag}_{what}.safetensors"
        if not out.endswith((".safetensors", ".pt", ".pth")):
            raise ConvertError(f"--out {out}: use a .safetensors, .pt or .pth name")
        state = consolidate_ema_weights(tag_dir) if args.ema else consolidate(tag_dir, args.engine)
    except ConvertError as exc:
        print(f"convert_ckpt: error: {exc}", file=sys.stderr)
        return 2
    write_atomic(state, out, {"source": tag_dir, "engine": what, "format": "pt"})
    count = sum(v.numel() for v in state.values())
    print(f"wrote {out}: {len(state)} tensors, {count} values, from {tag_dir} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
