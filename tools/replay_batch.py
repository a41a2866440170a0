"""Re-run a bad batch of a run on a checkpoint's weights and name the samples whose loss is non-finite.

    python tools/replay_batch.py CHECKPOINT RECORD [--import MODULE] [--code-dir DIR] [--config FILE]
                                 [--micro-batch M] [--json] [--trust-checkpoint] [--opts KEY VALUE ...]

CHECKPOINT is a tag folder (``output/checkpoints/iter_0000004``), or the run's output dir or
its ``checkpoints/`` dir: then the tag the record names (``"checkpoint"``), else the newest
complete one. An incomplete tag is refused. RECORD is one line of ``bad_batches.jsonl`` or
``rollbacks.jsonl``: the JSON object itself, ``FILE:N`` (its N-th line, from 1) or ``FILE``
(its last line).

The run's config is read from ``<output_dir>/config.yaml`` (``--config`` names another;
``--opts`` overrides keys), the user's modules are imported as ``tools/train.py`` does
(``--import``, ``--code-dir``), and the run's trainer class is built in this one process on
CPU: its data set, pipeline and collate function are the ones training used. Every engine
gets the tag's weights, and each micro-batch of the record (or only ``--micro-batch M``) is
rebuilt from its ``(dataset_index, sample_seed)`` items and run through the model's step
without an optimizer step, whole and sample by sample (``engine.sentinel.culprits``).
Nothing under the run's output dir is written.

The weights are the tag's: when the tag is older than the bad step (the record's
``iteration``), the batch runs on earlier weights than training did, which is said; a
non-finite value that came from the weights rather than the data may then not come back.

Exit code: 0 when every output of every replayed forward is finite (not reproduced),
1 when some are non-finite (the report names the outputs and the samples), 2 for bad input
(a path, a record, a config, an incomplete tag), 3 when a checkpoint file was refused as
unsafe (``--trust-checkpoint`` loads it anyway, for files you trust).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine import launch  # noqa: E402
from engine.checkpoint import layout  # noqa: E402
from engine.checkpoint.export import ExportError, lazy_state, resolve  # noqa: E402
from engine.config import get_cfg  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.sentinel.culprits import describe, find_culprits  # noqa: E402
from engine.weights import safe_load  # noqa: E402

BAD_INPUT, FOUND, REFUSED = 2, 1, safe_load.REFUSED_EXIT
#: what a replay changes in the run's config: one CPU process that writes nothing of the run's
#: (nothing resumes or loads trainer.weights: the tag's weights are loaded by this tool)
REPLAY_OPTS = ["trainer.device", "cpu", "dataloader.num_workers", "0", "trainer.tensorboard", "False",
               "trainer.loggers", "[]", "solver.checkpoint_async", "False"]


class ReplayError(Exception):
    """Bad input for a replay: the message names the argument and what is wrong."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a tag folder, or the run's output dir or checkpoints dir")
    parser.add_argument("record", help="a bad_batches.jsonl / rollbacks.jsonl line: JSON text, FILE:N or FILE")
    parser.add_argument("--import", dest="modules", action="append", default=[],
                        help="a module whose import registers the run's classes (repeatable)")
    parser.add_argument("--code-dir", dest="code_dirs", action="append", default=[],
                        help="a folder put on sys.path first (repeatable)")
    parser.add_argument("--config", help="the run's config (default: <output_dir>/config.yaml)")
    parser.add_argument("--micro-batch", type=int, help="replay only this micro-batch of the record (from 0)")
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    parser.add_argument(safe_load.TRUST_FLAG, dest="trust", action="store_true",
                        help="unpickle files with weights_only=False: only for checkpoints you trust")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs over the config")
    return parser


def read_record(text: str) -> Dict[str, Any]:
    """The record from JSON text, ``FILE:N`` or ``FILE`` (its last line), with its required keys checked."""
    if text.lstrip().startswith("{"):
        where, line = "RECORD", text
    else:
        path, number = text, None
        head, _, tail = text.rpartition(":")
        if head and tail.isdigit() and not os.path.isfile(text):
            path, number = head, int(tail)
        if not os.path.isfile(path):
            raise ReplayError(f"RECORD {text!r}: neither a JSON object nor a file (FILE or FILE:N)")
        with open(path) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        if not lines or (number is not None and not 1 <= number <= len(lines)):
            raise ReplayError(f"RECORD {text!r}: {path} has {len(lines)} record line(s)")
        where, line = f"{path}:{number or len(lines)}", lines[(number or len(lines)) - 1]
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{where}: not JSON ({exc})") from None
    missing = [k for k in ("micro_batches", "iteration") if k not in (record if isinstance(record, dict) else {})]
    if missing:
        raise ReplayError(f"{where}: not a bad-batch record (missing {', '.join(missing)})")
    return record


def find_tag(path: str, record: Dict[str, Any]) -> str:
    """The complete tag folder to load: ``path`` itself, or the record's tag (else the newest) under it."""
    path = os.path.abspath(path)
    named = record.get("checkpoint")
    inside = path if os.path.isdir(os.path.join(path, "checkpoints")) or layout.list_tags(path) else None
    try:
        root, tag = resolve(path, named if inside and named else None)
    except ExportError as exc:
        raise ReplayError(f"CHECKPOINT {exc}") from None
    tag_dir = os.path.join(root, tag)
    ok, why = layout.check_complete(tag_dir)
    if not ok:
        raise ReplayError(f"CHECKPOINT {tag_dir} is not a complete checkpoint ({why}); give a complete tag")
    return tag_dir


def build_trainer_on_cpu(config: str, opts: List[str], scratch: str) -> Any:
    """The run's trainer, built in this process (world size 1, CPU), its output dir ``scratch``."""
    from engine.model.run_plan import declared_layer_specs
    from engine.runplan.plan import build_run_plan, use_run_plan
    from engine.schedule.scheduler import seed_everything
    from engine.trainer.build import build_trainer

    cfg = get_cfg(config, list(opts) + REPLAY_OPTS + ["output_dir", scratch])
    launch.set_rendezvous_env(0, 1, 0, 1, "127.0.0.1", launch.free_port(), "python")
    info = launch.read_launch_env()
    plan = build_run_plan(cfg, rank=0, world_size=1, device="cpu", layer_specs=declared_layer_specs(cfg))
    launch.init_distributed(info, "cpu", shm_comm=False, timeout_s=cfg.TRAINER.DIST_TIMEOUT)
    seed_everything(cfg.SEED)  # as training built it
    with use_run_plan(plan):
        return build_trainer(cfg)


def load_tag_weights(model: Any, tag_dir: str) -> None:
    """Every engine of the bundle gets its weights from the tag (any ZeRO stage, any world size it was saved on)."""
    from engine.weights.pretrained import load_state

    for name, engine in model.engines.items():
        state = {k: v.contiguous() for k, v in lazy_state(tag_dir, name).items()}
        load_state(engine, state, strict=True, source=os.path.join(tag_dir, name))


def replay(args: argparse.Namespace) -> Tuple[Dict[str, Any], List[str]]:
    """Run the record's micro-batches on the tag's weights: (findings as JSON, report lines)."""
    from engine.schedule.user_code import import_user_modules

    record = read_record(args.record)
    tag_dir = find_tag(args.checkpoint, record)
    config = args.config or os.path.join(os.path.dirname(os.path.dirname(tag_dir)), "config.yaml")
    if not os.path.isfile(config):
        raise ReplayError(f"no config at {config}: give the run's config with --config")
    batches = record["micro_batches"]
    if args.micro_batch is not None:
        if not 0 <= args.micro_batch < len(batches):
            raise ReplayError(f"--micro-batch {args.micro_batch}: the record has micro-batches 0..{len(batches) - 1}")
        batches = [batches[args.micro_batch]]
    import_user_modules(args.modules, args.code_dirs)
    scratch = tempfile.mkdtemp(prefix="replay_batch.")
    try:
        trainer = build_trainer_on_cpu(config, args.opts, scratch)
        load_tag_weights(trainer.model, tag_dir)
        trainer.model.enable_train()  # the mode the step ran in
        verdicts = find_culprits(trainer.model, trainer.train_dataset, batches, epoch=record.get("epoch"),
                                 collate_fn=trainer.collate_train_fn,
                                 seed_per_sample=bool(trainer.cfg.DATALOADER.SEED_PER_SAMPLE))
    finally:
        launch.shutdown_distributed(barrier=False)
        shutil.rmtree(scratch, ignore_errors=True)
    first = args.micro_batch or 0
    for verdict in verdicts:
        verdict.micro_batch += first
    return build_report(record, tag_dir, verdicts)


def build_report(record: Dict[str, Any], tag_dir: str, verdicts: List[Any]) -> Tuple[Dict[str, Any], List[str]]:
    """(findings as JSON, report lines) of a replay.

    Args:
        record: the bad-batch record that was replayed.
        tag_dir: the tag whose weights it ran on (its step is compared with the record's ``iteration``).
        verdicts: what ``find_culprits`` returned.
    """
    tag_step, iteration = layout.tag_step(os.path.basename(tag_dir)), int(record["iteration"])
    culprits = sorted({s.index for v in verdicts for s in v.culprits})
    lines = [f"replayed step {record.get('step', iteration + 1)} (data-parallel rank {record.get('rank', 0)}) "
             f"on the weights of {tag_dir}, on CPU"]
    if tag_step is not None and tag_step != iteration:
        lines.append(f"note: the tag holds the weights after step {tag_step}; the bad step ran on those after step "
                     f"{iteration}: a non-finite value that came from the weights may not reproduce")
    lines.extend(describe(verdicts))
    nonfinite = any(not v.whole.finite or v.culprits for v in verdicts)
    if culprits:
        lines.append(f"culprit dataset indices: {culprits} (leave them out with dataloader.skip_samples)")
    elif not nonfinite:
        lines.append("every output is finite: not reproduced")
    findings = {"checkpoint": tag_dir, "step": record.get("step"), "rank": record.get("rank"),
                "culprits": culprits, "nonfinite": nonfinite,
                "micro_batches": [{"micro_batch": v.micro_batch, "nonfinite": v.whole.nonfinite,
                                   "samples": [s.to_json() for s in v.culprits]} for v in verdicts]}
    return findings, lines


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    safe_load.trust_checkpoints(args.trust)
    try:
        findings, lines = replay(args)
    except safe_load.UnsafeCheckpointError as exc:
        print(f"replay_batch: error: {exc}", file=sys.stderr)
        return REFUSED
    except (ReplayError, ExportError, EngineError) as exc:
        print(f"replay_batch: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    print(json.dumps(findings) if args.json else "\n".join(lines))
    return FOUND if findings["nonfinite"] else 0


if __name__ == "__main__":
    sys.exit(main())
