"""``solver.checkpoint_async``: tags written in the background are the synchronous tags, file for file.

A 2-rank ZeRO-2 run saves synchronously; the same run with asynchronous saves stops at the
middle tag. Both tags hold the same files with the same objects (tensors bitwise) and the
same pickled globals (so the ``weights_only=True`` allow-list that loads one loads the
other); the async tag resumes to bitwise the same final weights, loads on a different world
size, exports and inspects like the synchronous one.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.checkpoint import layout
from engine.checkpoint.async_writer import FAULT_WRITE_DELAY_ENV, BackgroundWriter, CapturingCheckpointEngine, snapshot
from tests.distributed.test_resume import engine_tensors
from tests.helpers import TOY, run_scenarios, run_tool

STEPS, HALF = 12, 6


def train_argv(out: Path, *opts: str, resume: bool = False) -> list:
    return ["--config-file", str(TOY / "cfg.py"), *(["--resume", "auto"] if resume else []), "--opts",
            "output_dir", str(out), "solver.max_iter", str(STEPS), "solver.checkpoint_period", str(HALF), *opts]


def train(name: str, out: Path, nproc: int, *opts: str, resume: bool = False) -> str:
    """One training in a start of its own; its console output."""
    outcome = run_scenarios([(name, train_argv(out, *opts, resume=resume))], out.parent / f"{name}-start",
                            nproc=nproc, imports=[TOY / "toy.py"], timeout=180)[name]
    assert outcome.codes == [0] * nproc, outcome.stdout[-4000:]
    return outcome.stdout


def same(a, b, where=""):
    """Structural equality with tensors compared bitwise (dtype, shape, values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for key in a:
            same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):  # numpy's RNG state in the per-rank files
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), where
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert type(a) is type(b), where
        same(vars(a), vars(b), where)
    else:
        assert (a == b) if not isinstance(a, float) or a == a else b != b, where


def tool(name: str, *args) -> str:
    result = run_tool(name, *args)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_async_tags_are_sync_tags(tmp_path):
    sync, asyn = tmp_path / "sync", tmp_path / "async"
    # one start: the synchronous run, then the asynchronous one, which ends the process at its stop
    runs = run_scenarios([("sync", train_argv(sync)),
                          ("async", train_argv(asyn, "solver.checkpoint_async", "True", "solver.stop_at_iter", str(HALF)))],
                         tmp_path / "first-start", imports=[TOY / "toy.py"], timeout=300)
    assert runs["sync"].codes == runs["async"].codes == [0, 0], (runs["sync"].stdout[-4000:], runs["async"].stdout[-4000:])
    log = runs["async"].stdout
    assert "asynchronously: training blocked" in log
    half = layout.tag_name(HALF)
    a_dir, b_dir = sync / "checkpoints" / half, asyn / "checkpoints" / half
    assert layout.check_complete(str(b_dir)) == (True, "")
    a_files, b_files = layout.read_marker(str(a_dir))["files"], layout.read_marker(str(b_dir))["files"]
    assert sorted(a_files) == sorted(b_files)
    for rel in a_files:
        if not rel.endswith(".pt"):
            continue
        x, y = a_dir / rel, b_dir / rel
        assert (torch.serialization.get_unsafe_globals_in_checkpoint(str(x))
                == torch.serialization.get_unsafe_globals_in_checkpoint(str(y))), rel
        same(torch.load(x, map_location="cpu", weights_only=False),
             torch.load(y, map_location="cpu", weights_only=False), rel)

    # a different world size loads the async tag (a copy: the resume below needs the original)
    resized = tmp_path / "resized"
    shutil.copytree(b_dir, resized / "checkpoints" / half)
    one = train("resized", resized, 1, "solver.checkpoint_async", "True", resume=True)
    assert "was saved by 2 ranks, this run has 1" in one

    # export and inspect read it as they read the synchronous tag
    tool("convert_ckpt", a_dir, tmp_path / "a.safetensors")
    tool("convert_ckpt", b_dir, tmp_path / "b.safetensors")
    from safetensors.torch import load_file

    same(load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors"), "export")
    report = tool("inspect_ckpt", asyn)
    assert half in report and "incomplete" not in report.lower()

    # the async run resumes to bitwise the uninterrupted run's final weights
    log = train("resume", asyn, 2, "solver.checkpoint_async", "True", resume=True)
    assert f"--resume auto: found the complete checkpoint {b_dir}" in log
    final = layout.tag_name(STEPS)
    assert layout.complete_tags(str(asyn / "checkpoints"))[0] == final
    x, y = engine_tensors(sync / "checkpoints" / final), engine_tensors(asyn / "checkpoints" / final)
    assert x.keys() == y.keys() and len(x) > 0
    for key in x:
        assert torch.equal(x[key], y[key]), key


def test_snapshot_copies_and_keeps_ties():
    weight = torch.arange(6.0)
    state = {"a": weight, "tied": weight, "view": weight[2:4], "n": 3, "pair": (weight, "x"),
             "shape": torch.Size([2, 3]), "shapes": [(4, torch.Size([5]))]}
    copy = snapshot(state)
    weight.add_(100)  # training goes on after the host copy
    assert torch.equal(copy["a"], torch.arange(6.0)) and torch.equal(copy["view"], torch.tensor([2.0, 3.0]))
    assert copy["tied"] is copy["a"] and copy["pair"][0] is copy["a"]  # one copy per distinct view
    assert copy["n"] == 3 and copy["pair"][1] == "x"
    assert type(copy["shape"]) is torch.Size and type(copy["shapes"][0][1]) is torch.Size  # DeepSpeed's param_shapes


def test_snapshot_freezes_live_objects():
    """DeepSpeed's loss scaler is saved as the object itself; its scale moves on before the background write."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler

    scaler = DynamicLossScaler(init_scale=2.0**16, scale_window=1, min_scale=1, delayed_shift=1, consecutive_hysteresis=False)
    copy = snapshot({"loss_scaler": scaler, "stage": "x"})
    scaler.cur_scale = 2.0**8  # an overflow after the save
    assert copy["loss_scaler"].cur_scale == 2.0**16 and type(copy["loss_scaler"]) is DynamicLossScaler
    assert copy["stage"] == "x"


def test_background_writer_writes_fsyncs_and_reports_errors(tmp_path, monkeypatch):
    capture = CapturingCheckpointEngine()
    capture.save({"w": torch.ones(3)}, str(tmp_path / "tag" / "sub" / "f.pt"))
    writer = BackgroundWriter()
    monkeypatch.setenv(FAULT_WRITE_DELAY_ENV, "0.5")  # the write stays in flight for 0.5 s
    writer.submit(capture.files, str(tmp_path / "tag"))
    assert not writer.finished()
    with pytest.raises(RuntimeError, match="in flight"):  # at most one save in flight
        writer.submit([], str(tmp_path / "tag"))
    writer.wait()
    monkeypatch.delenv(FAULT_WRITE_DELAY_ENV)
    assert not writer.busy and torch.equal(torch.load(tmp_path / "tag" / "sub" / "f.pt")["w"], torch.ones(3))
    (tmp_path / "blocker").write_text("a file where a folder should be")
    writer.submit([(str(tmp_path / "blocker" / "f.pt"), {"w": torch.ones(1)})], str(tmp_path))
    with pytest.raises(OSError):
        writer.wait()
    assert not writer.busy
