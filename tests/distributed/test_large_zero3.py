"""ZeRO-3 construction with real 2-process torchrun runs of the large test project.

With ``deepspeed.zero_init`` (the default at stage 3) every parameter is already a shard when
the network's constructor returns; ``trainer.weights`` then lands whole (gathered back equal
to the file) and training lowers the loss. With it off, construction is the full model.
"""

import sys
from pathlib import Path

import pytest
import torch

from engine.launch import free_port
from tests.helpers import REPO, launcher_cmd, read_records, run_cli

LARGE = REPO / "tests" / "assets" / "large"
sys.path.insert(0, str(LARGE))


def run_large(out: Path, *opts: str, nproc: int = 2, timeout: float = 150, records: bool = True) -> list:
    """Train the large project with ``opts`` (``--flags`` and config overrides) on ``nproc`` ranks; the records."""
    launcher = "torchrun" if nproc > 1 else "python"
    cmd = launcher_cmd(launcher, LARGE / "train.py", nproc, free_port()) + [
        "--config-file", str(LARGE / "cfg.py"), *[a for a in opts if a.startswith("--")],
        "--opts", "output_dir", str(out), *[a for a in opts if not a.startswith("--")]]
    result = run_cli(cmd, timeout=timeout, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-4000:]
    return read_records(out, nproc) if records else []


@pytest.mark.slow
def test_zero3_init_partitions_at_construction_and_loads_weights(tmp_path):
    import large

    reference = large.DeepMLP(dim=8, hidden=32, depth=4)
    with torch.no_grad():
        for i, p in enumerate(reference.parameters()):
            p.mul_(0.5).add_(torch.linspace(-0.01, 0.01, p.numel()).reshape(p.shape) * (1 + 0.1 * i))
    weights = tmp_path / "pretrained.pt"
    torch.save(reference.state_dict(), weights)

    records = run_large(tmp_path / "out", "trainer.weights", str(weights), "trainer.weights_strict", "True")
    for rank, record in enumerate(records):
        for full, local in record["built"]:
            assert local == -(-full // 2), f"rank {rank}: a parameter of {full} elements holds {local} at construction"
        for key, value in reference.state_dict().items():
            assert torch.equal(torch.tensor(record["start_weights"][key]), value), key
        losses = record["losses"]
        assert sum(losses[-3:]) < 0.75 * sum(losses[:3]), losses


@pytest.mark.slow
def test_zero3_without_zero_init_builds_the_whole_model(tmp_path):
    records = run_large(tmp_path / "out", "deepspeed.zero_init", "False", "solver.max_iter", "2")
    assert all(full == local for full, local in records[0]["built"])


@pytest.mark.slow
def test_zero3_init_keeps_a_whole_network_init_pass_through_apply_gathered(tmp_path):
    """An init pass that sets a child's weight from its parent is lost under zero.Init with ``self.apply``.

    DeepSpeed's zero.Init gathers only the visited module's own parameters for ``apply``;
    ``apply_gathered`` also gathers its children's, so the weights equal a build without zero.Init.
    """
    def start(name, *opts):
        records = run_large(tmp_path / name, "trainer.model.generator.init_pass", *opts, "solver.max_iter", "1")
        return records[0]["built"], {k: torch.tensor(v) for k, v in records[0]["start_weights"].items()}

    built, gathered = start("gathered", "gathered")
    _, whole = start("whole", "gathered", "deepspeed.zero_init", "False")
    _, lost = start("lost", "apply")
    assert all(local == -(-full // 2) for full, local in built)  # zero.Init was on: each rank built half
    for key, value in whole.items():
        assert torch.equal(gathered[key], value), key
    assert all(torch.all(v == 0) for k, v in whole.items() if k.endswith("bias"))  # the init pass ran
    downs = [k for k in whole if k.endswith("down.weight")]
    assert downs and all(whole[k].std() < 0.015 for k in downs)  # the parent's scaled init (0.01) won
    assert all(lost[k].std() > 0.015 for k in downs)  # with self.apply it went into empty partitions
