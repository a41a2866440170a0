"""Checkpoint save time against plain write+fsync of the same bytes; async blocking; export peak RSS.

Why: a save should cost about what the disk costs; if it is far slower, time goes into
serialisation or extra copies. An asynchronous save should block training for a small part
of that. An export (``tools/convert_ckpt.py``) must not need the whole model in memory; its
peak RSS above the import floor is compared with the largest file it writes.

Run: ``python benchmarks/checkpoint_io.py [--params-m 64] [--stages 1 2 3] [--rounds 3] [--no-export]``
(CPU, one rank, AdamW with one step taken so the optimizer state is real). For each ZeRO stage
the saves run in a child process: a warm-up save of each kind, then ``--rounds`` rounds of a plain
write + fsync of the tag's file sizes, a synchronous save and an asynchronous one, each through a
``Checkpointer`` and a model bundle built directly (``save_tag``: what training waits for; then
``wait``: the background write and the marker); the
fastest of each kind counts, every round is printed. Each export runs in its
own child, measured with ``os.wait4`` (that child's ``ru_maxrss``), next to a child that only
imports what the tool imports (the floor). The parent stays small on purpose: Linux carries
the peak RSS of the process that forked into the child's ``ru_maxrss``, so a fat parent would
hide the export's own peak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Tuple

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


def measure_save(work: str, params_m: int, stage: int = 2, rounds: int = 3) -> Dict[str, float]:
    """Synchronous and asynchronous saves of one engine, against plain write+fsync of the same files.

    A warm-up save first (it pays one-off costs: folders, the async host buffers' page faults), then
    ``rounds`` rounds of (plain write, sync save, async save), each kind's fastest counted: the disk
    of a shared machine drifts over minutes, and interleaving lets the drift hit all three alike.
    """
    from engine.checkpoint import layout
    from engine.checkpoint.async_writer import BackgroundWriter
    from engine.checkpoint.checkpointer import Checkpointer

    engine, count = build_engine(params_m, stage)
    model, state = SimpleNamespace(engines={"generator": engine}), {"iteration": 1}  # the model bundle
    sync = Checkpointer(work, max_keep=1, zero_stage=stage)
    background = Checkpointer(work, max_keep=1, zero_stage=stage, writer=BackgroundWriter())
    tag_dir = sync.save_tag(model, state, 1)
    sizes = [size for _, size in files_of(tag_dir)]
    background.save_tag(model, state, 2)
    background.wait()
    times: Dict[str, List[float]] = {"plain": [], "sync_ds": [], "sync": [], "blocked": [], "async": []}
    step = 2
    for i in range(rounds):
        times["plain"].append(plain_write(os.path.join(work, f"plain{i}"), sizes))
        shutil.rmtree(os.path.join(work, f"plain{i}"))
        for kind in ("sync_ds", "sync"):
            _drop_old_tags(work, layout)  # deleting the previous tag is not part of the timed save
            step += 1
            with _deepspeed_writer(engine, kind == "sync_ds"):
                start = time.perf_counter()
                sync.save_tag(model, state, step)
                times[kind].append(time.perf_counter() - start)
        _drop_old_tags(work, layout)
        step += 1
        start = time.perf_counter()
        background.save_tag(model, state, step)
        times["blocked"].append(time.perf_counter() - start)
        background.wait()
        times["async"].append(time.perf_counter() - start)
    tag_dir = os.path.join(layout.checkpoint_root(work), layout.tag_name(step))
    return {"params_m": count / 1e6, "bytes": sum(sizes), "files": len(sizes), "save_s": min(times["sync"]),
            "save_ds_s": min(times["sync_ds"]),
            "plain_s": min(times["plain"]), "async_block_s": min(times["blocked"]),
            "async_total_s": min(times["async"]), "rounds": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "tag_dir": tag_dir, "complete": layout.check_complete(tag_dir)[0]}


@contextlib.contextmanager
def _deepspeed_writer(engine: Any, on: bool) -> Iterator[None]:
    """With ``on``, the sync save writes with DeepSpeed's own ``torch.save`` (the baseline): a subclass
    of its default checkpoint engine is one ``engine.checkpoint.writer.replaceable`` leaves alone."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class DeepSpeedsOwn(TorchCheckpointEngine):
        pass

    own = engine.checkpoint_engine
    if on:
        baseline = DeepSpeedsOwn()
        baseline.zipfile_serialization = own.zipfile_serialization
        engine.checkpoint_engine = baseline
    try:
        yield
    finally:
        engine.checkpoint_engine = own


def _drop_old_tags(work: str, layout: Any) -> None:
    root = layout.checkpoint_root(work)
    for tag in layout.list_tags(root):
        layout.remove_tag(root, tag)


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
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], choices=(0, 1, 2, 3),
                        help="ZeRO stages to save and export, one engine each")
    parser.add_argument("--shard", default="100MB", help="--max-shard-size of the sharded exports")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (plain, sync, async); the fastest counts")
    parser.add_argument("--no-export", action="store_true", help="measure the saves only")
    parser.add_argument("--workdir", help="where to write (default: a temp dir, removed after)")
    parser.add_argument("--save-only", type=int, help=argparse.SUPPRESS)  # the child, with its stage
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ckpt_io_")
    if args.save_only is not None:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"})
        from engine.launch import free_port

        os.environ.setdefault("MASTER_PORT", str(free_port()))
        print("RESULT " + json.dumps(measure_save(work, args.params_m, args.save_only, args.rounds)))
        return
    try:
        for stage in args.stages:
            stage_work = os.path.join(work, f"zero{stage}")
            os.makedirs(stage_work)
            save = run_save_child(stage_work, args.params_m, stage, args.rounds)
            report(save, stage, [] if args.no_export else measure_exports(save["tag_dir"], stage_work, args.shard))
            shutil.rmtree(stage_work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run_save_child(work: str, params_m: int, stage: int, rounds: int) -> Dict[str, Any]:
    child = subprocess.run([sys.executable, __file__, "--save-only", str(stage), "--workdir", work, "--params-m",
                            str(params_m), "--rounds", str(rounds)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=3600)
    found = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    if child.returncode != 0 or not found:
        raise SystemExit(f"save benchmark failed:\n{child.stdout[-3000:]}")
    return json.loads(found[0][len("RESULT "):])


def report(save: Dict[str, Any], stage: int, exports: List[Dict[str, float]]) -> None:
    mib = save["bytes"] / MIB
    print(f"== {save['params_m']:.1f}M parameters, ZeRO-{stage}, 1 rank, AdamW state; tag: {save['files']} files, "
          f"{mib:.0f} MiB (complete: {save['complete']})")
    print(f"plain write + fsync of the same files:   {save['plain_s']:6.2f} s = {mib / save['plain_s']:5.0f} MiB/s")
    print(f"sync save, DeepSpeed's torch.save:       {save['save_ds_s']:6.2f} s = {mib / save['save_ds_s']:5.0f} MiB/s"
          f"  -> sync/plain {save['save_ds_s'] / save['plain_s']:.2f}x (before engine.checkpoint.writer)")
    print(f"sync save (incl. fsync + marker):        {save['save_s']:6.2f} s = {mib / save['save_s']:5.0f} MiB/s"
          f"  -> sync/plain {save['save_s'] / save['plain_s']:.2f}x (goal <= 1.5x)")
    print(f"async save, training blocked:            {save['async_block_s']:6.2f} s  -> async blocked/sync "
          f"{save['async_block_s'] / save['save_s']:.2f}x (goal <= 0.1x); complete after {save['async_total_s']:.2f} s")
    print(f"every round (s): {save['rounds']}")
    if not exports:
        return
    floor = exports[0]["peak_mib"]
    print(f"export (tools/convert_ckpt.py, own child process); floor (imports only) {floor:.0f} MiB:")
    print(f"  {'case':26s} {'peak RSS MiB':>12s} {'largest file MiB':>16s} {'(peak-floor)/largest':>20s} {'files':>5s} {'s':>6s}")
    for row in exports[1:]:
        ratio = (row["peak_mib"] - floor) / row["largest_mib"]
        print(f"  {row['case']:26s} {row['peak_mib']:12.0f} {row['largest_mib']:16.0f} {ratio:20.2f} "
              f"{row['files']:5d} {row['seconds']:6.1f}")


if __name__ == "__main__":
    main()
