"""tools/convert_ckpt.py round trip: exported weights == the live model's; they load back as trainer.weights."""

import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint import layout
from tests.helpers import REPO, TOY, run_cli, run_scenarios, run_tool


def train_argv(out, stage, *opts):
    return ["--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "trainer.name", "DumpTrainer",
            "deepspeed.config", f"zero{stage}", "solver.max_iter", "6", *opts]


def convert(*args):
    """The command line, as a user runs it."""
    return run_cli([sys.executable, str(REPO / "tools" / "convert_ckpt.py"), *map(str, args)], timeout=120)


STAGES = [1, 2, 3]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The toy trained at each stage, one after the other in one 2-rank start; stage → output dir."""
    tmp = tmp_path_factory.mktemp("convert")
    outcomes = run_scenarios([(f"zero{s}", train_argv(tmp / f"zero{s}", s)) for s in STAGES], tmp / "start",
                             imports=[TOY / "toy.py"], timeout=300)
    for outcome in outcomes.values():
        assert outcome.codes == [0, 0], outcome.stdout[-3000:]
    return {s: tmp / f"zero{s}" for s in STAGES}


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("stage", STAGES)
def test_export_equals_live_and_loads_back(runs, tmp_path, stage):
    out = runs[stage]
    exported = tmp_path / "g.safetensors"
    result = run_tool("convert_ckpt", out, "--out", exported)
    assert result.returncode == 0, result.stdout[-3000:]
    live, weights = torch.load(out / "live.pt"), load_file(str(exported))
    assert live.keys() == weights.keys()
    assert all(torch.equal(live[k], weights[k]) for k in live)

    if stage == 3:  # pretrained under ZeRO-3, strict, lr 0: the live weights are the file's
        again, extra = tmp_path / "again", tmp_path / "extra.safetensors"
        save_file(dict(weights, **{"head.weight": torch.zeros(2)}), str(extra))
        outcomes = run_scenarios([
            ("again", train_argv(again, 3, "trainer.weights", str(exported), "trainer.weights_strict", "True",
                                 "solver.max_iter", "1", "solver.generator.optimizer.params.lr", "0.0")),
            ("strict", train_argv(tmp_path / "strict", 3, "trainer.weights", str(extra), "trainer.weights_strict", "True")),
        ], tmp_path / "start", imports=[TOY / "toy.py"], timeout=300)
        result = outcomes["again"]
        assert result.codes == [0, 0], result.stdout[-3000:]
        assert "0 missing, 0 unexpected keys" in result.stdout
        reloaded = torch.load(again / "live.pt")
        assert all(torch.equal(reloaded[k], weights[k]) for k in weights)

        result = outcomes["strict"]
        assert result.codes == [2, 2], result.stdout[-3000:]  # every rank stops with engine's bad-input code
        assert "engine: error: trainer.weights:" in result.stdout and "does not match the network" in result.stdout and "head.weight" in result.stdout


@pytest.mark.timeout(60)
def test_refuses_incomplete_and_missing(tmp_path):
    root = tmp_path / "checkpoints"
    (root / layout.tag_name(5) / "generator").mkdir(parents=True)
    result = convert(tmp_path)
    assert result.returncode == 2 and "no complete checkpoint tag" in result.stdout
    result = run_tool("convert_ckpt", tmp_path, "--tag", layout.tag_name(5))
    assert result.returncode == 2 and "not a complete checkpoint: no COMPLETE.json" in result.stdout
    result = run_tool("convert_ckpt", tmp_path / "nope")
    assert result.returncode == 2 and "no such directory" in result.stdout
    assert not list(tmp_path.glob("*.safetensors"))
