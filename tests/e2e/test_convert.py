"""tools/convert_ckpt.py round trip: exported weights == the live model's; they load back as trainer.weights."""

import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.checkpoint import layout
from engine.launch import free_port
from tests.helpers import REPO, TOY, launcher_cmd, run_cli



def train(out, stage, *opts):
    cmd = launcher_cmd("torchrun", TOY / "train.py", 2, free_port()) + [
        "--config-file", str(TOY / "cfg.py"), "--opts", "output_dir", str(out), "trainer.name", "DumpTrainer",
        "deepspeed.config", f"zero{stage}", "solver.max_iter", "6", *opts,
    ]
    return run_cli(cmd, timeout=120)


def convert(*args):
    return run_cli([sys.executable, str(REPO / "tools" / "convert_ckpt.py"), *map(str, args)], timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_export_equals_live_and_loads_back(tmp_path, stage):
    out = tmp_path / "run"
    result = train(out, stage)
    assert result.returncode == 0, result.stdout[-3000:]
    exported = tmp_path / "g.safetensors"
    result = convert(out, "--out", exported)
    assert result.returncode == 0, result.stdout[-3000:]
    live, weights = torch.load(out / "live.pt"), load_file(str(exported))
    assert live.keys() == weights.keys()
    assert all(torch.equal(live[k], weights[k]) for k in live)

    if stage == 3:  # pretrained under ZeRO-3, strict, lr 0: the live weights are the file's
        again = tmp_path / "again"
        result = train(again, 3, "trainer.weights", str(exported), "trainer.weights_strict", "True",
                       "solver.max_iter", "1", "solver.generator.optimizer.params.lr", "0.0")
        assert result.returncode == 0, result.stdout[-3000:]
        assert "0 missing, 0 unexpected keys" in result.stdout
        reloaded = torch.load(again / "live.pt")
        assert all(torch.equal(reloaded[k], weights[k]) for k in weights)

        extra = tmp_path / "extra.safetensors"
        save_file(dict(weights, **{"head.weight": torch.zeros(2)}), str(extra))
        result = train(tmp_path / "strict", 3, "trainer.weights", str(extra), "trainer.weights_strict", "True")
        assert result.returncode != 0  # engine exits 2; torchrun reports any failure as 1
        assert "engine: error: trainer.weights:" in result.stdout and "does not match the network" in result.stdout and "head.weight" in result.stdout


@pytest.mark.timeout(60)
def test_refuses_incomplete_and_missing(tmp_path):
    root = tmp_path / "checkpoints"
    (root / layout.tag_name(5) / "generator").mkdir(parents=True)
    result = convert(tmp_path)
    assert result.returncode == 2 and "no complete checkpoint tag" in result.stdout
    result = convert(tmp_path, "--tag", layout.tag_name(5))
    assert result.returncode == 2 and "not a complete checkpoint: no COMPLETE.json" in result.stdout
    result = convert(tmp_path / "nope")
    assert result.returncode == 2 and "no such directory" in result.stdout
    assert not list(tmp_path.glob("*.safetensors"))
