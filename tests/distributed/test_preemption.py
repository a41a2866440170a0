"""Save on signal, trigger files and ``--resume auto``, with real 2-rank torchrun jobs (gloo, CPU).

One job is preempted four times, the way a requeued cluster job is: every start uses the
same command line (``--resume auto``); each start is interrupted in a different way on one
rank only (SIGTERM on rank 1, SIGUSR1 on rank 0, ``STOP_NOW`` written mid-run, SIGTERM
twice with the second landing during the save); the last start runs to the end. The final
weights must be bitwise those of an uninterrupted run.
"""

import os
import signal
from pathlib import Path

import pytest
import torch

from engine.checkpoint import layout
from engine.checkpoint.preempt import EXIT_REQUEUE, STOP_NOW, SignalFlag, StopRequests, signal_numbers
from engine.errors import ConfigError
from engine.schedule.args import parse_args
from tests.distributed.test_resume import engine_tensors
from tests.helpers import TOY, free_port, launcher_cmd, run_cli, run_scenarios

STEPS = 16
SCRIPT = f'''
import os, signal, sys, threading
sys.path.insert(0, {str(TOY)!r})
import toy  # noqa: F401
from engine import comm
from engine.trainer.hook_registry import HOOK_REGISTRY
from engine.events.hooks import HookBase
from engine.schedule.scheduler import BaseScheduler

@HOOK_REGISTRY.register()
class Interrupt(HookBase):
    """INTERRUPT=step:rank:how[:again_after_s] — what arrives at this rank after that step."""
    def after_step(self):
        spec = os.environ.get("INTERRUPT")
        if not spec:
            return
        step, rank, how, *again = spec.split(":")
        if self.trainer.iter + 1 != int(step) or comm.get_rank() != int(rank):
            return
        if how == "STOP_NOW":
            open(os.path.join(self.trainer.cfg.OUTPUT_DIR, how), "w").close()
            return
        number = getattr(signal, how)
        os.kill(os.getpid(), number)
        if again:
            threading.Timer(float(again[0]), os.kill, (os.getpid(), number)).start()

if __name__ == "__main__":
    BaseScheduler().schedule()
'''
CFG = f'''
_base_ = {str(TOY / "cfg.py")!r}
trainer = dict(hooks=[dict(name="Interrupt")], log_period=100)
solver = dict(max_iter={STEPS})
'''
#: (step, rank, how, extra env): each start of the preempted job
INTERRUPTIONS = [
    ("3", "1", "SIGTERM", {}),
    ("6", "0", "SIGUSR1", {}),
    ("9", "0", "STOP_NOW", {}),
    # the save sleeps ~1 s between its phases; the second SIGTERM comes 0.5 s into it
    ("12", "1", "SIGTERM:0.5", {"ENGINE_FAULT_SAVE_DELAY": "1.0"}),
]


def _argv(tmp: Path, out: Path) -> list:
    return ["--config-file", str(tmp / "cfg.py"), "--resume", "auto", "--opts", "output_dir", str(out)]


def _start(tmp: Path, out: Path, env: dict):
    return run_cli(launcher_cmd("torchrun", tmp / "train.py", 2, free_port()) + _argv(tmp, out), timeout=180, env=env)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_preempted_job_resumes_bit_exactly(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "cfg.py").write_text(CFG)
    straight, job = tmp_path / "straight", tmp_path / "job"
    for step, rank, how, env in INTERRUPTIONS:
        result = _start(tmp_path, job, dict(env, INTERRUPT=f"{step}:{rank}:{how}"))
        log = result.stdout
        assert result.returncode != 0, log[-4000:]  # torchrun reports failed workers...
        assert log.count(f"exitcode  : {EXIT_REQUEUE}") == 2, log[-4000:]  # ...both with the requeue code
        tags = layout.complete_tags(str(job / "checkpoints"))
        assert tags[0] == layout.tag_name(int(step)), (tags, log[-4000:])  # both ranks stopped after that step
        assert layout.list_tags(str(job / "checkpoints"))[0] == tags[0]  # no newer half tag
        why = f"{how.split(':')[0]} on rank {rank}" if how != "STOP_NOW" else STOP_NOW
        assert f"stopping after step {step} ({why}" in log, log[-4000:]
        if how.endswith(":0.5"):
            rank_log = (job / f"train.rank{rank}.log").read_text()  # ranks > 0 log to their own file
            assert "1 more signal(s) came during the save; recorded and ignored" in rank_log, rank_log[-4000:]
    assert not (job / STOP_NOW).exists()  # removed once its save was complete: the requeue does not stop again

    # the requeue that runs to the end, and the uninterrupted run, share the last start
    ends = run_scenarios([("last", _argv(tmp_path, job)), ("straight", _argv(tmp_path, straight))],
                         tmp_path / "last-start", imports=[tmp_path / "train.py"], timeout=300)
    first, last = ends["straight"], ends["last"]
    assert first.codes == [0, 0], first.stdout[-4000:]
    assert "--resume auto: no complete checkpoint" in first.stdout
    assert last.codes == [0, 0], last.stdout[-4000:]
    assert f"--resume auto: found the complete checkpoint {job / 'checkpoints' / layout.tag_name(12)}" in last.stdout
    final = layout.tag_name(STEPS)
    a, b = engine_tensors(straight / "checkpoints" / final), engine_tensors(job / "checkpoints" / final)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_signal_names_are_checked_with_close_names():
    assert signal_numbers(["SIGTERM", "usr1", "SIGTERM"]) == [signal.SIGTERM, signal.SIGUSR1]
    with pytest.raises(ConfigError, match=r"solver.save_on_signal: 'SIGTREM'.*Did you mean 'SIGTERM'"):
        signal_numbers(["SIGTREM"])
    with pytest.raises(ConfigError, match="SIGKILL"):
        signal_numbers(["SIGKILL"])  # cannot be caught: rejected instead of silently not saving


def test_signal_flag_only_records_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    flag = SignalFlag([signal.SIGUSR1])
    assert flag.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        flag.uninstall()
    assert (flag.received, flag.count) == (signal.SIGUSR1, 2)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_trigger_files_on_one_process(tmp_path):
    requests = StopRequests(str(tmp_path), [])
    assert not requests.poll().save
    (tmp_path / "SAVE_NOW").touch()
    got = requests.poll()
    assert (got.save, got.stop) == (True, False)
    requests.done(got)
    assert not (tmp_path / "SAVE_NOW").exists() and not requests.poll().save
    (tmp_path / STOP_NOW).touch()
    got = requests.poll()
    assert (got.save, got.stop) == (True, True) and STOP_NOW in got.reason


def test_resume_flag_forms():
    assert parse_args(["--config-file", "c.py"]).resume is False
    assert parse_args(["--config-file", "c.py", "--resume"]).resume is True
    args = parse_args(["--config-file", "c.py", "--resume", "auto", "--opts", "solver.max_iter", "3"])
    assert (args.resume, args.opts) == ("auto", ["solver.max_iter", "3"])
    with pytest.raises(SystemExit):
        parse_args(["--config-file", "c.py", "--resume", "sometimes"])


def test_config_key_resume_auto_starts_fresh_without_a_checkpoint(tmp_path, caplog):
    from types import SimpleNamespace

    from engine.checkpoint.checkpointer import Checkpointer
    from engine.checkpoint.resume import resume_or_load

    cfg = SimpleNamespace(OUTPUT_DIR=str(tmp_path), TRAINER=SimpleNamespace(RESUME="auto", WEIGHTS=""))
    with caplog.at_level("INFO", logger="engine"):
        resume_or_load(SimpleNamespace(cfg=cfg, checkpoint=Checkpointer(str(tmp_path), 1)), False)
    assert f"--resume auto: no complete checkpoint in {tmp_path / 'checkpoints'}; starting fresh" in caplog.text
