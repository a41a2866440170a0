"""The environment report: what a bug report or a slow run needs to be understood.

Logged by rank 0 at the start of every run; ``python -m engine.collect_env`` prints it
(``--config-file cfg.py`` adds the DeepSpeed config that engine would derive from it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any, List, Mapping, Optional, Sequence, Tuple
from engine.runplan.ds_config import summarize
from engine.config import get_cfg
from engine.runplan.plan import build_run_plan


def _version(module: str) -> str:
    """The module's version, or why there is none; never raises (a report must not fail)."""
    try:
        imported = __import__(module)
    except Exception as exc:  # missing, or broken by a bad install: both are worth reporting
        return f"not available ({type(exc).__name__})"
    return str(getattr(imported, "__version__", "unknown"))


def collect_env(ds_config: Optional[Mapping[str, Any]] = None, world_size: Optional[int] = None) -> List[Tuple[str, str]]:
    """(name, value) rows: versions, devices, world size and, given one, the DeepSpeed config summary."""
    import torch

    rows = [
        ("python", sys.version.split()[0] + f" ({platform.platform()})"),
        ("torch", torch.__version__),
        ("deepspeed", _version("deepspeed")),
        ("cv2", _version("cv2")),
        ("numpy", _version("numpy")),
        ("CUDA (torch built with)", str(torch.version.cuda or "none")),
    ]
    if torch.cuda.is_available():
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            rows.append((f"GPU {index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                         f"compute {props.major}.{props.minor}"))
        rows.append(("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")))
    else:
        rows.append(("GPU", "none (CPU run)"))
    rows.append(("CPU", f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"))
    rows.append(("world size", str(world_size if world_size is not None else os.environ.get("WORLD_SIZE", "1"))))
    if ds_config is not None:
        rows.append(("DeepSpeed config", summarize(ds_config)))
    return rows


def format_env(rows: Sequence[Tuple[str, str]]) -> str:
    """The rows as an aligned two-column block."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Print the environment engine runs in.")
    parser.add_argument("--config-file", default="", help="also show the DeepSpeed config derived from this config")
    parser.add_argument("--world-size", type=int, default=1, help="world size to derive the DeepSpeed config for")
    args = parser.parse_args(argv)
    ds_config = None
    if args.config_file:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        plan = build_run_plan(get_cfg(args.config_file), rank=0, world_size=args.world_size, device=device)
        ds_config = plan.ds_config()
    print(format_env(collect_env(ds_config, args.world_size)))


if __name__ == "__main__":
    main()
