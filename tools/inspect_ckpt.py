"""What a checkpoint folder holds: tags, completeness, world size, ZeRO stage, engines, state, sizes.

    python tools/inspect_ckpt.py OUTPUT_OR_CHECKPOINT_DIR [--json]

Accepts an output dir, its ``checkpoints/`` dir, or one tag dir. Every tag folder is listed
(``iter_*`` newest first, then named ones such as ``best``), complete or not; an incomplete
one says why (the same check resume and export make). For complete tags it reads the
marker and, without loading any tensor data into memory (files are memory-mapped), looks for
optimizer state, LR scheduler state, EMA and each rank's RNG streams. Nothing is written.
Files are unpickled with ``weights_only=True`` and engine's allow-list
(``engine.weights.safe_load``): a file naming any other type is refused, reported as such,
and nothing from it runs. ``--trust-checkpoint`` loads such files anyway, for files you trust.
Exit code 0; 2 when the path does not exist or holds no tag; 3 when a file was refused.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.checkpoint import layout
from engine.weights import safe_load  # noqa: E402

RANK_FILE = "trainer_state_rank*.pt"


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def _load(path: str) -> Any:
    return safe_load.load(path, mmap=True)


def unsafe_files(tag_dir: str) -> Dict[str, List[str]]:
    """Every ``.pt`` of the tag that names a type the safe loader refuses → those types (static scan).

    Nothing is unpickled; files this tool never loads (optimizer partitions, layer files) are
    checked too, so a crafted file anywhere in the tag shows up before resume or export meets it.
    """
    found = {}
    for path in sorted(glob.glob(os.path.join(tag_dir, "**", "*.pt"), recursive=True)):
        names = safe_load.unsafe_globals(path)
        if names:
            found[os.path.relpath(path, tag_dir)] = names
    return found


def _refusals(report: Dict[str, Any]) -> List[str]:
    """The refusal message of every file the report found unsafe (unless trusted: none)."""
    if safe_load.is_trusted():
        return []
    return [str(safe_load.UnsafeCheckpointError(os.path.join(report["root"], tag["tag"], rel), names))
            for tag in report["tags"] for rel, names in tag.get("unsafe_files", {}).items()]


def engine_state(engine_dir: str) -> Dict[str, Any]:
    """Optimizer / LR scheduler presence and size of one DeepSpeed engine folder."""
    out: Dict[str, Any] = {"bytes": folder_size(engine_dir)}
    model_files = sorted(glob.glob(os.path.join(engine_dir, "*model_states.pt")))
    partitions = sorted(glob.glob(os.path.join(engine_dir, "*optim_states.pt")))
    out["optimizer_partitions"] = len(partitions)
    try:
        states = _load(model_files[0]) if model_files else {}
    except safe_load.UnsafeCheckpointError as exc:
        out["error"] = f"refused {exc.path}: contains {', '.join(exc.found)}"
        states = {}
    except Exception as exc:  # a truncated or foreign file: say so, keep going
        out["error"] = f"{model_files[0]}: {type(exc).__name__}: {exc}"
        states = {}
    out["optimizer"] = bool(partitions) or states.get("optimizer") is not None
    out["lr_scheduler"] = states.get("lr_scheduler") is not None
    out["global_steps"] = states.get("global_steps")
    return out


def rank_states(tag_dir: str) -> Dict[str, Any]:
    """Per rank: which RNG streams, whether an EMA, from the ``trainer_state_rank*.pt`` files."""
    ranks: Dict[str, Any] = {}
    for path in sorted(glob.glob(os.path.join(tag_dir, RANK_FILE))):
        rank = os.path.basename(path)[len("trainer_state_rank"):-3]
        try:
            own = _load(path)
        except safe_load.UnsafeCheckpointError as exc:
            ranks[str(int(rank))] = {"error": f"refused {exc.path}: contains {', '.join(exc.found)}"}
            continue
        except Exception as exc:
            ranks[str(int(rank))] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        ema = (own.get("model") or {}).get("ema")
        ranks[str(int(rank))] = {
            "rng": sorted((own.get("rng") or {}).keys()),
            "ema": None if ema is None else ("sharded" if ema.get("sharded") else "full"),
            "iteration": (own.get("trainer") or {}).get("iteration"),
            "global_sample_index": (own.get("trainer") or {}).get("global_sample_index"),
        }
    return ranks


def inspect_tag(tag_dir: str) -> Dict[str, Any]:
    """Everything the tool reports about one tag folder."""
    ok, why = layout.check_complete(tag_dir)
    info: Dict[str, Any] = {"tag": os.path.basename(tag_dir), "complete": ok, "bytes": folder_size(tag_dir)}
    if not ok:
        info["reason"] = why
        return info
    marker = layout.read_marker(tag_dir)
    info.update({key: marker.get(key) for key in ("iteration", "world_size", "zero_stage", "engines", "ema")})
    if "best" in marker:
        info["best"] = marker["best"]
    info["unsafe_files"] = unsafe_files(tag_dir)
    info["engine_state"] = {name: engine_state(os.path.join(tag_dir, name)) for name in marker.get("engines", [])}
    info["ranks"] = rank_states(tag_dir)
    universal_dir = os.path.join(tag_dir, "universal")
    if os.path.isdir(universal_dir):
        info["universal_cache_bytes"] = folder_size(universal_dir)
    return info


def find_tags(root: str) -> List[str]:
    """``iter_*`` tags newest first, then other folders that look like tags (marker or engine folders)."""
    steps = layout.list_tags(root)
    named = sorted(name for name in os.listdir(root) if name not in steps and not name.startswith(".")
                   and os.path.isdir(os.path.join(root, name))
                   and (os.path.isfile(os.path.join(root, name, layout.MARKER))
                        or glob.glob(os.path.join(root, name, RANK_FILE))))
    return steps + named


def inspect(path: str) -> Dict[str, Any]:
    """The report for an output dir, a checkpoints dir or one tag dir."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such directory")
    if os.path.isdir(os.path.join(path, "checkpoints")):
        path = os.path.join(path, "checkpoints")
    if os.path.isfile(os.path.join(path, layout.MARKER)) or glob.glob(os.path.join(path, RANK_FILE)):
        return {"root": os.path.dirname(path), "latest": None, "tags": [inspect_tag(path)]}
    tags = find_tags(path)
    if not tags:
        raise FileNotFoundError(f"{path}: no checkpoint tags (expected iter_* folders or a checkpoints/ dir)")
    latest_file = os.path.join(path, layout.LATEST)
    latest: Optional[str] = open(latest_file, encoding="utf-8").read().strip() if os.path.isfile(latest_file) else None
    return {"root": path, "latest": latest, "tags": [inspect_tag(os.path.join(path, t)) for t in tags]}


def _mib(n: int) -> str:
    """A readable size: B, KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(report: Dict[str, Any]) -> str:
    lines = [f"{report['root']}  (latest: {report['latest'] or '-'})"]
    for tag in report["tags"]:
        if not tag["complete"]:
            lines.append(f"  {tag['tag']}: INCOMPLETE ({tag['reason']}), {_mib(tag['bytes'])}")
            continue
        lines.append(f"  {tag['tag']}: complete, step {tag['iteration']}, world size {tag['world_size']}, "
                     f"ZeRO {tag['zero_stage']}, engines {', '.join(tag['engines'])}, {_mib(tag['bytes'])}"
                     + (f", best {tag['best']}" if tag.get("best") else ""))
        for name, eng in tag["engine_state"].items():
            lines.append(f"    {name}: optimizer {'yes' if eng['optimizer'] else 'no'}"
                         f" ({eng['optimizer_partitions']} ZeRO partition files), LR scheduler "
                         f"{'yes' if eng['lr_scheduler'] else 'no'}, {_mib(eng['bytes'])}"
                         + (f", ERROR {eng['error']}" if eng.get("error") else ""))
        for rank, own in tag["ranks"].items():
            if "error" in own:
                lines.append(f"    rank {rank}: unreadable state file ({own['error']})")
                continue
            lines.append(f"    rank {rank}: RNG {'/'.join(own['rng']) or 'none'}, EMA {own['ema'] or 'no'}, "
                         f"global sample index {own['global_sample_index']}")
        missing = sorted(set(range(int(tag["world_size"] or 0))) - {int(r) for r in tag["ranks"]})
        if missing:
            lines.append(f"    ranks without a state file: {missing}")
        for rel, names in tag.get("unsafe_files", {}).items():
            lines.append(f"    UNSAFE {rel}: contains {', '.join(names)} (refused by the safe loader)")
        if "universal_cache_bytes" in tag:
            lines.append(f"    universal/ (world-size change cache): {_mib(tag['universal_cache_bytes'])}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="output dir, its checkpoints/ dir, or one tag dir")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(safe_load.TRUST_FLAG, dest="trust", action="store_true",
                        help="unpickle files with weights_only=False: only for checkpoints you trust")
    args = parser.parse_args(argv)
    safe_load.trust_checkpoints(args.trust)
    try:
        report = inspect(args.path)
    except FileNotFoundError as exc:
        print(f"inspect_ckpt: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1, default=str) if args.json else render(report))
    refused = _refusals(report)
    for message in dict.fromkeys(refused):
        print(f"inspect_ckpt: error: {message}", file=sys.stderr)
    return 3 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
