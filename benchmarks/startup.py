"""Fixed cost of starting engine processes: CPU seconds and wall, two source trees alternated.

    git worktree add /tmp/before <ref>
    python benchmarks/startup.py --before /tmp/before --after . --runs 3

Each case runs as a whole process (with its children: torchrun's ranks) from each tree in
turn, A B A B ..., so drift of a shared machine hits both alike; the table gives medians
and the after/before ratio of the medians. CPU is user+system of the finished children,
from the operating system's accounting (``os.wait4``).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

TOY = ["tests/assets/toy/train.py", "--config-file", "tests/assets/toy/cfg.py", "--opts", "solver.max_iter", "2"]
CASES: Dict[str, List[str]] = {
    "train ws1": [sys.executable] + TOY,
    "train torchrun 2": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"] + TOY,
    "engine plan digits": [sys.executable, "-m", "engine.cli", "plan", "examples/digits/configs/digits.py"],
    "import engine.schedule": [sys.executable, "-c", "import engine.schedule"],
}


def run_once(tree: str, argv: List[str], timeout_s: float) -> float:
    """One run of ``argv`` in ``tree``; returns its wall seconds."""
    out = tempfile.mkdtemp(prefix="startup_bench_")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    if "solver.max_iter" in argv:
        argv = argv + ["output_dir", out]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit(f"{argv}: timed out after {timeout_s} s in {tree}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed in {tree} (exit {proc.returncode}):\n{stderr.decode()[-2000:]}")
    return wall


def measure(trees: Dict[str, str], cases: List[str], runs: int, timeout_s: float) -> Dict[Tuple[str, str], List[Tuple[float, float]]]:
    """Alternate the trees run by run; the CPU of each run is the growth of the children's total."""
    results: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
    for case in cases:
        for _ in range(runs):
            for label, tree in trees.items():
                before = os.times()
                wall = run_once(tree, CASES[case], timeout_s)
                after = os.times()
                cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
                results.setdefault((case, label), []).append((cpu, wall))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="source tree of the old code")
    parser.add_argument("--after", default=".", help="source tree of the new code (default: here)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case per tree (default 3)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    results = measure(trees, args.case or list(CASES), args.runs, args.timeout)
    print(f"| case | before CPU s | after CPU s | CPU ratio | before wall s | after wall s | wall ratio |")
    print("|---|---|---|---|---|---|---|")
    for case in args.case or list(CASES):
        b = [statistics.median(x) for x in zip(*results[(case, "before")])]
        a = [statistics.median(x) for x in zip(*results[(case, "after")])]
        print(f"| {case} | {b[0]:.2f} | {a[0]:.2f} | {a[0] / b[0]:.2f} | {b[1]:.2f} | {a[1]:.2f} | {a[1] / b[1]:.2f} |")


if __name__ == "__main__":
    main()
