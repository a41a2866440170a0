"""Export one network of a checkpoint tag as a consolidated state dict (one file, or shards + index).

    python tools/convert_ckpt.py CHECKPOINT_DIR [--tag T] [--network generator|NAME] [--ema]
        [--dtype fp32|bf16|fp16] [--format safetensors|pt] [--max-shard-size 5GB] OUT

CHECKPOINT_DIR: an output dir, its ``checkpoints/`` dir, or one tag dir (default tag: the newest
complete one). OUT: ``FILE.safetensors`` / ``FILE.pt``, or a folder (then ``model.<ext>``).
Above ``--max-shard-size`` the output is Hugging Face's layout: ``<stem>-00001-of-0000N.<ext>``
plus ``<stem>.<ext>.index.json`` (``weight_map``, ``metadata.total_size``), index written last.
ZeRO 1-3 shards are merged with DeepSpeed's ``zero_to_fp32`` (lazily for ZeRO-3); no GPU and no
process group are needed. Tied parameters are written once and listed as ``tied`` in the
metadata; ``engine.weights.exported.read_exported(path)`` restores them, so
``net.load_state_dict(read_exported(path), strict=True)`` works for a file or an index. A
single-file export without tied parameters also loads with ``safetensors.torch.load_file`` /
``torch.load(...)["state_dict"]`` and as ``trainer.weights``. Incomplete tags are refused;
every file is written to a temp name, fsynced and renamed. Checkpoint files are unpickled with
``weights_only=True`` and engine's allow-list; a file naming another type is refused (exit code
3, nothing from it runs) unless ``--trust-checkpoint`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.weights import safe_load  # noqa: E402
from engine.checkpoint.export import (  # noqa: E402
    DTYPES, FORMATS, ExportError, ema_state, lazy_state, parse_size, resolve, write_export,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="output dir, its checkpoints/ dir, or one tag dir")
    parser.add_argument("out", nargs="?", help="FILE.safetensors, FILE.pt or a folder "
                                               "(default ./<tag>_<network>.<ext>)")
    parser.add_argument("--out", dest="out_opt", help="same as the positional OUT (older spelling)")
    parser.add_argument("--tag", help="tag to export (default: the newest complete one)")
    parser.add_argument("--network", "--engine", dest="network", default="generator",
                        help="which network of the bundle: generator, discriminator, or another engine name")
    parser.add_argument("--ema", action="store_true", help="export the generator's EMA weights instead of the raw ones")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="floating tensors are cast to this")
    parser.add_argument("--format", choices=sorted(FORMATS), help="default: from OUT's extension, else safetensors")
    parser.add_argument("--max-shard-size", default="5GB", help="split above this size (5GB, 500MB, 2GiB, bytes)")
    parser.add_argument(safe_load.TRUST_FLAG, dest="trust", action="store_true",
                        help="unpickle files with weights_only=False: only for checkpoints you trust")
    return parser


def pick_format(out: Optional[str], fmt: Optional[str]) -> str:
    """The output format: ``--format`` if given (must agree with OUT's extension), else the extension."""
    ext = os.path.splitext(out or "")[1].lower()
    by_ext = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".bin": "pt"}
    if ext and ext not in by_ext:
        raise ExportError(f"OUT {out}: use a .safetensors, .pt, .pth or .bin name, or a folder")
    if fmt and ext and by_ext[ext] != fmt:
        raise ExportError(f"OUT {out} has a {ext} name but --format is {fmt}")
    return fmt or by_ext.get(ext, "safetensors")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    safe_load.trust_checkpoints(args.trust)
    try:
        if args.out and args.out_opt and args.out != args.out_opt:
            raise ExportError(f"two outputs given: {args.out} and --out {args.out_opt}")
        out = args.out or args.out_opt
        fmt = pick_format(out, args.format)
        parse_size(args.max_shard_size)
        root, tag = resolve(args.path, args.tag)
        tag_dir = os.path.join(root, tag)
        if args.ema and args.network != "generator":
            raise ExportError(f"--ema: only the generator has an EMA, not {args.network!r}")
        what = f"{args.network}_ema" if args.ema else args.network
        out = out or f"{tag}_{what}{FORMATS[fmt]}"
        state = ema_state(tag_dir) if args.ema else lazy_state(tag_dir, args.network)
        files = write_export(state, out, fmt=fmt, dtype=args.dtype, max_shard_size=args.max_shard_size,
                             metadata={"source": tag_dir, "engine": what})
    except ExportError as exc:
        print(f"convert_ckpt: error: {exc}", file=sys.stderr)
        return 2
    except safe_load.UnsafeCheckpointError as exc:
        print(f"convert_ckpt: error: {exc}", file=sys.stderr)
        return safe_load.REFUSED_EXIT
    count = sum(int(v.shape.numel()) if hasattr(v.shape, "numel") else 0 for v in state.values())
    shown = files[-1] if len(files) > 1 else files[0]
    extra = f" ({len(files) - 1} shards)" if len(files) > 1 else ""
    print(f"wrote {shown}{extra}: {len(state)} tensors, {count} values, {args.dtype}, from {tag_dir} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
