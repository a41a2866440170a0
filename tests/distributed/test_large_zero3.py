"""ZeRO-3 construction with real 2-process torchrun runs of the large test project.

With ``deepspeed.zero_init`` (the default at stage 3) every parameter is already a shard when
the network's constructor returns; ``trainer.weights`` then lands whole (gathered back equal
to the file) and training lowers the loss. With it off, construction is the full model.

The ZeRO-3 trainings of this file and of activation checkpointing share one 2-rank start
(tests/assets/scenarios.py); each reads only its own run's records. ``run_large`` stays for the
files whose runs need a start of their own (a resume, one rank).
"""

import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, free_port, launcher_cmd, read_records, run_cli, run_scenarios

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


def reference_weights():
    """A DeepMLP whose weights differ from any seeded build, so a load shows in the start weights."""
    import large

    reference = large.DeepMLP(dim=8, hidden=32, depth=4)
    with torch.no_grad():
        for i, p in enumerate(reference.parameters()):
            p.mul_(0.5).add_(torch.linspace(-0.01, 0.01, p.numel()).reshape(p.shape) * (1 + 0.1 * i))
    return reference


#: activation checkpointing of DeepSpeed's flavour (torch's has the same gradients in tests/unit)
ACTIVATION_CHECKPOINTING = ("deepspeed.activation_checkpointing", "{'partition_activations': False, 'cpu_checkpointing': False}")


def zero3_runs(tmp: Path) -> dict:
    """Run name → its config overrides; ``tmp`` holds the pretrained file the weights run loads."""
    weights = tmp / "pretrained.pt"
    return {
        "weights": ("trainer.weights", str(weights), "trainer.weights_strict", "True"),
        "no_zero_init": ("deepspeed.zero_init", "False", "solver.max_iter", "2"),
        "init_gathered": ("trainer.model.generator.init_pass", "gathered", "solver.max_iter", "1"),
        "init_whole": ("trainer.model.generator.init_pass", "gathered", "deepspeed.zero_init", "False",
                       "solver.max_iter", "1"),
        "init_lost": ("trainer.model.generator.init_pass", "apply", "solver.max_iter", "1"),
        "plain": ("solver.max_iter", "6"),
        "checkpointed": ("solver.max_iter", "6", *ACTIVATION_CHECKPOINTING),
    }


def run_large_together(tmp: Path, runs: dict, timeout: float = 600) -> dict:
    """Train the large project's ``runs`` (name → config overrides) one after another in one 2-rank start.

    A run that stops early (``solver.stop_at_iter``) ends the process, so it must come last.

    Args:
        tmp: each run's output dir is ``tmp / name``; the start's own files go to ``tmp / "start"``.
        runs: run name → its config overrides, in order.
        timeout: for the whole start, in seconds.

    Returns:
        Run name → its output dir.
    """
    argv = [(name, ["--config-file", LARGE / "cfg.py", "--opts", "output_dir", tmp / name, *opts])
            for name, opts in runs.items()]
    outcomes = run_scenarios(argv, tmp / "start", imports=[LARGE / "large.py"], timeout=timeout,
                             env={"OMP_NUM_THREADS": "1"})
    for name, outcome in outcomes.items():
        assert outcome.codes == [0, 0], (name, outcome.stdout[-4000:])
    return {name: tmp / name for name in runs}


@pytest.fixture(scope="module")
def zero3(tmp_path_factory):
    """Every ZeRO-3 training of this file in one 2-rank start; run name → (output dir, its records)."""
    tmp = tmp_path_factory.mktemp("zero3")
    torch.save(reference_weights().state_dict(), tmp / "pretrained.pt")
    outs = run_large_together(tmp, zero3_runs(tmp))
    return {name: (out, read_records(out, 2)) for name, out in outs.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zero3_init_partitions_at_construction_and_loads_weights(zero3):
    reference = reference_weights()
    for rank, record in enumerate(zero3["weights"][1]):
        for full, local in record["built"]:
            assert local == -(-full // 2), f"rank {rank}: a parameter of {full} elements holds {local} at construction"
        for key, value in reference.state_dict().items():
            assert torch.equal(torch.tensor(record["start_weights"][key]), value), key
        losses = record["losses"]
        assert sum(losses[-3:]) < 0.75 * sum(losses[:3]), losses


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zero3_without_zero_init_builds_the_whole_model(zero3):
    records = zero3["no_zero_init"][1]
    assert all(full == local for full, local in records[0]["built"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zero3_init_keeps_a_whole_network_init_pass_through_apply_gathered(zero3):
    """An init pass that sets a child's weight from its parent is lost under zero.Init with ``self.apply``.

    DeepSpeed's zero.Init gathers only the visited module's own parameters for ``apply``;
    ``apply_gathered`` also gathers its children's, so the weights equal a build without zero.Init.
    """
    def start(name):
        record = zero3[name][1][0]
        return record["built"], {k: torch.tensor(v) for k, v in record["start_weights"].items()}

    built, gathered = start("init_gathered")
    _, whole = start("init_whole")
    _, lost = start("init_lost")
    assert all(local == -(-full // 2) for full, local in built)  # zero.Init was on: each rank built half
    for key, value in whole.items():
        assert torch.equal(gathered[key], value), key
    assert all(torch.all(v == 0) for k, v in whole.items() if k.endswith("bias"))  # the init pass ran
    downs = [k for k in whole if k.endswith("down.weight")]
    assert downs and all(whole[k].std() < 0.015 for k in downs)  # the parent's scaled init (0.01) won
    assert all(lost[k].std() > 0.015 for k in downs)  # with self.apply it went into empty partitions


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_activation_checkpointed_run_matches_plain_run(zero3):
    """Activation checkpointing under ZeRO-3: the same losses as without it.

    ZeRO-3 gathers a block's parameters in module hooks; the recomputation in backward must
    see them gathered again. Equal fp32 losses step by step show the gradients were the same.
    """
    (out, checkpointed), (_, plain) = zero3["checkpointed"], zero3["plain"]
    assert "activation checkpointing (deepspeed): 4 blocks" in (out / "train.log").read_text()
    for rank in range(2):
        assert checkpointed[rank]["losses"] == pytest.approx(plain[rank]["losses"], rel=1e-6, abs=1e-7)
