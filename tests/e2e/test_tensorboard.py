"""A short toy run as a user starts it: TensorBoard event files, and the console with and without a terminal."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import REPO, TOY, run_cli

# the toy project plus a user hook registered by name and added through trainer.hooks
SCRIPT = f"""
import sys
sys.path.insert(0, {str(TOY)!r})
import torch
import toy  # noqa: F401
from engine.events.storage import put_image
from engine.trainer.hook_registry import HOOK_REGISTRY
from engine.events.hooks import PeriodicHook


@HOOK_REGISTRY.register()
class ImageProbeHook(PeriodicHook):
    def after_step(self):
        if self.is_due():
            put_image("probe/images", torch.rand(4, 1, 6, 6))


if __name__ == "__main__":
    from engine.schedule.scheduler import BaseScheduler
    BaseScheduler().schedule()
"""


def _command(tmp_path, out, *opts):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return [sys.executable, str(script), "--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out),
            "solver.max_iter", "20", "trainer.log_period", "5", *opts]


def test_short_run_writes_the_expected_tags_and_plain_log_lines(tmp_path):
    out = tmp_path / "out"
    result = run_cli(_command(tmp_path, out, "solver.eval_period", "10",
                              "dataloader.val_data_set", "{'name': 'ToyRegression', 'size': 64}",
                              "trainer.hooks", "[{'name': 'ImageProbeHook', 'period': 5}]"))
    assert result.returncode == 0, result.stdout[-4000:]
    assert "step 20/20" in result.stdout and "it/s]" not in result.stdout  # no terminal: log lines, no bar
    assert "environment:" in result.stdout and "deepspeed" in result.stdout
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "lr/generator", "grad_norm/generator", "speed/samples_per_s", "time/step_s",
                "time/data_s", "time/compute_s", "time/data_share", "system/cpu_rss_gb", "val/loss"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    assert [e.step for e in events.Scalars("val/loss")] == [10, 20]
    assert "probe/images" in tags["images"]
    assert {"config/text_summary", "deepspeed/text_summary"} <= set(tags["tensors"])


def run_in_terminal(cmd, timeout=240):
    """Run ``cmd`` with stdout on a pseudo-terminal (120 columns); kill its group on timeout."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, 9)
                raise AssertionError(f"timed out after {timeout}s: {b''.join(chunks)[-3000:]!r}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_a_progress_bar_instead_of_log_lines(tmp_path):
    out = tmp_path / "out"
    code, text = run_in_terminal(_command(tmp_path, out, "trainer.tensorboard", "False"))
    assert code == 0, text[-4000:]
    assert "20/20" in text and "it/s" in text and "loss=" in text and "lr=" in text
    assert "step 20/20" not in text  # the period lines are in the log file only
    assert "saved checkpoint" in text  # other messages still reach the console, above the bar
    assert "step 20/20" in (out / "train.log").read_text()
    assert not (out / "tensorboard").exists()
