"""Tokens/s and model FLOPs utilisation of a GPT-2-small-size model: engine's trainer against a hand-written DeepSpeed loop.

Both sides train ``TinyGPT`` from ``examples/gpt`` at GPT-2 small's shape (12 layers, width
768, 12 heads, 1024-token context, vocabulary 50304, untied head: 163M parameters) on the
same standard-library bytes in the same order (engine's ``TrainingSampler``), with the same
DeepSpeed config (the one engine derives from the config below: bf16, AdamW) and the same
seed. Under ZeRO-3 both build the network inside ``deepspeed.zero.Init``. The framework side
is ``BaseTrainer.train()`` with its default hooks (logger, TensorBoard, checkpoint at the
end); the hand-written side is ``deepspeed.initialize`` / ``backward`` / ``step`` over a
plain ``DataLoader``.

AdamW runs as torch's (``torch_adam``) on both sides by default, so nothing is JIT-compiled
on a fresh machine; ``--fused-adam`` uses DeepSpeed's FusedAdam instead (builds the op).

The timed window is the same number of steps after ``--warmup`` on both sides, with one
device synchronisation at each end (none in between: both loops may run ahead of the GPU as
far as DeepSpeed lets them). Runs alternate hand, framework, framework, hand per stage.

    python benchmarks/gpu_throughput.py                      # ZeRO-2 and ZeRO-3, 2 runs of each loop
    python benchmarks/gpu_throughput.py --stages 3 --runs 4 --batch 8
    python benchmarks/gpu_throughput.py --tiny --steps 8 --warmup 2   # a CPU smoke run of the script itself

MFU counts 6 FLOPs per matmul parameter per token (embedding tables excluded, the output
head included) plus 12·layers·width·context for attention (forward + backward, no causal
discount), over the GPU's dense bf16 peak (``--peak-tflops`` for a GPU not in the table).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "examples", "gpt"))

import torch  # noqa: E402

import gpt  # noqa: E402  (registers StdlibText, TinyGPT, GPTModel)
from engine.events.hooks import HookBase  # noqa: E402

#: dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a substring of the device name
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}

GPT2_SMALL = dict(vocab=50304, width=768, depth=12, heads=12, block=1024)
TINY = dict(vocab=256, width=64, depth=2, heads=2, block=64)


def bench_config(output_dir: str, args: argparse.Namespace, shape: Dict[str, int]) -> Dict[str, Any]:
    params: Dict[str, Any] = dict(lr=3e-4, weight_decay=0.1)
    if not args.fused_adam:
        params["torch_adam"] = True
    deepspeed: Dict[str, Any] = dict(config=f"zero{args.stage}")
    if args.precision == "bf16":
        deepspeed["bf16"] = dict(enabled=True)
    return dict(
        output_dir=output_dir, seed=0, output_log_name="bench",
        dataloader=dict(num_workers=2, train_data_set=dict(name="StdlibText", block=shape["block"], limit=args.text_bytes)),
        trainer=dict(name="BaseTrainer", log_period=20, tensorboard=True,
                     model=dict(name="GPTModel", generator=dict(name="TinyGPT", **shape))),
        solver=dict(train_per_batch=args.batch, max_iter=args.warmup + args.steps + 1, max_keep=1,
                    generator=dict(optimizer=dict(type="AdamW", params=params))),
        deepspeed=deepspeed,
    )


def _sync_now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class Window(HookBase):
    """First in the hook list: from the start of step ``first`` to the start of step ``last``.

    Steps first..last-1 are timed with every hook's work in them; the final step (which
    saves the checkpoint) is left out, as the hand-written loop saves none.
    """

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.seconds = float("nan")
        self._start = 0.0

    def before_step(self) -> None:
        if self.trainer.iter == self.first:
            self._start = _sync_now()
        elif self.trainer.iter == self.last:
            self.seconds = _sync_now() - self._start


def run_framework(cfg: Any, window: Window) -> float:
    from engine.schedule.scheduler import seed_everything
    from engine.trainer.build import build_trainer
    from engine.trainer.hooks import register_hooks

    seed_everything(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.hooks = register_hooks(trainer, [window]) + trainer.hooks
    trainer.train()
    del trainer
    return window.seconds


def _batches(cfg: Any, shape: Dict[str, int]) -> Iterator[Dict[str, torch.Tensor]]:
    """The samples engine's trainer would see, through a plain DataLoader (the sampler's seeds unused)."""
    from torch.utils.data import DataLoader

    from engine.data.samplers import TrainingSampler

    data = gpt.StdlibText(block=shape["block"], limit=cfg.DATALOADER.TRAIN_DATA_SET.LIMIT)
    per_step = cfg.SOLVER.TRAIN_PER_BATCH
    sampler = TrainingSampler(len(data), rank=0, world_size=1, samples_per_step=per_step, seed=cfg.SEED)
    indices = (index for index, _seed in sampler)
    loader = DataLoader(data, batch_size=per_step, sampler=indices, drop_last=True, num_workers=2, pin_memory=True)
    return iter(loader)


def run_hand(cfg: Any, ds_config: Dict[str, Any], shape: Dict[str, int], first: int, last: int) -> float:
    """The loop a DeepSpeed user writes by hand."""
    import contextlib

    import deepspeed

    from engine.schedule.scheduler import seed_everything

    seed_everything(cfg.SEED)
    stage3 = ds_config["zero_optimization"]["stage"] == 3
    with deepspeed.zero.Init(config_dict_or_path=ds_config) if stage3 else contextlib.nullcontext():
        net = gpt.TinyGPT(**shape)
    engine, *_ = deepspeed.initialize(model=net, model_parameters=net.parameters(), config=dict(ds_config),
                                      dist_init_required=False)
    device = engine.device
    start = 0.0
    batches = _batches(cfg, shape)
    for step in range(last):
        if step == first:
            start = _sync_now()
        ids = next(batches)["ids"].to(device, non_blocking=True)
        loss = gpt.TinyGPT.loss_fn(engine(ids[:, :-1]), ids[:, 1:])
        engine.backward(loss)
        engine.step()
    seconds = _sync_now() - start
    del engine, net
    return seconds


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")


def worker(args: argparse.Namespace) -> None:
    import copy

    from engine.config import build_cfg
    from engine import launch
    from engine.runplan.plan import build_run_plan

    info = launch.read_launch_env()
    device = launch.select_device("auto")
    launch.configure_threads(info)
    launch.init_distributed(info, device, shm_comm=False)
    shape = TINY if args.tiny else GPT2_SMALL
    cfg = build_cfg(bench_config(args.output_dir, args, shape), [])
    # the hand loop gets the DeepSpeed config the framework's run plan hands deepspeed.initialize
    ds_config = build_run_plan(cfg, rank=info.rank, world_size=info.world_size, device=device).ds_config()
    first, last = args.warmup, args.warmup + args.steps
    results: Dict[str, Any] = {"hand": [], "framework": [], "peak_mib": {}}
    for mode in ["hand", "framework", "framework", "hand"] * (args.runs // 2) + ["hand", "framework"] * (args.runs % 2):
        _release()
        if mode == "hand":
            seconds = run_hand(cfg, copy.deepcopy(ds_config), shape, first, last)
        else:
            seconds = run_framework(cfg, Window(first, last))
        results[mode].append(seconds)
        results["peak_mib"][mode] = max(results["peak_mib"].get(mode, 0.0), _peak_mib())
    with torch.device("meta"):  # shapes only: counting parameters allocates nothing
        net = gpt.TinyGPT(**shape)
    embeddings = net.embed.tokens.weight.numel() + net.embed.positions.weight.numel()
    results.update(params=sum(p.numel() for p in net.parameters()), embedding_params=embeddings,
                   tokens_per_step=args.batch * shape["block"], shape=shape, steps=args.steps,
                   device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   ds=f"ZeRO-{args.stage}, {args.precision}, {'FusedAdam' if args.fused_adam else 'torch AdamW'}")
    with open(args.result, "w") as f:
        json.dump(results, f)
    launch.shutdown_distributed(barrier=True)


def peak_tflops(device: str, given: float) -> float:
    if given:
        return given
    for name, peak in PEAK_BF16_TFLOPS.items():
        if name in device:
            return peak
    return float("nan")


def report(data: Dict[str, Any], peak: float) -> float:
    """Print one stage's rows; return framework/hand throughput."""
    shape = data["shape"]
    flops_per_token = (6 * (data["params"] - data["embedding_params"])
                       + 12 * shape["depth"] * shape["width"] * shape["block"])
    rates = {}
    for mode in ("hand", "framework"):
        seconds = statistics.median(data[mode])
        rates[mode] = data["tokens_per_step"] * data["steps"] / seconds
        mfu = rates[mode] * flops_per_token / (peak * 1e12)
        print(f"  {data['ds']:32s} {mode:9s} {rates[mode]:10.0f} tokens/s  MFU {100 * mfu:5.1f} %  "
              f"peak {data['peak_mib'][mode]:8.0f} MiB  runs (s): " + " ".join(f"{s:.3f}" for s in data[mode]))
    ratio = rates["framework"] / rates["hand"]
    print(f"  {data['ds']:32s} framework / hand-written throughput: {ratio:.3f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="2,3", help="ZeRO stages, comma-separated")
    parser.add_argument("--runs", type=int, default=2, help="runs of each loop per stage, alternated")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--fused-adam", action="store_true", help="DeepSpeed's FusedAdam (JIT-built) on both sides")
    parser.add_argument("--text-bytes", type=int, default=4_000_000, help="bytes of stdlib source to train on")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer width-64 model: check the script on CPU")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # the child: JSON {stage, result, output_dir}
    args = parser.parse_args()
    if args.worker:
        vars(args).update(json.loads(args.worker))
        worker(args)
        return
    from engine.launch import free_port

    passed = ["--runs", str(args.runs), "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
              "--precision", args.precision, "--text-bytes", str(args.text_bytes),
              *(["--fused-adam"] if args.fused_adam else []), *(["--tiny"] if args.tiny else [])]
    ratios = {}
    for stage in (int(s) for s in args.stages.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            result = os.path.join(tmp, "result.json")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={free_port()}",
                   os.path.abspath(__file__), *passed, "--worker",
                   json.dumps({"stage": stage, "result": result, "output_dir": os.path.join(tmp, "out")})]
            env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
            if proc.returncode != 0:
                sys.exit(f"ZeRO-{stage} failed:\n{proc.stdout[-6000:]}")
            with open(result) as f:
                data = json.load(f)
        if not ratios:
            print(f"{data['device']}: {data['params'] / 1e6:.1f}M parameters {data['shape']}, "
                  f"{data['tokens_per_step']} tokens/step, {args.steps} timed steps after {args.warmup}")
        ratios[stage] = report(data, peak_tflops(data["device"], args.peak_tflops))
    missed = [s for s, r in ratios.items() if r < 0.98]
    print("goal (framework >= 0.98x hand-written tokens/s): " + ("met" if not missed else f"missed at ZeRO-{missed}"))


if __name__ == "__main__":
    main()
