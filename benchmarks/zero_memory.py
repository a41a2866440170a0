"""Model-state bytes per rank at ZeRO stages 0-3, measured from the tensors each rank holds.

Why it matters: the "Scaling up" table of docs/large_models.md tells users what each ``deepspeed.zero_optimization.stage``
buys them. The ZeRO paper's formulas (Adam: parameters, gradients, optimizer states) are the promise;
this benchmark checks DeepSpeed 0.19's actual storage against them instead of quoting the paper.

How: each rank builds the same MLP (Ψ parameters), runs ``deepspeed.initialize`` with Adam (torch's, no
JIT build on CPU), one full step, then a second forward/backward, and counts at that point (the peak of
model state: gradients are live and Adam's moments exist). It walks the model's parameters and the ZeRO
optimizer's attributes (lists/dicts of tensors included), deduplicates by storage (parameters are views
into DeepSpeed's flat buffers) and sorts each storage into parameters (``p.data``, ``p.ds_tensor``, the
low-precision flat groups), gradients (``p.grad``, ``averaged_gradients``, ``grads_in_partition``,
ZeRO-3's ``grad_partitions_flat_buffer``, ``.grad`` of the fp32 partitions), optimizer states (``state``
tensors and the fp32 master partitions ``single_partition_of_fp32_groups`` / ``fp32_partitioned_groups_flat``)
and other buffers (reduce buckets and the like; reported, not part of the formula).

Run: ``python benchmarks/zero_memory.py [--params-m 20] [--nproc 2] [--dtypes fp32 bf16]``: one torchrun
group measures every (dtype, stage) in turn, one engine at a time (a start costs more CPU than a
measurement; the counts walk each engine's own tensors, so an earlier engine does not change them).

Measured on the 2-core CPU machine (Ψ = 19.94M, N = 2, DeepSpeed 0.19.8), bytes per parameter per rank,
fp32 / bf16: ZeRO-0 16.00 / 16.00, ZeRO-1 12.11 / 9.05, ZeRO-2 12.11 / 9.05, ZeRO-3 10.00 / 8.00; within
1 % of ``deepspeed_formula`` everywhere. Against the paper: bf16 stages 0, 2, 3 and fp32 stages 0, 1 within
1 %; bf16 stage 1 0.91× (its gradients are already partitioned), fp32 stages 2-3 1.21× / 1.25× (DeepSpeed's
extra fp32 master partition). The +0.11 at stages 1-2 is the partition's gradient buffer holding the whole
gradient of the parameter that straddles the partition boundary. Other optimizer buffers: 0 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

KINDS = ("params", "grads", "optim", "buffers")


def _tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Tensors inside ``obj`` (a tensor, or lists/tuples/dicts of them), with their ``.grad``."""
    if isinstance(obj, torch.Tensor):
        yield obj
        if obj.grad is not None:
            yield obj.grad
    elif depth < 4 and isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, depth + 1)


def _kind(attr: str) -> str:
    """Which model-state category a ZeRO optimizer attribute belongs to, by DeepSpeed's naming."""
    name = attr.lower()
    if "fp32" in name and "grad" not in name.replace("groups", ""):
        return "optim"  # fp32 master partitions
    if "grad" in name:
        return "grads"
    if "bit16" in name or "fp16" in name or "lp_param" in name:
        return "params"
    return "buffers"


def model_state_bytes(engine: Any) -> Dict[str, int]:
    """Bytes this rank holds per category, each storage counted once (first category wins)."""
    seen: Dict[int, str] = {}
    totals = dict.fromkeys(KINDS, 0)

    def add(kind: str, tensors: Iterator[torch.Tensor]) -> None:
        for t in tensors:
            if t.device.type == "meta":  # shape records (e.g. round_robin_bit16_meta), no memory
                continue
            storage = t.untyped_storage()
            if storage.nbytes() == 0 or storage.data_ptr() in seen:
                continue
            seen[storage.data_ptr()] = kind
            totals[kind] += storage.nbytes()

    params = list(engine.module.parameters())
    add("params", (getattr(p, "ds_tensor", p.data) for p in params))
    add("params", (p.data for p in params))
    zero = engine.optimizer
    # the fp32 masters' .grad are gradients, not optimizer state: take them before the masters
    for attr, value in vars(zero).items():
        if _kind(attr) == "optim":
            add("grads", (t.grad for t in _tensors(value) if t.grad is not None))
    add("grads", (p.grad for p in params if p.grad is not None))
    inner = getattr(zero, "optimizer", zero)
    add("optim", (t for state in inner.state.values() for t in _tensors(state)))
    ordered = sorted(vars(zero).items(), key=lambda kv: KINDS.index(_kind(kv[0])))
    for attr, value in ordered:
        add(_kind(attr), _tensors(value))
    return totals


def worker(stage: int, dtype: str, params_m: float) -> Dict[str, Any]:
    """One rank, one (stage, dtype): build, step once, forward/backward again, count model state."""
    import deepspeed
    from torch import nn

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no JIT build on CPU
    deepspeed.init_distributed(dist_backend="gloo")  # once: later calls find the group up
    torch.manual_seed(0)
    hidden = 1024
    layers = max(1, round(params_m * 1e6 / (hidden * hidden + hidden)))
    model = nn.Sequential(*(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(layers)))
    world = deepspeed.comm.get_world_size()
    ds: Dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 4, "train_batch_size": 4 * world, "gradient_clipping": 0.0,
        "optimizer": {"type": "Adam", "params": {"lr": 1e-4, "torch_adam": True}},
        "zero_optimization": {"stage": stage},
    }
    if dtype == "bf16":
        ds["bf16"] = {"enabled": True}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds,
                                      dist_init_required=False)
    x = torch.randn(4, hidden, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    for step in range(2):
        loss = engine(x).float().pow(2).mean()
        engine.backward(loss)
        if step == 0:
            engine.step()
    psi = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())
    return {"stage": stage, "dtype": dtype, "rank": deepspeed.comm.get_rank(), "world": world, "psi": psi,
            "optimizer": type(engine.optimizer).__name__, **model_state_bytes(engine)}


def paper_formula(stage: int, dtype: str, n: int) -> float:
    """ZeRO paper (and issue 7): model-state bytes per parameter per rank for Adam."""
    if dtype == "bf16":  # 2 (bf16 params) + 2 (bf16 grads) + 12 (fp32 master + 2 moments)
        return {0: 16, 1: 4 + 12 / n, 2: 2 + 14 / n, 3: 16 / n}[stage]
    return {0: 16, 1: 8 + 8 / n, 2: 4 + 12 / n, 3: 16 / n}[stage]  # 4 + 4 + 8, no separate master


def deepspeed_formula(stage: int, dtype: str, n: int) -> float:
    """What DeepSpeed 0.19 keeps (measured here, consistent with stage_1_and_2.py / stage3.py): at the end
    of backward, stage 1 holds only its partition's gradients (``averaged_gradients``), as stage 2 does,
    so its gradient term is stage 2's; in fp32 its ZeRO 1-3 optimizers still clone an fp32 master
    partition (4Ψ/N) beside the fp32 parameters, which the paper's fp32 variant does not count."""
    formula = paper_formula(2 if stage == 1 else stage, dtype, n)
    return formula + 4 / n if dtype == "fp32" and stage > 0 else formula


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params-m", type=float, default=20, help="model size in millions of parameters")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    parser.add_argument("--stages", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--json", action="store_true", help="print the per-rank rows as one JSON list")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mine = [worker(stage, dtype, args.params_m) for dtype in args.dtypes for stage in args.stages]
        every: List[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, mine)  # rank 0 prints: lines of two ranks would interleave
        if torch.distributed.get_rank() == 0:
            for row in (row for rows in every for row in rows):
                print("ZMEM " + json.dumps(row), flush=True)
        return
    from engine.launch import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
           f"--master_port={free_port()}", os.path.abspath(__file__), "--params-m", str(args.params_m),
           "--dtypes", *args.dtypes, "--stages", *map(str, args.stages), "--worker"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600 * len(args.dtypes))
    rows: List[Dict[str, Any]] = sorted(
        (json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("ZMEM ")),
        key=lambda r: (args.dtypes.index(r["dtype"]), r["stage"], r["rank"]))
    if out.returncode != 0 or len(rows) != args.nproc * len(args.dtypes) * len(args.stages):
        print(f"the measuring start failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}", flush=True)
    if not rows:
        sys.exit("no run succeeded")
    if args.json:
        print(json.dumps(rows))
        return
    psi = rows[0]["psi"]
    print(f"Ψ = {psi / 1e6:.2f}M parameters, {args.nproc} ranks, Adam; bytes per rank after step 1 + backward 2 "
          f"(MiB; 'B/Ψ' = bytes per parameter)")
    header = (f"{'dtype':>5} {'ZeRO':>4} {'rank':>4} {'params':>8} {'grads':>8} {'optim':>8} {'total':>8} {'B/Ψ':>6} "
              f"{'paper':>6} {'ratio':>6} {'DS':>6} {'ratio':>6} {'buffers':>8}  optimizer")
    print(header)
    for r in rows:
        total = r["params"] + r["grads"] + r["optim"]
        paper, ds = paper_formula(r["stage"], r["dtype"], r["world"]), deepspeed_formula(r["stage"], r["dtype"], r["world"])
        per = total / r["psi"]
        mib = [r[k] / 2**20 for k in ("params", "grads", "optim")]
        print(f"{r['dtype']:>5} {r['stage']:>4} {r['rank']:>4} {mib[0]:>8.1f} {mib[1]:>8.1f} {mib[2]:>8.1f} "
              f"{total / 2**20:>8.1f} {per:>6.2f} {paper:>6.2f} {per / paper:>6.2f} {ds:>6.2f} {per / ds:>6.2f} "
              f"{r['buffers'] / 2**20:>8.1f}  {r['optimizer']}")


if __name__ == "__main__":
    main()
