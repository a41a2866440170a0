"""Peak RSS of building a ~200M-parameter model on each of 2 ranks, with and without zero.Init.

Why it matters: without ``deepspeed.zero.Init`` every rank first materialises the whole
model (4 bytes per fp32 parameter, ~0.8 GB here) and only ``deepspeed.initialize`` shards
it; with it (engine's default under ZeRO-3, ``deepspeed.zero_init``) a rank never holds
more than its shard plus one module. The build goes through engine's own
``construction_context``, i.e. the code path ``BaseModel`` takes.

Run: ``python benchmarks/zero3_init_memory.py [--params-m 200]``: it starts one torchrun pair
of ranks per mode (peak RSS never goes down within a process). Measured on the 2-core CPU
machine (201.4M parameters): peak RSS per rank 1022 MiB plain, 706 MiB with zero.Init
(251 MiB before the build; each rank holds 100.7M parameters instead of 201.4M).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def build(params_m: int, zero_init: bool) -> Dict[str, float]:
    """Build the model on this rank and report RSS figures in MiB."""
    import deepspeed
    from torch import nn

    from engine.model.zero_init import construction_context

    deepspeed.init_distributed(dist_backend="gloo")
    hidden = 4096
    layers = max(1, round(params_m * 1e6 / (hidden * hidden + hidden)))
    ds = {"train_micro_batch_size_per_gpu": 1, "train_batch_size": deepspeed.comm.get_world_size(),
          "zero_optimization": {"stage": 3}}
    before = _peak_mib()
    with construction_context(ds, zero_init):
        model = nn.Sequential(*(nn.Linear(hidden, hidden) for _ in range(layers)))
    local = sum(int(getattr(p, "ds_tensor", p).numel()) for p in model.parameters())
    total = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())
    out = {"params_total_m": total / 1e6, "params_local_m": local / 1e6, "peak_rss_before_mib": before,
           "peak_rss_after_mib": _peak_mib()}
    deepspeed.comm.barrier()
    return out


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-m", type=int, default=200, help="model size in millions of parameters")
    parser.add_argument("--mode", choices=("zero_init", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # a worker rank
        result = build(args.params_m, args.mode == "zero_init")
        print(f"RESULT rank {os.environ.get('RANK', 0)} {args.mode}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()),
              flush=True)
        return
    for mode in ("plain", "zero_init"):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "TORCHELASTIC", "GROUP_", "ROLE_"))}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", __file__,
               "--params-m", str(args.params_m), "--mode", mode]
        run = subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT")]
        print("\n".join(sorted(lines)) if lines else run.stdout[-2000:] + run.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
