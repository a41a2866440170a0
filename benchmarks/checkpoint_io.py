"""Checkpoint save time against plain write+fsync of the same bytes; export peak RSS against the largest shard.

Why: a save should cost about what the disk costs; if it is far slower, time goes into
serialisation or extra copies. An export (``tools/convert_ckpt.py``) must not need the whole
model many times over in memory; its peak RSS is compared with the largest file it writes.

Run: ``python benchmarks/checkpoint_io.py [--params-m 64] [--shard 100MB]`` (CPU, ZeRO-2, one
rank, AdamW with one step taken so the optimizer state is real). The save runs in a child
process; each export runs in its own child, measured with ``os.wait4`` (that child's
``ru_maxrss``), next to a child that only imports what the tool imports (the floor). The
parent stays small on purpose: Linux carries the peak RSS of the process that forked into
the child's ``ru_maxrss``, so a fat parent would hide the export's own peak.

Measured on the 2-core CPU machine (62.9M parameters, 961 MiB tag): see the issue note; the
script prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

MIB = 2 ** 20


def build_engine(params_m: int, stage: int = 2):
    """A ZeRO-``stage`` engine of an MLP with ~``params_m`` million parameters, after one AdamW step."""
    import deepspeed
    import torch
    from torch import nn

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no JIT build of the shm op on CPU
    deepspeed.init_distributed(dist_backend="gloo")
    hidden = 2048
    layers = max(1, round(params_m * 1e6 / (hidden * hidden + hidden)))
    model = nn.Sequential(*(nn.Linear(hidden, hidden) for _ in range(layers)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ds = {"train_micro_batch_size_per_gpu": 2, "train_batch_size": 2, "zero_optimization": {"stage": stage}}
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
    loss = engine(torch.randn(2, hidden)).pow(2).mean()
    engine.backward(loss)
    engine.step()
    return engine, sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())


def files_of(folder: str) -> List[Tuple[str, int]]:
    return [(os.path.join(d, n), os.path.getsize(os.path.join(d, n))) for d, _, names in os.walk(folder) for n in names]


def plain_write(folder: str, sizes: List[int]) -> float:
    """Seconds to write and fsync files of these sizes (random bytes, 16 MiB chunks), as a save would."""
    chunk = os.urandom(16 * MIB)
    os.makedirs(folder)
    start = time.perf_counter()
    for i, size in enumerate(sizes):
        with open(os.path.join(folder, f"f{i}"), "wb") as f:
            left = size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - start


def measure_save(work: str, params_m: int, stage: int = 2) -> Dict[str, float]:
    from engine.checkpoint import layout
    from engine.checkpoint.saver import save_checkpoint

    engine, count = build_engine(params_m, stage)
    trainer = SimpleNamespace(
        cfg=SimpleNamespace(OUTPUT_DIR=work, SOLVER=SimpleNamespace(MAX_KEEP=5)),
        model=SimpleNamespace(engines={"generator": engine}), ds_config={"zero_optimization": {"stage": stage}},
        state_dict=lambda: {"iteration": 1})
    times, ds_only = [], []
    for step in (1, 2):  # the first save also pays one-off costs; max_keep 5: no rotation is timed
        start = time.perf_counter()
        tag_dir = save_checkpoint(trainer, step)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()  # DeepSpeed's own save, no fsync, no marker: where the time goes
        engine.save_checkpoint(os.path.join(work, "ds_only"), tag=f"t{step}", save_latest=False)
        ds_only.append(time.perf_counter() - start)
    shutil.rmtree(os.path.join(work, "ds_only"))
    sizes = [size for _, size in files_of(tag_dir)]
    plain = [plain_write(os.path.join(work, f"plain{i}"), sizes) for i in (1, 2)]
    for i in (1, 2):
        shutil.rmtree(os.path.join(work, f"plain{i}"))
    return {"params_m": count / 1e6, "bytes": sum(sizes), "files": len(sizes), "save_s": min(times),
            "ds_only_s": min(ds_only), "plain_s": min(plain), "tag_dir": tag_dir,
            "complete": layout.check_complete(tag_dir)[0]}


def child_peak(cmd: List[str]) -> Tuple[float, float]:
    """(peak RSS MiB, seconds) of one child process, from its own rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # Linux: KiB


def measure_exports(tag_dir: str, work: str, shard: str) -> List[Dict[str, float]]:
    floor, _ = child_peak([sys.executable, "-c", "import torch, deepspeed.utils.zero_to_fp32, safetensors.torch, "
                                                 "engine.checkpoint.export"])
    rows = [{"case": "imports only (floor)", "peak_mib": floor, "largest_mib": 0.0, "files": 0, "seconds": 0.0}]
    tool = os.path.join(REPO, "tools", "convert_ckpt.py")
    for name, args in (("fp32, one file", []), (f"fp32, shards <= {shard}", ["--max-shard-size", shard]),
                       (f"bf16, shards <= {shard}", ["--max-shard-size", shard, "--dtype", "bf16"])):
        out = os.path.join(work, "export_" + str(len(rows)))
        peak, seconds = child_peak([sys.executable, tool, tag_dir, out, *args])
        sizes = [size for path, size in files_of(out) if not path.endswith(".json")]
        rows.append({"case": name, "peak_mib": peak, "largest_mib": max(sizes) / MIB, "files": len(sizes),
                     "seconds": seconds})
        shutil.rmtree(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-m", type=int, default=64, help="model size in millions of parameters")
    parser.add_argument("--stage", type=int, default=2, choices=(0, 1, 2, 3), help="ZeRO stage of the saved engine")
    parser.add_argument("--shard", default="100MB", help="--max-shard-size of the sharded exports")
    parser.add_argument("--workdir", help="where to write (default: a temp dir, removed after)")
    parser.add_argument("--save-only", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ckpt_io_")
    if args.save_only:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"})
        from engine.schedule.launch import free_port

        os.environ.setdefault("MASTER_PORT", str(free_port()))
        print("RESULT " + json.dumps(measure_save(work, args.params_m, args.stage)))
        return
    try:
        child = subprocess.run([sys.executable, __file__, "--save-only", "--workdir", work, "--params-m",
                                str(args.params_m), "--stage", str(args.stage)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=1200)
        found = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not found:
            raise SystemExit(f"save benchmark failed:\n{child.stdout[-3000:]}")
        save = json.loads(found[0][len("RESULT "):])
        print(f"model: {save['params_m']:.1f}M parameters, ZeRO-{args.stage}, 1 rank, AdamW state; tag: {save['files']} files, "
              f"{save['bytes'] / MIB:.0f} MiB (complete: {save['complete']})")
        print(f"save (engine save_checkpoint, incl. fsync + marker): {save['save_s']:.2f} s "
              f"= {save['bytes'] / MIB / save['save_s']:.0f} MiB/s")
        print(f"  of which DeepSpeed engine.save_checkpoint alone (no fsync): {save['ds_only_s']:.2f} s")
        print(f"plain write + fsync of the same file sizes:           {save['plain_s']:.2f} s "
              f"= {save['bytes'] / MIB / save['plain_s']:.0f} MiB/s  -> save/plain {save['save_s'] / save['plain_s']:.2f}x")
        print("export (tools/convert_ckpt.py, own child process):")
        print(f"  {'case':28s} {'peak RSS MiB':>12s} {'largest file MiB':>16s} {'files':>5s} {'s':>6s}")
        for row in measure_exports(save["tag_dir"], work, args.shard):
            print(f"  {row['case']:28s} {row['peak_mib']:12.0f} {row['largest_mib']:16.0f} {row['files']:5d} "
                  f"{row['seconds']:6.1f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
