"""A project written for the seed framework runs on engine unchanged (tests/assets/seed_project).

Through its own ``train.py``, as its users run it: a short training, the same run interrupted
and resumed, and the final test pass of its trainer; the assertions read what the runs write.
"""

from __future__ import annotations

import json
import re
import sys

import cv2
import pytest
import torch

from engine.checkpoint import layout
from tests.helpers import REPO, run_cli

PROJECT = REPO / "tests" / "assets" / "seed_project"

pytestmark = pytest.mark.slow


def run_project(config, out, *opts, resume=False):
    result = run_cli([sys.executable, str(PROJECT / "train.py"), "--config-file", str(PROJECT / "configs" / config),
                      *(["--resume"] if resume else []),
                      "--opts", "output_dir", str(out), "trainer.progress", "log", *opts], timeout=240)
    assert result.returncode == 0, result.stdout[-4000:]
    return result


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory):
    """The segmentation project three times: 8 steps straight, and 4 + (kill) + --resume to 8."""
    root = tmp_path_factory.mktemp("seed_project")
    straight, resumed = root / "straight", root / "resumed"
    run_project("seg.py", straight)
    first = run_project("seg.py", resumed, "solver.stop_at_iter", "4")
    second = run_project("seg.py", resumed, resume=True)
    return {"straight": straight, "resumed": resumed, "first_log": first.stdout, "second_log": second.stdout}


def record(out):
    return json.loads((out / "record_rank0.json").read_text())


def test_user_logger_lines_land_in_the_log_file(seg_runs):
    log = (seg_runs["straight"] / "seg_project.log").read_text()  # output_log_name names the file
    for line in ("seg_project INFO] start at 0 of 8", "seg_project INFO] iterate_after 0",
                 "seg_project INFO] iterate_after 6", "seg_project INFO] test pixel accuracy"):
        assert line in log, line
    # the trainer's seed attributes, as the user's __init__ logged them
    checkpoints = seg_runs["straight"] / "checkpoints"
    assert f"device cpu batch 4 accumulation -1 epoch mode False checkpoint period 4 keep 3 in {checkpoints}" in log
    assert "config keys of your own, not read by engine: trainer.vis_dir" in log


def test_the_childs_optimizer_type_replaced_the_bases_params(seg_runs):
    optimizer = json.loads((seg_runs["straight"] / "ds_config.json").read_text())["optimizer"]
    assert optimizer["type"] == "AdamW"  # the base said SGD(momentum=0.9, nesterov=True)
    assert "momentum" not in optimizer["params"] and "nesterov" not in optimizer["params"]


def test_one_argument_iterate_after_and_the_seeds_collate_functions(seg_runs):
    rec = record(seg_runs["straight"])
    assert rec["iterated"] == list(range(8))  # the seed's loop counter, once per step
    assert rec["train_collates"] == ["train_collate"]  # set_collate_fn's attributes, not torch's default
    assert rec["test_collates"] == ["valid_collate"]
    assert rec["test_batches"] == 3 and rec["val_batches"] == 2  # test_data_set (9 samples / 3), not the val set


def test_final_test_pass_writes_images_and_the_seeds_state_dict(seg_runs):
    out = seg_runs["straight"]
    images = sorted(p.name for p in (out / "test_vis").iterdir())
    assert images == ["test_000.png", "test_001.png", "test_002.png"]
    assert cv2.imread(str(out / "test_vis" / "test_000.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)
    state = torch.load(out / "final_model.pth", map_location="cpu", weights_only=True)
    assert set(state) == {"g_model", "ema"}
    assert set(state["g_model"]) == {f"body.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert 0.0 <= record(out)["accuracy"] <= 1.0


def test_model_call_after_disable_train_runs_the_generator_on_ema_weights(seg_runs):
    # the seed's projects all call their package `codes`, and another test may have imported the digits
    # example's: set it aside so that this import finds the seed project's, then put it back
    others = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "codes" or name.startswith("codes.")}
    sys.path.insert(0, str(PROJECT))
    try:
        from codes.dataset import ShapesSegDataSet
        from codes.network import TinySegNet
    finally:
        sys.path.remove(str(PROJECT))
        for name in [n for n in sys.modules if n == "codes" or n.startswith("codes.")]:
            del sys.modules[name]
        sys.modules.update(others)
    out = seg_runs["straight"]
    state = torch.load(out / "final_model.pth", map_location="cpu", weights_only=True)
    data = ShapesSegDataSet(data_root="unused", num=9, img_size=32, transformer=[])
    images = torch.stack([data[i]["img"] for i in range(3)])  # the first test batch
    logged = torch.tensor(record(out)["first_test_logits"])
    net = TinySegNet(in_channels=3, num_classes=2, width=8).eval()
    net.load_state_dict(state["g_model"])
    with torch.no_grad():
        raw = net(images)
        net.load_state_dict({**state["ema"]["params"], **state["ema"]["buffers"]})
        averaged = net(images)
    assert torch.allclose(logged, averaged, atol=1e-5)
    assert not torch.allclose(logged, raw, atol=1e-3)  # not the training weights


def test_checkpoints_are_complete_tags_at_the_configured_period(seg_runs):
    root = seg_runs["straight"] / "checkpoints"
    tags = [p.name for p in sorted(root.iterdir()) if p.is_dir()]
    assert tags == ["iter_0000004", "iter_0000008"]
    assert all(layout.check_complete(str(root / tag)) == (True, "") for tag in tags)


def test_interrupted_and_resumed_run_ends_bit_identical(seg_runs):
    assert "stopping after step 4" in seg_runs["first_log"]
    resumed = record(seg_runs["resumed"])
    assert resumed["start_iter"] == 4 and resumed["iterated"] == [4, 5, 6, 7]
    assert resumed["weights"] == record(seg_runs["straight"])["weights"]  # every float, exactly
    log = (seg_runs["resumed"] / "seg_project.log").read_text()
    assert "seg_project INFO] start at 4 of 8" in log and "seg_project INFO] iterate_after 4" in log


def test_seed_form_gan_steps_d_every_step_and_g_every_g_step(tmp_path):
    out = tmp_path / "gan"
    result = run_project("gan.py", out)
    rec = json.loads((out / "gan_rank0.json").read_text())
    assert rec["g_calls"] == [0, 2, 4]  # trainer.model.g_step 2 on the loop counter
    assert (rec["g_steps"], rec["d_steps"]) == (3, 6)
    assert rec["d_schedulers"] == ["default"] and rec["samples"] == [3, 2]  # model(z) after disable_train
    assert rec["addition"] == ["cfg", "d_model_default", "d_optimizer_default", "d_scheduler_default",
                               "g_optimizer", "g_scheduler"]
    assert "gan_project INFO] gan samples (3, 2)" in (out / "gan_project.log").read_text()
    assert "not read by engine" not in result.stdout  # g_step is engine's own key
    assert re.search(r"eval at step 6: val/d_loss [0-9.]+  val/g_loss [0-9.]+  val/loss", result.stdout)
