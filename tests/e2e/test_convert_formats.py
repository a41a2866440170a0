"""tools/convert_ckpt.py options: --dtype, --format, --max-shard-size (Hugging Face shards + index), tied weights once.

A toy network with a tied pair of layers is trained a few steps on one rank; every export
is compared with the live, gathered weights and loaded back into the plain network with
``strict=True`` (through ``read_exported`` when tied names or shards are involved).
"""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine.checkpoint.export import parse_size
from engine.weights.exported import read_exported
from tests.helpers import TOY, run_scenarios, run_tool

TIED_TRAIN = f'''
import os, sys
sys.path.insert(0, {str(TOY)!r})
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toy  # registers DumpTrainer, which writes the live weights to output_dir/live.pt
from tied_net import TiedNet
from engine.model.build import BUILD_NETWORK_REGISTRY
from engine.schedule.scheduler import BaseScheduler

BUILD_NETWORK_REGISTRY.register()(TiedNet)

if __name__ == "__main__":
    BaseScheduler().schedule()
'''
TIED_NET = '''
from torch import nn

class TiedNet(nn.Module):
    """enc and dec share one weight (tied); the head is separate."""
    def __init__(self, dim=8, hidden=16):
        super().__init__()
        self.enc = nn.Linear(dim, dim)
        self.dec = nn.Linear(dim, dim)
        self.dec.weight = self.enc.weight
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    def forward(self, x):
        return self.head(self.dec(self.enc(x).tanh()))
'''


def tied_net():
    namespace = {}
    exec(TIED_NET, namespace)
    return namespace["TiedNet"]()


@pytest.fixture(scope="module")
def tied_runs(tmp_path_factory):
    """The tied network trained at ZeRO-2 and at ZeRO-3, one after the other in one start."""
    tmp = tmp_path_factory.mktemp("tied")
    (tmp / "tied_net.py").write_text(TIED_NET)
    (tmp / "train_tied.py").write_text(TIED_TRAIN)
    runs = [(stage, ["--config-file", TOY / "cfg.py", "--opts", "output_dir", tmp / stage, "trainer.name", "DumpTrainer",
                     "trainer.model.generator.name", "TiedNet", "deepspeed.config", stage, "solver.max_iter", "3"])
            for stage in ("zero2", "zero3")]
    for outcome in run_scenarios(runs, tmp / "start", nproc=1, imports=[tmp / "train_tied.py"], timeout=240).values():
        assert outcome.codes == [0], outcome.stdout[-3000:]
    return {stage: (tmp / stage, torch.load(tmp / stage / "live.pt")) for stage in ("zero2", "zero3")}


@pytest.fixture(scope="module")
def zero2(tied_runs):
    return tied_runs["zero2"]


@pytest.fixture(scope="module")
def zero3(tied_runs):
    return tied_runs["zero3"]


def convert(*args):
    return run_tool("convert_ckpt", *args)


def strict_load(state):
    net = tied_net()
    net.load_state_dict(state, strict=True)
    return net


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_sharded_index_round_trip_and_tied_once(request, stage, tmp_path):
    out, live = request.getfixturevalue(stage)
    assert torch.equal(live["enc.weight"], live["dec.weight"])
    result = convert(out, tmp_path / "export", "--max-shard-size", "600")
    assert result.returncode == 0, result.stdout[-3000:]
    index = json.loads((tmp_path / "export" / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in (tmp_path / "export").glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert sorted(set(index["weight_map"].values())) == shards
    assert index["metadata"]["tied"] == {"dec.weight": "enc.weight"}
    assert "dec.weight" not in index["weight_map"] and "enc.weight" in index["weight_map"]  # tied: once
    on_disk = {}
    for shard in shards:
        on_disk.update(load_file(str(tmp_path / "export" / shard)))
        assert sum(t.numel() * t.element_size() for t in load_file(str(tmp_path / "export" / shard)).values()) <= 600
    assert sorted(on_disk) == sorted(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in on_disk.values())
    state = read_exported(str(tmp_path / "export" / "model.safetensors.index.json"))
    net = strict_load(state)
    assert net.dec.weight is net.enc.weight
    assert all(torch.equal(state[k], live[k]) for k in live)


@pytest.mark.timeout(300)
def test_dtype_and_format(zero2, tmp_path):
    out, live = zero2
    result = convert(out, tmp_path / "g.pt", "--dtype", "bf16", "--network", "generator")
    assert result.returncode == 0, result.stdout[-3000:]
    saved = torch.load(tmp_path / "g.pt", weights_only=True)
    assert saved["meta"]["dtype"] == "bf16" and json.loads(saved["meta"]["tied"]) == {"dec.weight": "enc.weight"}
    assert all(v.dtype == torch.bfloat16 for v in saved["state_dict"].values())
    state = read_exported(str(tmp_path / "g.pt"))
    strict_load(state)
    assert all(torch.equal(state[k], live[k].to(torch.bfloat16)) for k in live)

    result = convert(out, "--out", tmp_path / "g16.safetensors", "--dtype", "fp16", "--format", "safetensors")
    assert result.returncode == 0, result.stdout[-3000:]
    with safe_open(str(tmp_path / "g16.safetensors"), framework="pt") as f:
        assert f.metadata()["dtype"] == "fp16" and sorted(f.keys()) == sorted(set(live) - {"dec.weight"})
    state = read_exported(str(tmp_path / "g16.safetensors"))
    assert all(state[k].dtype == torch.float16 and torch.equal(state[k], live[k].half()) for k in live)

    result = convert(out, tmp_path / "g.pt", "--format", "safetensors")
    assert result.returncode == 2 and "--format is safetensors" in result.stdout
    result = convert(out, tmp_path / "x.safetensors", "--max-shard-size", "lots")
    assert result.returncode == 2 and "--max-shard-size 'lots'" in result.stdout


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size("600") == 600
    assert parse_size("1.5MB") == 1_500_000
