"""``engine plan CONFIG``: what a run would do, shown before it is launched.

Prints the run plan for a world size (default 1) without starting distributed or building
the real model: the resolved config with where each value came from (default, file,
``_base_``, ``--opts``), each engine's DeepSpeed config, the batch arithmetic, the
parallel layout, and the model-state memory per rank (the networks are built on the meta
device to count parameters). A config that no run could honour fails here with the same
message, and exit code 2, that the run would give. ``--json`` prints the same as JSON.

The user's classes must be registered for the network to be counted: ``--import`` takes
the training script (``train.py`` runs without its ``__main__`` block) or a module name::

    engine plan examples/gpt/configs/zero2.py --import examples/gpt/train.py --world-size 64 \\
        --opts trainer.model.generator.width 768
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import sys
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from engine.config import CfgNode, get_cfg
from engine.config.checks import discriminator_plan
from engine.config.node import to_plain
from engine.config.provenance import Provenance, trace_config
from engine.errors import EngineError
from engine.runplan.memory import ModelStateMemory, NetworkSize, model_state_memory
from engine.runplan.plan import D_PREFIX, GENERATOR, RunPlan, build_run_plan
from engine.model.build import build_network
from engine.model.run_plan import declared_layer_specs

EXIT_BAD_INPUT = 2


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="engine plan", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the config file (.py or .yaml)")
    parser.add_argument("--world-size", type=int, default=1, help="processes in the job (default 1)")
    parser.add_argument("--nodes", type=int, default=1, help="machines in the job (default 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                        help="plan for this device (default: trainer.device; 'auto' is cuda when one is visible)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="SCRIPT_OR_MODULE",
                        help="register the user's classes: a training script or module (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides, as for training")
    return parser.parse_args(argv)


def import_user_code(spec: str) -> None:
    """Import ``spec``: a ``.py`` path is run as a module (not ``__main__``) with its folder on ``sys.path``."""
    if spec.endswith(".py"):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise EngineError(f"--import: {spec} is not a file")
        sys.path.insert(0, os.path.dirname(path))
        runpy.run_path(path, run_name="engine_plan_import")
        return
    import importlib

    try:
        importlib.import_module(spec)
    except ImportError as exc:
        raise EngineError(f"--import: cannot import {spec!r}: {exc}") from None


def plan_device(requested: str) -> str:
    """The device to plan for; unlike a run, ``cuda`` is accepted on a machine without one."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's estimators import its accelerator
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def meta_construction() -> Iterator[None]:
    """Build modules on the meta device with torch's weight initialisers switched off.

    Why switch them off: an initialiser on a meta tensor does nothing useful, and its first
    call imports ``torch._dynamo`` (about 800 modules, 5-10 s here) through torch's
    reference implementation of ``normal_``. Only the shapes are wanted (as transformers'
    ``no_init_weights`` does for the same reason).
    """
    import torch

    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for name in names:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        with torch.device("meta"):
            yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def network_sizes(cfg: CfgNode) -> Dict[str, Any]:
    """Engine name → NetworkSize from a meta-device build, or the reason it could not be built."""
    specs: List[Tuple[str, Mapping[str, Any], str]] = [(GENERATOR, cfg.TRAINER.MODEL.GENERATOR, "trainer.model.generator")]
    specs += [(D_PREFIX + name, spec, f"trainer.model.discriminator[{name}]") for name, spec, _, _ in discriminator_plan(cfg)]
    sizes: Dict[str, Any] = {}
    for engine, spec, where in specs:
        try:
            with meta_construction():  # shapes only: no memory, no initialisation cost
                network = build_network(spec, where=where)
        except EngineError as exc:
            sizes[engine] = f"{exc} (pass the training script with --import)"
            continue
        except Exception as exc:  # user code that needs real tensors (pretrained weights): no count, say why
            sizes[engine] = f"{where}: building on the meta device failed: {type(exc).__name__}: {exc}"
            continue
        params = [p for p in network.parameters() if p.requires_grad]
        largest = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in network.modules()), default=0)
        sizes[engine] = NetworkSize(sum(p.numel() for p in params), int(largest))
    return sizes


def optimizer_section(cfg: CfgNode, engine: str) -> Mapping[str, Any]:
    if engine == GENERATOR:
        return cfg.SOLVER.GENERATOR.OPTIMIZER
    name = engine[len(D_PREFIX):]
    return next(solver["optimizer"] for n, _, solver, _ in discriminator_plan(cfg) if n == name)


def build_report(args: argparse.Namespace) -> Dict[str, Any]:
    """Everything ``engine plan`` shows, as plain data."""
    for spec in args.imports:
        import_user_code(spec)
    cfg = get_cfg(args.config, args.opts)
    provenance = trace_config(args.config, args.opts)
    if args.world_size < 1 or args.nodes < 1 or args.world_size % args.nodes:
        raise EngineError(f"--world-size {args.world_size} --nodes {args.nodes}: the world size must be a positive "
                          "multiple of the number of nodes")
    plan = build_run_plan(cfg, rank=0, world_size=args.world_size, device=plan_device(args.device or cfg.TRAINER.DEVICE),
                          nodes=args.nodes, provenance=provenance, layer_specs=declared_layer_specs(cfg))
    sizes = network_sizes(cfg)
    memory: Dict[str, Any] = {}
    for engine, size in sizes.items():
        if isinstance(size, NetworkSize):
            ema = bool(cfg.SOLVER.EMA.ENABLED) and engine == GENERATOR
            memory[engine] = model_state_memory(plan, engine, size, optimizer_section(cfg, engine), ema=ema).to_json()
        else:
            memory[engine] = {"unavailable": size}
    return {
        "config_file": args.config, "world_size": args.world_size, "nodes": args.nodes,
        "plan": plan.to_json(),
        "networks": {e: (s.__dict__ if isinstance(s, NetworkSize) else {"unavailable": s}) for e, s in sizes.items()},
        "memory_per_rank": memory,
        "config": resolved_config(cfg, provenance),
    }


def resolved_config(cfg: CfgNode, provenance: Provenance) -> Dict[str, Dict[str, Any]]:
    """Dotted key path → {value, source} for every leaf of the resolved config."""
    rows: Dict[str, Dict[str, Any]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
            return
        rows[path] = {"value": node, "source": provenance.source(path)}

    walk(to_plain(cfg), "")
    return rows


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable plan."""
    plan, layout, batch = report["plan"], report["plan"]["layout"], report["plan"]["batch"]
    lines = [f"engine plan: {report['config_file']}, world size {report['world_size']} "
             f"({report['nodes']} node{'s' if report['nodes'] > 1 else ''}), device {plan['device']}", ""]
    lines += ["parallel layout",
              f"  {layout['world_size']} ranks = {layout['data_parallel_size']} data-parallel × "
              f"{layout['pipeline_stages']} pipeline stages × {layout['tensor_parallel_size']} tensor-parallel",
              f"  ZeRO stage {plan['zero_stage']}, {plan['precision']} (compute dtype {plan['compute_dtype']}), "
              f"offload optimizer {plan['offload_optimizer']}, offload parameters {plan['offload_param']}", ""]
    steps = (f"{batch['total_steps']} steps" if batch["total_steps"] is not None
             else f"{batch['max_epoch']} epochs (steps per epoch: known once the data set is built)")
    lines += ["batch arithmetic",
              f"  micro batch {batch['micro_batch']} × accumulation {batch['accumulation']} = "
              f"{batch['micro_batch'] * batch['accumulation']} samples per data-parallel rank per step",
              f"  global batch {batch['global_batch']} = that × {layout['data_parallel_size']} data-parallel ranks; "
              f"{steps}", ""]
    lines.append("model-state memory per rank")
    for engine, mem in report["memory_per_rank"].items():
        if "unavailable" in mem:
            lines.append(f"  {engine}: not counted: {mem['unavailable']}")
            continue
        net = report["networks"][engine]
        text = (f"  {engine}: {net['params']:,} parameters: params {_bytes(mem['params'])}, "
                f"grads {_bytes(mem['grads'])}, optimizer {_bytes(mem['optimizer'])}, EMA {_bytes(mem['ema'])}"
                f" = {_bytes(mem['device_total'])} on the device")
        if mem["host"]:
            text += f", {_bytes(mem['host'])} offloaded to the host"
        estimate = mem["deepspeed_estimate"]
        if estimate:
            text += f" (DeepSpeed's estimator: {_bytes(estimate['device'])} device, {_bytes(estimate['host'])} host)"
        lines.append(text)
    if plan["notes"]:
        lines += ["", "notes"] + [f"  {note}" for note in plan["notes"]]
    for engine, ds in plan["engines"].items():
        lines += ["", f"DeepSpeed config of {engine} (as deepspeed.initialize receives it)", json.dumps(ds, indent=2, sort_keys=True)]
    lines += ["", "resolved config (source)"]
    width = max(len(k) for k in report["config"])
    for key, row in report["config"].items():
        lines.append(f"  {key:<{width}} = {row['value']!r}  [{row['source']}]")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        report = build_report(args)
    except EngineError as exc:
        print(f"engine plan: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    print(json.dumps(report, indent=2, sort_keys=True, default=repr) if args.json else format_report(report))


if __name__ == "__main__":
    main()
