"""Real 2-process runs (gloo on CPU) under torchrun and the deepspeed launcher, ZeRO 0-3.

Each launcher starts its 2 ranks once and trains its ZeRO stages one after another in that start
(tests/assets/scenarios.py): what a case asserts is its own run's records, config and log.
"""

import json

import pytest

from tests.helpers import TOY, read_records, run_scenarios

CASES = [("torchrun", 0), ("torchrun", 1), ("torchrun", 2), ("torchrun", 3), ("deepspeed", 2), ("deepspeed", 3)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(launcher, stage) → the output dir of its training; one start per launcher."""
    root = tmp_path_factory.mktemp("launchers")
    outs = {}
    for launcher in dict.fromkeys(l for l, _ in CASES):
        runs = [(f"zero{stage}", ["--config-file", TOY / "cfg.py", "--opts", "output_dir", root / f"{launcher}-zero{stage}",
                                  "deepspeed.config", f"zero{stage}"]) for l, stage in CASES if l == launcher]
        outcomes = run_scenarios(runs, root / f"{launcher}-start", imports=[TOY / "toy.py"], launcher=launcher,
                                 timeout=400)
        for name, outcome in outcomes.items():
            assert outcome.codes == [0, 0], (launcher, name, outcome.stdout[-4000:])
        outs.update({(launcher, int(name[len("zero"):])): root / f"{launcher}-{name}" for name in outcomes})
    return outs


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("launcher,stage", CASES, ids=[f"{l}-zero{s}" for l, s in CASES])
def test_two_process_training(trained, launcher, stage):
    out = trained[(launcher, stage)]

    records = read_records(out, 2)
    assert all(r["world_size"] == 2 for r in records)
    # ranks see disjoint data: 40 steps × 8 samples each, drawn from disjoint halves of each epoch
    seen = [r["seen"] for r in records]
    assert len(seen[0]) == len(seen[1]) == 40 * 8
    per_epoch = 256 // 2
    for epoch in range(len(seen[0]) // per_epoch):
        chunk = [set(s[epoch * per_epoch:(epoch + 1) * per_epoch]) for s in seen]
        assert not chunk[0] & chunk[1], f"epoch {epoch}: ranks shared samples"
        assert len(chunk[0] | chunk[1]) == 256
    # training works: the loss falls; both ranks took the same number of steps
    for r in records:
        assert len(r["losses"]) == 40
        assert sum(r["losses"][-5:]) < 0.5 * sum(r["losses"][:5])

    ds = json.loads((out / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["train_batch_size"] == 16
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["lr"] == 3e-2
    log = (out / "train.log").read_text()
    assert "world size 2" in log and f"ZeRO stage {stage}" in log
