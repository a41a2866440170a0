"""What the framework's loop costs over a hand-written DeepSpeed loop, and whether it trains the same weights.

Both sides: the same small CNN, the same in-memory images in the same order (engine's
``TrainingSampler``), the same DeepSpeed config (the one engine derives from the config
below) and the same seed. The framework side is ``BaseTrainer.train()`` with its default
hooks (TensorBoard, logger, checkpoint at the end); the hand-written side is the loop a
user would write with ``deepspeed.initialize`` / ``backward`` / ``step``.

Two measurements, both reported:

* separate: whole runs of each loop, alternated hand, framework, framework, hand, ...
* interleaved: one trainer run with a hand-written step run after each of its steps (a
  last hook), so both loops see the same machine load step by step. On a shared, busy
  machine this is the one that can resolve a few percent; the goal is judged on it.
* interleaved, no hooks: the same with the default hooks removed, to split the difference
  into what the hooks cost and what the loop, step and data loader cost.

    python benchmarks/loop_overhead.py                 # world size 1 and 2 (torchrun), prints the table
    python benchmarks/loop_overhead.py --world-sizes 1 --runs 3 --steps 150 --profile

A step time is the median over the steps after warm-up of one run; the table shows the
median of those per-run medians, for wall time and for process CPU time. ``weights equal``
says whether every run's final weights, of both loops, are bitwise equal to the first's.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from engine.data.build import BUILD_DATASET_REGISTRY  # noqa: E402
from engine.data.dataset import EngineDataSet  # noqa: E402
from engine.model.base_model import BaseModel  # noqa: E402
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY  # noqa: E402
from engine.events.hooks import HookBase  # noqa: E402


@BUILD_DATASET_REGISTRY.register()
class BenchImages(EngineDataSet):
    """Random 3×16×16 images with 10 labels, made once in memory (no decoding, no augmentation)."""

    def __init__(self, size: int = 1024, transformer: Any = None) -> None:
        super().__init__(transformer)
        g = torch.Generator().manual_seed(7)
        self.images = torch.randn(size, 3, 16, 16, generator=g)
        self.labels = torch.randint(0, 10, (size,), generator=g)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {"img": self.images[index], "label": self.labels[index]}

    def __len__(self) -> int:
        return len(self.images)


@BUILD_NETWORK_REGISTRY.register()
class BenchCNN(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@BUILD_MODEL_REGISTRY.register()
class BenchModel(BaseModel):
    def run_step(self, data: Any, *, epoch: Any = None, **kwargs: Any) -> torch.Tensor:
        logits = self.g_model(data["img"].to(self.device, non_blocking=True))
        return F.cross_entropy(logits, data["label"].to(self.device, non_blocking=True))

    def generator(self, data: Any) -> torch.Tensor:
        return self.g_model(data.to(self.device))


def bench_config(output_dir: str, steps: int, batch: int, zero: str) -> Dict[str, Any]:
    return dict(
        output_dir=output_dir, seed=0, output_log_name="bench",
        dataloader=dict(num_workers=0, train_data_set=dict(name="BenchImages")),
        trainer=dict(name="BaseTrainer", log_period=20, model=dict(name="BenchModel", generator=dict(name="BenchCNN"))),
        solver=dict(train_per_batch=batch, max_iter=steps, max_keep=1,
                    generator=dict(optimizer=dict(type="SGD", params=dict(lr=0.05, momentum=0.9)))),
        deepspeed=dict(config=zero),
    )


def _now() -> Tuple[float, float]:
    """Wall time, and CPU time of the whole process (all threads): the latter barely moves with other load.

    On a GPU both loops wait for their kernels here, so a step's time is its own.
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def _durations(stamps: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


class StepClock(HookBase):
    """Appended after the default hooks: the time every step, hooks included, ends."""

    def __init__(self) -> None:
        self.stamps: List[float] = []

    def before_train(self) -> None:
        self.stamps = [_now()]

    def after_step(self) -> None:
        self.stamps.append(_now())


def _weights(engine: Any) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}


class HandLoop:
    """The loop a DeepSpeed user writes by hand; same data order as the trainer (engine's sampler)."""

    def __init__(self, cfg: Any, ds_config: Dict[str, Any], rank: int, world: int) -> None:
        import deepspeed
        from torch.utils.data import DataLoader

        from engine.data.samplers import TrainingSampler
        from engine.schedule.scheduler import seed_everything

        self.device = torch.device(deepspeed.get_accelerator().current_device_name())
        dataset = BenchImages()
        seed_everything(cfg.SEED)
        net = BenchCNN()
        params = cfg.SOLVER.GENERATOR.OPTIMIZER.PARAMS
        optimizer = torch.optim.SGD(net.parameters(), lr=params.lr, momentum=params.momentum)
        self.engine, *_ = deepspeed.initialize(model=net, model_parameters=list(net.parameters()), optimizer=optimizer,
                                               config=copy.deepcopy(ds_config), dist_init_required=False)
        per_step = cfg.SOLVER.TRAIN_PER_BATCH
        sampler = TrainingSampler(len(dataset), rank=rank, world_size=world, samples_per_step=per_step, seed=cfg.SEED)
        self.batches = iter(DataLoader(_ByIndex(dataset), batch_size=per_step, sampler=sampler, drop_last=True))
        self.engine.train()

    def step(self) -> None:
        data = next(self.batches)
        loss = F.cross_entropy(self.engine(data["img"].to(self.device)), data["label"].to(self.device))
        self.engine.backward(loss)
        self.engine.step()


def run_hand(cfg: Any, ds_config: Dict[str, Any], rank: int, world: int) -> Tuple[List[Tuple[float, float]], Dict[str, torch.Tensor]]:
    from engine.schedule.scheduler import seed_everything

    hand = HandLoop(cfg, ds_config, rank, world)
    seed_everything(cfg.SEED + rank)
    stamps = [_now()]
    for _ in range(cfg.SOLVER.MAX_ITER):
        hand.step()
        stamps.append(_now())
    return _durations(stamps), _weights(hand.engine)


class _ByIndex(torch.utils.data.Dataset):
    """The sampler yields (index, seed); a hand-written loop has no use for the seed."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]) -> Any:
        return self.dataset[item[0]]


def run_framework(cfg: Any, rank: int, profile: bool) -> Tuple[List[Tuple[float, float]], Dict[str, torch.Tensor]]:
    from engine.schedule.scheduler import seed_everything
    from engine.trainer.build import build_trainer
    from engine.trainer.hooks import register_hooks

    seed_everything(cfg.SEED)
    trainer = build_trainer(cfg)
    seed_everything(cfg.SEED + rank)
    clock = StepClock()
    trainer.hooks.append(register_hooks(trainer, [clock])[0])
    if profile and rank == 0:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(trainer.train)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        trainer.train()
    return _durations(clock.stamps), _weights(trainer.model.g_model)


class Interleave(HookBase):
    """Appended last: after each framework step, one hand-written step, so both see the same machine load."""

    def __init__(self, hand: HandLoop) -> None:
        self.hand = hand
        self.framework: List[Tuple[float, float]] = []
        self.hand_times: List[Tuple[float, float]] = []
        self._mark = _now()

    def before_train(self) -> None:
        self._mark = _now()

    def after_step(self) -> None:
        framework_done = _now()
        self.hand.step()
        hand_done = _now()
        self.framework.extend(_durations([self._mark, framework_done]))
        self.hand_times.extend(_durations([framework_done, hand_done]))
        self._mark = hand_done


def run_interleaved(cfg: Any, ds_config: Dict[str, Any], rank: int, world: int,
                    hooks: bool = True) -> Tuple[Any, Any, Any, Any]:
    """The trainer's own ``train()``, with a hand-written step after each of its steps.

    ``hooks=False`` drops the default hooks: what is left is the loop, the step and the
    data loader, which tells the hooks' share of the difference from the rest.
    """
    from engine.schedule.scheduler import seed_everything
    from engine.trainer.build import build_trainer
    from engine.trainer.hooks import register_hooks

    hand = HandLoop(cfg, ds_config, rank, world)
    seed_everything(cfg.SEED)
    trainer = build_trainer(cfg)
    seed_everything(cfg.SEED + rank)
    both = Interleave(hand)
    trainer.hooks = (trainer.hooks if hooks else []) + register_hooks(trainer, [both])
    trainer.train()
    return both.hand_times, both.framework, _weights(hand.engine), _weights(trainer.model.g_model)


def worker(args: argparse.Namespace) -> None:
    import logging

    from engine.config import build_cfg
    from engine.log.logger import setup_logger
    from engine import launch
    from engine.runplan.plan import build_run_plan

    info = launch.read_launch_env()
    device = launch.select_device("auto")
    launch.configure_threads(info)
    if args.threads:  # on a shared, busy machine one thread per rank keeps OpenMP from spinning on preempted peers
        torch.set_num_threads(args.threads)
    launch.init_distributed(info, device, shm_comm=False)
    cfg = build_cfg(bench_config(args.output_dir, args.steps, args.batch, args.zero), args.opts)
    # the hand loop gets the DeepSpeed config the framework's run plan hands deepspeed.initialize
    ds_config = build_run_plan(cfg, rank=info.rank, world_size=info.world_size, device=device).ds_config()
    log = setup_logger(args.output_dir, "bench", info.rank)
    for handler in list(log.handlers):  # keep the file, not the console: the table is the output
        if type(handler) is logging.StreamHandler:
            log.removeHandler(handler)
    results: Dict[str, Dict[str, Dict[str, List[float]]]] = {
        kind: {m: {"wall": [], "cpu": []} for m in ("hand", "framework")}
        for kind in ("separate", "interleaved", "interleaved, no hooks")}
    reference, equal = None, True

    def record(kind: str, mode: str, times: List[Tuple[float, float]], weights: Dict[str, torch.Tensor]) -> None:
        nonlocal reference, equal
        results[kind][mode]["wall"].append(statistics.median(t[0] for t in times[args.warmup:]))
        results[kind][mode]["cpu"].append(statistics.median(t[1] for t in times[args.warmup:]))
        if reference is None:
            reference = weights
        equal = equal and all(torch.equal(reference[k], weights[k]) for k in reference)

    pattern = ["hand", "framework", "framework", "hand"]  # ABBA: a linear drift in load cancels
    for i in range(2 * args.runs):
        mode = pattern[i % 4]
        if mode == "hand":
            record("separate", "hand", *run_hand(cfg, ds_config, info.rank, info.world_size))
        else:
            record("separate", "framework", *run_framework(cfg, info.rank, args.profile and i == 1))
        gc.collect()
    for i in range(2 * args.runs):
        hooks = pattern[i % 4] == "framework"
        kind = "interleaved" if hooks else "interleaved, no hooks"
        hand_times, framework_times, hand_weights, framework_weights = run_interleaved(
            cfg, ds_config, info.rank, info.world_size, hooks)
        record(kind, "hand", hand_times, hand_weights)
        record(kind, "framework", framework_times, framework_weights)
        gc.collect()
    if info.rank == 0:
        with open(args.result, "w") as f:
            json.dump({"results": results, "weights_equal": equal, "device": device}, f)
    launch.shutdown_distributed(barrier=True)


def _ratio(runs: Dict[str, Any], clock: str = "wall") -> float:
    return statistics.median(runs["framework"][clock]) / statistics.median(runs["hand"][clock])


def report(world: int, data: Dict[str, Any]) -> None:
    print(f"world size {world} ({data['device']}), final weights bitwise equal in every run: {data['weights_equal']}")
    for kind, runs in data["results"].items():
        for clock in ("wall", "cpu"):
            hand, frame = statistics.median(runs["hand"][clock]), statistics.median(runs["framework"][clock])
            print(f"  {kind:21s} {clock:4s} hand {1e3 * hand:8.3f} ms/step  framework {1e3 * frame:8.3f} ms/step  "
                  f"ratio {frame / hand:.3f}   per-run medians (ms): hand "
                  + " ".join(f"{1e3 * t:.2f}" for t in runs["hand"][clock]) + " | framework "
                  + " ".join(f"{1e3 * t:.2f}" for t in runs["framework"][clock]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", default="1,2")
    parser.add_argument("--runs", type=int, default=5, help="runs of each loop, alternated")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="samples per rank per step")
    parser.add_argument("--zero", default="zero2", help="DeepSpeed template of both loops")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (0: engine's share of the cores)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first framework run on rank 0")
    parser.add_argument("--opts", nargs="*", default=[], help="config KEY VALUE overrides for both loops "
                        "(e.g. trainer.tensorboard False, to see what one hook costs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from engine.launch import free_port

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.runs} runs × {args.steps} "
          f"steps each, warm-up {args.warmup}, batch {args.batch}/rank, {args.zero}, {args.threads or 'default'} thread(s)/rank"
          )
    rows = []
    for world in (int(w) for w in args.world_sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            result = os.path.join(tmp, "result.json")
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                   f"--master_port={free_port()}", os.path.abspath(__file__), "--worker", "--result", result,
                   "--output-dir", os.path.join(tmp, "out"), "--runs", str(args.runs), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--batch", str(args.batch), "--zero", args.zero, "--threads", str(args.threads),
                   *(["--profile"] if args.profile else []), "--opts", *args.opts]
            env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run(cmd, env=env, stdout=None if args.profile else subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=1800)
            if proc.returncode != 0:
                sys.exit(f"world size {world} failed:\n{(proc.stdout or '')[-4000:]}")
            with open(result) as f:
                data = json.load(f)
        rows.append((world, data))
        report(world, data)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    missed = [w for w, data in rows if _ratio(data["results"]["interleaved"]) > 1.02]
    print("goal (framework <= 1.02x hand-written, interleaved median wall time): "
          + ("met" if not missed else f"missed at world size {missed}"))


if __name__ == "__main__":
    main()
