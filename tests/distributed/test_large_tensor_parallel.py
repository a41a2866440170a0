"""Tensor parallel (AutoTP, 2 ranks = 1 replica) against a 1-process run without it, fp32.

The network declares its column/row specs (``autotp_layer_specs``); the config only says
``autotp_size: 2``. Both TP ranks read the same batches and report the same losses, equal
to the plain run's; the gathered weights at the start are the plain network's, and the two
checkpoint shards merge into a state dict that loads with ``strict=True`` and equals the
plain run's final weights.

The 1-process plain run is shared by both tests; the 2-rank TP runs (ZeRO-1, ZeRO-3, and the
ZeRO-3 run stopped at step 4, which ends the start) share one start; the resume has its own.
"""

import json

import pytest
import torch

from engine.weights import safe_load
from engine.weights.exported import read_exported
from engine.model.tensor_parallel import merge_tp_shards
from tests.distributed.test_large_zero3 import run_large, run_large_together
from tests.distributed.test_plan_ds_config import REPORT_HOOK, assert_ds_config_is_what_ran
from tests.helpers import read_records, run_tool

COMMON = ("deepspeed.config", "zero1", "solver.max_iter", "8")
TP3 = ("deepspeed.config", "zero3", "solver.max_iter", "8", "deepspeed.tensor_parallel", "{'autotp_size': 2}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run name → its output dir: the plain run on one rank, then the TP runs in one 2-rank start."""
    tmp = tmp_path_factory.mktemp("tp")
    plain = tmp / "plain"
    run_large(plain, *COMMON, nproc=1)
    return {"plain": plain, **run_large_together(tmp, {
        "tp": (*COMMON, "deepspeed.tensor_parallel", "{'autotp_size': 2}", *REPORT_HOOK),
        "tp3": TP3,
        "tp3_resumed": (*TP3, "solver.stop_at_iter", "4"),
    })}


def module_state(out, rank):
    """The module weights one rank saved at step 8 (ZeRO 0-2 keep them whole per TP rank)."""
    path = out / "checkpoints" / "iter_0000008" / "generator" / f"mp_rank_{rank:02d}_model_states.pt"
    return safe_load.load(str(path))["module"]


def export(out, dest):
    """``tools/convert_ckpt.py`` on a run's newest tag; the exported state dict."""
    result = run_tool("convert_ckpt", out, dest)
    assert result.returncode == 0, result.stdout[-3000:]
    return read_exported(str(dest))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tensor_parallel_matches_plain_run_and_exports(runs, tmp_path):
    import large

    plain = read_records(runs["plain"], 1)[0]
    tp = read_records(runs["tp"], 2)
    assert_ds_config_is_what_ran(runs["tp"], engines=["generator"])  # partition_config included
    assert json.loads((runs["tp"] / "ds_config.json").read_text())["tensor_parallel"]["partition_config"]
    assert tp[0]["losses"] == tp[1]["losses"]
    assert tp[0]["losses"] == pytest.approx(plain["losses"], rel=1e-5, abs=1e-6)
    assert sum(plain["losses"][-3:]) < sum(plain["losses"][:3]), plain["losses"]
    for key, value in plain["start_weights"].items():
        assert torch.allclose(torch.tensor(tp[0]["start_weights"][key]), torch.tensor(value)), key

    shards = [module_state(runs["tp"], rank) for rank in range(2)]
    assert shards[0]["blocks.0.up.weight"].shape == (32, 32)  # half of 64 output features
    merged = merge_tp_shards(shards, large.DeepMLP.autotp_layer_specs)
    network = large.DeepMLP(dim=8, hidden=32, depth=4)
    network.load_state_dict(merged, strict=True)
    for key, value in module_state(runs["plain"], 0).items():
        assert torch.allclose(merged[key], value, rtol=1e-4, atol=1e-6), key

    # the export tool merges the shards by the specs recorded in the tag's marker
    state = export(runs["tp"], tmp_path / "tp.safetensors")
    network.load_state_dict(state, strict=True)
    assert all(torch.equal(state[k], v) for k, v in merged.items())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tensor_parallel_zero3_trains_resumes_and_exports(runs, tmp_path):
    """TP with ZeRO-3 (built under zero.Init): the plain run's losses, exact resume, export of its fp32 partitions."""
    import large

    plain = read_records(runs["plain"], 1)[0]
    network = large.DeepMLP(dim=8, hidden=32, depth=4)
    tp3 = read_records(runs["tp3"], 2)
    assert tp3[0]["losses"] == pytest.approx(plain["losses"], rel=1e-5, abs=1e-6)
    state = export(runs["tp3"], tmp_path / "tp3.safetensors")
    network.load_state_dict(state, strict=True)
    for key, value in module_state(runs["plain"], 0).items():
        assert torch.allclose(state[key], value, rtol=1e-4, atol=1e-6), key

    # and stopped at step 4 (the shared start's last run), resumed to 8: the losses continue bit for bit
    resumed = run_large(runs["tp3_resumed"], *TP3, "--resume")
    assert resumed[0]["losses"] == tp3[0]["losses"][4:]


def test_network_specs_fill_only_a_missing_partition_config():
    from engine.config import get_cfg
    from engine.model.run_plan import declared_layer_specs
    from engine.runplan.plan import build_run_plan
    from tests.distributed.test_large_zero3 import LARGE
    import large

    def ds(tp):
        cfg = get_cfg(str(LARGE / "cfg.py"), opts=["deepspeed.config", "zero1", "deepspeed.tensor_parallel", tp])
        return build_run_plan(cfg, rank=0, world_size=2, device="cpu", layer_specs=declared_layer_specs(cfg)).ds_config()

    filled = ds("{'autotp_size': 2}")
    assert filled["tensor_parallel"]["partition_config"] == {"use_default_specs": False,
                                                             "layer_specs": large.DeepMLP.autotp_layer_specs}
    assert "train_batch_size" not in filled
    given = {"use_default_specs": False, "layer_specs": [{"patterns": [".*up.weight"], "partition_type": "column"}]}
    assert ds(repr({"autotp_size": 2, "partition_config": given}))["tensor_parallel"]["partition_config"] == given
    plain = ds("{'autotp_size': 1}")
    assert "partition_config" not in plain["tensor_parallel"] and plain["train_batch_size"] == 16
