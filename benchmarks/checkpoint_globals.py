"""Which pickle globals engine's checkpoints really contain, per parallel layout.

    python benchmarks/checkpoint_globals.py [--work DIR] [--only NAME ...]

Why: ``engine.weights.safe_load`` unpickles every checkpoint file with ``weights_only=True``
and an explicit allow-list. The allow-list must hold exactly what DeepSpeed's and engine's own
``save_checkpoint`` write, no more. This script trains each layout for two steps on two CPU ranks
(the test projects under ``tests/assets`` and ``examples/gan_digits``), converts one ZeRO tag to
DeepSpeed's universal form (the world-size-change path), then reads the pickle opcodes of every
``.pt`` file statically (``torch.serialization.get_unsafe_globals_in_checkpoint``: nothing is
unpickled) and prints the globals torch does not allow by default, with the files they came
from, and whether the allow-list covers them. Exit code 1 when a file needs a global that is not
allowed. Re-run it after a DeepSpeed or torch upgrade.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Set

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.checkpoint import universal  # noqa: E402
from engine.weights import safe_load  # noqa: E402
from engine.launch import free_port  # noqa: E402

TOY = REPO / "tests" / "assets" / "toy"
LARGE = REPO / "tests" / "assets" / "large"
GAN = REPO / "examples" / "gan_digits"
PIPE = ["deepspeed.pipeline", "{'stages': 2, 'partition_method': 'uniform', 'micro_batches': 2}",
        "solver.gradient_accumulation_batch", "2"]
TP = ["deepspeed.tensor_parallel", "{'autotp_size': 2}"]

#: name → (project folder, config file, overrides); every run: 2 ranks, 2 steps, one tag
LAYOUTS: Dict[str, tuple] = {
    "zero0": (TOY, TOY / "cfg.py", ["deepspeed.config", "zero0"]),
    "zero1": (TOY, TOY / "cfg.py", ["deepspeed.config", "zero1"]),
    "zero2": (TOY, TOY / "cfg.py", ["deepspeed.config", "zero2"]),
    "zero3": (TOY, TOY / "cfg.py", ["deepspeed.config", "zero3"]),
    "bf16": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "bf16"]),
    "zero2_offload": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "zero2_offload", "solver.generator.optimizer.type",
                                                "AdamW", "solver.generator.optimizer.params", "{'lr': 0.01}"]),
    "zero3_offload": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "zero3_offload"]),
    "pipeline_zero1": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "zero1", *PIPE]),
    "tensor_parallel_zero1": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "zero1", *TP]),
    "tensor_parallel_zero3": (LARGE, LARGE / "cfg.py", ["deepspeed.config", "zero3", *TP]),
    "gan_ema_zero1": (GAN, GAN / "configs" / "gan_digits.py", ["deepspeed.config", "zero1"]),
    "gan_ema_zero3": (GAN, GAN / "configs" / "gan_digits.py", ["deepspeed.config", "zero3"]),
}


def train(name: str, out: Path) -> Path:
    """Two steps of one layout on two ranks; the tag folder it saved."""
    project, cfg, opts = LAYOUTS[name]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(project / "train.py"), "--config-file", str(cfg), "--opts", "output_dir", str(out),
           "solver.max_iter", "2", "solver.checkpoint_period", "2", "trainer.log_period", "1", *opts]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: training failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    return out / "checkpoints" / "iter_0000002"


def unsafe_globals(path: Path) -> Set[str]:
    """Globals of one file that torch does not allow by default (static opcode scan)."""
    return set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def survey(names: Sequence[str], work: Path) -> Dict[str, Dict[str, List[str]]]:
    """layout → global → files (relative to the tag) that need it."""
    found: Dict[str, Dict[str, List[str]]] = {}
    for name in names:
        tag_dir = train(name, work / name)
        if name == "zero2":  # the world-size change path reads DeepSpeed's universal files too
            universal.build_universal(str(tag_dir), ["generator"])
        needs: Dict[str, List[str]] = {}
        for path in sorted(tag_dir.rglob("*.pt")):
            for glob in unsafe_globals(path):
                needs.setdefault(glob, []).append(str(path.relative_to(tag_dir)))
        found[name] = needs
        print(f"{name}: {sorted(needs) or 'tensors and builtins only'}", flush=True)
    return found


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="where the runs go (default: a temporary folder, removed after)")
    parser.add_argument("--only", nargs="*", choices=sorted(LAYOUTS), help="layouts to run (default: all)")
    parser.add_argument("--json", help="also write the findings to this file")
    args = parser.parse_args(list(argv))
    names = args.only or list(LAYOUTS)
    with tempfile.TemporaryDirectory() as tmp:
        found = survey(names, Path(args.work or tmp))
    allowed = set(safe_load.allowed_global_names())
    needed = sorted({glob for needs in found.values() for glob in needs})
    missing = [glob for glob in needed if glob not in allowed]
    unused = sorted(allowed - set(needed))
    print(f"\nneeded by these layouts: {needed}")
    print(f"allowed but not seen here: {unused}")
    print(f"needed but NOT allowed: {missing or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"layouts": found, "missing": missing, "unused": unused}, indent=1))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
