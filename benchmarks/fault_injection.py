"""Kill-and-resume harness (issue 9, item 1): SIGKILL a 2-rank training at random moments, resume, compare.

One trial: a 2-process ``torchrun`` training of the toy project (``tests/assets/toy``,
a checkpoint every ``--period`` steps) is killed with SIGKILL — torchrun and both ranks at
once, like a node losing power — up to ``--max-kills`` times, each time resumed with
``--resume``, until a launch finishes. Then the final checkpoint is compared bitwise with
one uninterrupted run: the exported fp32 weights (DeepSpeed's
``get_fp32_state_dict_from_zero_checkpoint``) and every tensor of the engine's files
(optimizer moments included), plus the losses, sample indices and LR the last launch recorded.

Where kills land: half of them ("save kills") wait a random time, then watch the
checkpoint folder and fire when a tag folder without ``COMPLETE.json`` appears (a save in
progress), after a random part of the save window; the others fire at a random moment of
training. A save of the toy model takes milliseconds, so the harness sets
``ENGINE_FAULT_SAVE_DELAY`` (``engine.checkpoint.saver``; harness only, unset in real runs),
which sleeps that long between the phases of a save: engine files written / every rank
fsynced / marker written (before ``latest`` and rotation). Weights do not depend on it.

``--async`` (``solver.checkpoint_async``): saves are written by the background writer
(``engine.checkpoint.async_writer``) while training goes on; the harness then also sets
``ENGINE_FAULT_WRITE_DELAY`` (the writer sleeps that long after each file), so the "save
kills" land inside the background write, between files, while the training steps continue.

Checked at every resume: the tag the run says it resumed from is the newest tag that was
complete (marker present, manifest sizes match, every rank's state file there) when the
job was killed, and never a tag the kill interrupted.

    python benchmarks/fault_injection.py [--trials 20] [--steps 60] [--period 2] [--seed 0] [--async]

Temporary output goes to a fresh temp folder (``--workdir`` to keep it). The runs use a copy of
``engine/``, ``ds_configs/`` and the toy project taken at the start, so that edits to the working
tree during a long benchmark cannot change the numbers between the reference and a trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.checkpoint import layout  # noqa: E402
from engine.checkpoint.async_writer import FAULT_WRITE_DELAY_ENV  # noqa: E402
from engine.checkpoint.saver import FAULT_SAVE_DELAY_ENV  # noqa: E402
from engine.launch import free_port  # noqa: E402
from fault_compare import WORLD, compare, record_diffs  # noqa: E402,F401 - record_diffs: the harness's test uses it

RESUMED = re.compile(r"resumed from (\S+) at step (\d+)")
SKIPPED = re.compile(r"--resume: skipping (\S+):")
TRAINING_STARTED = "training steps "


@dataclass
class Settings:
    """What one trial runs; the defaults make a launch last ~10-15 s on 2 CPU cores."""

    steps: int = 60
    period: int = 2
    max_keep: int = 2
    save_delay: float = 0.03
    max_kills: int = 3
    save_kill_share: float = 0.5
    launch_timeout: float = 180.0
    checkpoint_async: bool = False  # solver.checkpoint_async; the write delay then applies per file
    code: Path = REPO  # what the launches import; run_harness points it at a snapshot


@dataclass
class TrialResult:
    kills: int = 0
    save_kills: int = 0
    resumes: int = 0
    skipped: int = 0  # incomplete tags a resume logged as skipped
    resumed_at: List[int] = field(default_factory=list)
    bad_resumes: List[str] = field(default_factory=list)
    mismatches: List[str] = field(default_factory=list)


def snapshot_code(workdir: Path) -> Path:
    """Copy what the training runs import; every launch of this benchmark uses the copy."""
    code = workdir / "code"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for rel in ("engine", "ds_configs", "tests/assets/toy"):
        shutil.copytree(REPO / rel, code / rel, ignore=ignore)
    shutil.copy2(REPO / "tests" / "assets" / "ds_report.py", code / "tests" / "assets")  # the toy project imports it
    return code


def train_cmd(out: Path, s: Settings, resume: bool) -> List[str]:
    toy = s.code / "tests" / "assets" / "toy"
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", f"--master_port={free_port()}",
            str(toy / "train.py"), "--config-file", str(toy / "cfg.py"), *(["--resume"] if resume else []),
            "--opts", "output_dir", str(out), "solver.max_iter", str(s.steps),
            "solver.checkpoint_period", str(s.period), "solver.max_keep", str(s.max_keep),
            "solver.checkpoint_async", str(s.checkpoint_async)]


def start(out: Path, s: Settings, resume: bool, log: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(s.code), **{FAULT_SAVE_DELAY_ENV: str(delay)})
    if s.checkpoint_async:
        env[FAULT_WRITE_DELAY_ENV] = str(delay)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    with open(log, "w") as f:
        return subprocess.Popen(train_cmd(out, s, resume), cwd=str(s.code), env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every process under it.

    torchrun starts each rank in a session of its own, so killing torchrun's process group
    would leave the ranks running (and saving); stop them all first, then kill them all.
    """
    try:
        procs = [psutil.Process(proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        _signal_quietly(p, "suspend")
    for p in procs:
        _signal_quietly(p, "kill")
    proc.wait()


def _signal_quietly(p: psutil.Process, action: str) -> None:
    try:
        getattr(p, action)()
    except psutil.NoSuchProcess:
        pass


def in_progress(root: Path, before: set) -> List[str]:
    """Tag folders without a marker that this launch created (a save or its rotation under way)."""
    return [t for t in layout.list_tags(str(root)) if t not in before and not (root / t / layout.MARKER).exists()]


def complete_now(root: Path) -> List[str]:
    """Tags complete by the harness's own reading: marker, manifest sizes, a state file per rank."""
    tags = []
    for tag in layout.complete_tags(str(root)):
        if all(Path(layout.rank_state_file(str(root / tag), r)).is_file() for r in range(WORLD)):
            tags.append(tag)
    return tags


def wait_for_text(proc: subprocess.Popen, log: Path, text: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if text in log.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


@dataclass
class Pace:
    """Seconds of training in a launch from step 0, re-estimated when a launch ends before its kill
    (the machine got faster than during the reference run)."""

    train_seconds: float


#: exit code recorded for a launch that ran past ``Settings.launch_timeout`` (a hang: the job was killed)
HUNG = -1


def run_launch(out: Path, s: Settings, resume: bool, log: Path, rng: random.Random, kill: bool,
               pace: Pace, result: TrialResult, left: float = 1.0) -> Optional[int]:
    """One launch, killed (if ``kill``) at a random moment; returns the exit code, None when killed.

    ``left``: the share of the training this launch still has to run (a resumed launch starts
    at its tag's step): the kill moment is drawn from that part, so that it lands before the end.
    A launch past ``s.launch_timeout`` is killed and returns :data:`HUNG` (the trial goes on).
    """
    root = out / "checkpoints"
    before = {t for t in layout.list_tags(str(root)) if not (root / t / layout.MARKER).exists()}
    proc = start(out, s, resume, log, s.save_delay)
    try:
        if not kill:
            return proc.wait(timeout=s.launch_timeout)
        if not wait_for_text(proc, log, TRAINING_STARTED, s.launch_timeout):
            return proc.wait(timeout=s.launch_timeout)
        at_save, started = rng.random() < s.save_kill_share, time.monotonic()
        deadline = started + rng.uniform(0, pace.train_seconds * left * (0.7 if at_save else 1.0))
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if at_save:
            while proc.poll() is None and not in_progress(root, before):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 3 * s.save_delay))
        if proc.poll() is not None:  # finished before the kill
            if not resume:
                pace.train_seconds = min(pace.train_seconds, 0.9 * (time.monotonic() - started))
            return proc.returncode
        during = bool(in_progress(root, before))
        kill_job(proc)
        result.kills += 1
        result.save_kills += during or bool(in_progress(root, before))
        return None
    except subprocess.TimeoutExpired:
        return HUNG
    finally:
        if proc.poll() is None:
            kill_job(proc)


def check_resume(log: Path, root: Path, expected: Optional[str], result: TrialResult) -> None:
    """The launch resumed from ``expected`` (the newest tag complete at the kill), or started fresh if none."""
    text = log.read_text(errors="replace")
    found = RESUMED.search(text)
    result.skipped += len(set(SKIPPED.findall(text)))  # every rank logs the same skip
    if expected is None:
        if found:
            result.bad_resumes.append(f"resumed from {found.group(1)} though no tag was complete")
        result.resumed_at.append(0)
        return
    if not found:
        result.bad_resumes.append(f"expected a resume from {expected}, the log has none")
        return
    result.resumes += 1
    result.resumed_at.append(int(found.group(2)))
    if Path(found.group(1)) != root / expected:
        result.bad_resumes.append(f"resumed from {found.group(1)}, the newest complete tag was {expected}")


def run_trial(workdir: Path, s: Settings, rng: random.Random, pace: Pace) -> TrialResult:
    """Kill up to ``max_kills`` times (fewer when a launch finishes first), then run to the end.

    A trial whose first launch finished before its kill starts over (up to 3 times) with the
    shorter training time it observed, so that trials are not wasted on a machine that sped up.
    """
    result = TrialResult()
    out, root = workdir / "out", workdir / "out" / "checkpoints"
    kills_left, launch, attempts = rng.randint(1, s.max_kills), 0, 1
    while True:
        log = workdir / f"launch{launch}.log"
        expected = (complete_now(root) or [None])[0] if launch else None
        left = 1.0 - (layout.tag_step(expected) or 0) / s.steps if expected else 1.0
        code = run_launch(out, s, launch > 0, log, rng, kills_left > 0 and left > 0, pace, result, left)
        if code == 0 and launch == 0 and attempts < 5:
            shutil.rmtree(out, ignore_errors=True)
            attempts += 1
            continue
        if launch:
            check_resume(log, root, expected, result)
        if code is not None:
            if code == HUNG:
                result.mismatches.append(f"launch {launch} ran past {s.launch_timeout:.0f}s (hung?): {log}")
            elif code != 0:
                result.mismatches.append(f"launch {launch} exited {code}: {log}")
            return result
        kills_left -= 1
        launch += 1


def reference_run(workdir: Path, s: Settings) -> float:
    """The uninterrupted run (no save delay); returns the seconds its training took."""
    log = workdir / "reference.log"
    proc = start(workdir / "out", s, False, log, 0.0)
    try:
        started = time.monotonic() if wait_for_text(proc, log, TRAINING_STARTED, s.launch_timeout) else None
        code = proc.wait(timeout=s.launch_timeout)
    finally:
        if proc.poll() is None:
            kill_job(proc)
    if code != 0 or started is None:
        raise RuntimeError(f"the reference run failed ({code}); see {log}")
    saves = s.steps // s.period
    return time.monotonic() - started + saves * 3 * s.save_delay


def run_harness(trials: int, s: Settings, seed: int, workdir: Path, echo=print) -> List[TrialResult]:
    """The reference run, then ``trials`` kill-and-resume trials, each compared with it."""
    rng = random.Random(seed)
    s = dataclasses.replace(s, code=snapshot_code(workdir))
    ref = workdir / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    pace = Pace(reference_run(ref, s))
    # a loaded machine slows every launch alike: a hang is a launch far slower than the reference
    s = dataclasses.replace(s, launch_timeout=max(s.launch_timeout, 4 * (time.monotonic() - began)))
    echo(f"reference: {s.steps} steps, training ~{pace.train_seconds:.1f}s with save delays; "
         f"a launch past {s.launch_timeout:.0f}s counts as hung")
    results = []
    for i in range(trials):
        trial_dir = workdir / f"trial{i:02d}"
        trial_dir.mkdir()
        start_t = time.monotonic()
        r = run_trial(trial_dir, s, rng, pace)
        if not r.mismatches:
            r.mismatches = compare(ref / "out", trial_dir / "out", s, r.resumed_at[-1] if r.resumed_at else 0)
        results.append(r)
        echo(f"trial {i + 1}/{trials}: kills {r.kills} (during save {r.save_kills}), resumes {r.resumes} "
             f"at steps {r.resumed_at}, skipped {r.skipped} incomplete, bad resumes {len(r.bad_resumes)}, mismatches {len(r.mismatches)} "
             f"({time.monotonic() - start_t:.0f}s)")
        for line in r.bad_resumes + r.mismatches:
            echo(f"    {line}")
        if not r.mismatches and not r.bad_resumes:
            shutil.rmtree(trial_dir, ignore_errors=True)
    return results


def summary(results: List[TrialResult]) -> Dict[str, int]:
    return {
        "trials": len(results),
        "trials_with_a_kill": sum(r.kills > 0 for r in results),
        "kills": sum(r.kills for r in results),
        "kills_during_save": sum(r.save_kills for r in results),
        "resumes": sum(r.resumes for r in results),
        "incomplete_tags_skipped": sum(r.skipped for r in results),
        "bad_resumes": sum(len(r.bad_resumes) for r in results),
        "mismatches": sum(len(r.mismatches) > 0 for r in results),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--period", type=int, default=Settings.period)
    parser.add_argument("--max-kills", type=int, default=Settings.max_kills)
    parser.add_argument("--save-delay", type=float, default=Settings.save_delay)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--async", dest="checkpoint_async", action="store_true",
                        help="solver.checkpoint_async: kill during the background writes")
    parser.add_argument("--workdir", type=Path, default=None, help="keep outputs here (default: a temp folder)")
    args = parser.parse_args(argv)
    s = Settings(steps=args.steps, period=args.period, max_kills=args.max_kills, save_delay=args.save_delay,
                 checkpoint_async=args.checkpoint_async)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fault_injection_"))
    start_t = time.monotonic()
    results = run_harness(args.trials, s, args.seed, workdir, echo=lambda line: print(line, flush=True))
    totals = summary(results)
    print(" ".join(f"{k} {v}" for k, v in totals.items()) + f"  ({time.monotonic() - start_t:.0f}s)")
    if args.workdir is None and not totals["mismatches"] and not totals["bad_resumes"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if totals["mismatches"] or totals["bad_resumes"] else 0


if __name__ == "__main__":
    sys.exit(main())
