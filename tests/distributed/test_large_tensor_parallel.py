"""Tensor parallel (AutoTP, 2 ranks = 1 replica) against a 1-process run without it, fp32.

The network declares its column/row specs (``autotp_layer_specs``); the config only says
``autotp_size: 2``. Both TP ranks read the same batches and report the same losses, equal
to the plain run's; the gathered weights at the start are the plain network's, and the two
checkpoint shards merge into a state dict that loads with ``strict=True`` and equals the
plain run's final weights.
"""

import sys

import pytest
import torch

from engine.checkpoint.export import read_exported
from engine.model.tensor_parallel import merge_tp_shards
from tests.distributed.test_large_zero3 import run_large
from tests.helpers import REPO, run_cli

COMMON = ("deepspeed.config", "zero1", "solver.max_iter", "8")


@pytest.mark.slow
def test_tensor_parallel_matches_plain_run_and_exports(tmp_path):
    import large

    plain = run_large(tmp_path / "plain", *COMMON, nproc=1)[0]
    tp = run_large(tmp_path / "tp", *COMMON, "deepspeed.tensor_parallel", "{'autotp_size': 2}")
    assert tp[0]["losses"] == tp[1]["losses"]
    assert tp[0]["losses"] == pytest.approx(plain["losses"], rel=1e-5, abs=1e-6)
    assert sum(plain["losses"][-3:]) < sum(plain["losses"][:3]), plain["losses"]
    for key, value in plain["start_weights"].items():
        assert torch.allclose(torch.tensor(tp[0]["start_weights"][key]), torch.tensor(value)), key

    def module_state(run, rank):
        path = tmp_path / run / "checkpoints" / "iter_0000008" / "generator" / f"mp_rank_{rank:02d}_model_states.pt"
        return torch.load(path, map_location="cpu", weights_only=False)["module"]

    shards = [module_state("tp", rank) for rank in range(2)]
    assert shards[0]["blocks.0.up.weight"].shape == (32, 32)  # half of 64 output features
    merged = merge_tp_shards(shards, large.DeepMLP.autotp_layer_specs)
    network = large.DeepMLP(dim=8, hidden=32, depth=4)
    network.load_state_dict(merged, strict=True)
    for key, value in module_state("plain", 0).items():
        assert torch.allclose(merged[key], value, rtol=1e-4, atol=1e-6), key

    # the export tool merges the shards by the specs recorded in the tag's marker
    exported = tmp_path / "tp.safetensors"
    result = run_cli([sys.executable, str(REPO / "tools" / "convert_ckpt.py"), str(tmp_path / "tp"), str(exported)],
                     timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    state = read_exported(str(exported))
    network.load_state_dict(state, strict=True)
    assert all(torch.equal(state[k], v) for k, v in merged.items())

    # TP with ZeRO-3 (built under zero.Init): trains the same, and its fp32 partitions export to the same weights
    tp3 = run_large(tmp_path / "tp3", "deepspeed.config", "zero3", "solver.max_iter", "8",
                    "deepspeed.tensor_parallel", "{'autotp_size': 2}")
    assert tp3[0]["losses"] == pytest.approx(plain["losses"], rel=1e-5, abs=1e-6)
    result = run_cli([sys.executable, str(REPO / "tools" / "convert_ckpt.py"), str(tmp_path / "tp3"),
                      str(tmp_path / "tp3.safetensors")], timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    state = read_exported(str(tmp_path / "tp3.safetensors"))
    network.load_state_dict(state, strict=True)
    for key, value in module_state("plain", 0).items():
        assert torch.allclose(state[key], value, rtol=1e-4, atol=1e-6), key


def test_network_specs_fill_only_a_missing_partition_config():
    from engine.model.tensor_parallel import with_network_specs, without_tp_batch_size
    import large

    net = large.DeepMLP(dim=8, hidden=32, depth=1)
    ds = {"tensor_parallel": {"autotp_size": 2}, "train_batch_size": 8}
    filled = with_network_specs(ds, net)["tensor_parallel"]["partition_config"]
    assert filled == {"use_default_specs": False, "layer_specs": large.DeepMLP.autotp_layer_specs}
    given = {"tensor_parallel": {"autotp_size": 2, "partition_config": {"layer_specs": []}}}
    assert with_network_specs(given, net) == given
    assert "partition_config" not in with_network_specs({"tensor_parallel": {"autotp_size": 1}}, net)["tensor_parallel"]
    assert "train_batch_size" not in without_tp_batch_size(ds) and ds["train_batch_size"] == 8
    assert without_tp_batch_size({"train_batch_size": 8})["train_batch_size"] == 8
