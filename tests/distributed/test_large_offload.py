"""Offload and precision from the config alone: 2-process runs of the large test project.

Optimizer offload at ZeRO-2, optimizer + parameter offload at ZeRO-3 (built under
zero.Init), and bf16, each with an optimizer that needs no JIT-compiled op: a client
``torch.optim.SGD``, or ``AdamW`` which engine maps to DeepSpeed's ``torch_adam`` route on
CPU (the test checks that torch's AdamW, not DeepSpeedCPUAdam, does the steps).
"""

import json

import pytest

from engine.config import get_cfg
from engine.runplan.ds_config import build_ds_config
from tests.distributed.test_large_zero3 import LARGE
from tests.helpers import read_records, run_scenarios

CASES = {
    "zero2_offload_adamw": (["deepspeed.config", "zero2_offload", "solver.generator.optimizer.type", "AdamW",
                             "solver.generator.optimizer.params", "{'lr': 0.01}"], "torch.optim.adamw.AdamW", "float32"),
    "zero3_offload_sgd": (["deepspeed.config", "zero3_offload"], "torch.optim.sgd.SGD", "float32"),
    "bf16_sgd": (["deepspeed.config", "bf16"], "torch.optim.sgd.SGD", "bfloat16"),
}


@pytest.fixture(scope="module")
def case_runs(tmp_path_factory):
    """Every case trained in one 2-rank start; case → its output dir."""
    tmp = tmp_path_factory.mktemp("offload")
    runs = [(case, ["--config-file", LARGE / "cfg.py", "--opts", "output_dir", tmp / case, *CASES[case][0]])
            for case in sorted(CASES)]
    outcomes = run_scenarios(runs, tmp / "start", imports=[LARGE / "large.py"], timeout=400,
                             env={"OMP_NUM_THREADS": "1"})
    for outcome in outcomes.values():
        assert outcome.codes == [0, 0], outcome.stdout[-4000:]
    return {case: tmp / case for case in CASES}


@pytest.mark.slow
@pytest.mark.timeout(500)
@pytest.mark.parametrize("case", sorted(CASES))
def test_offload_and_precision_train(case_runs, case):
    _, optimizer, dtype = CASES[case]
    records = read_records(case_runs[case], 2)
    ds = json.loads((case_runs[case] / "ds_config.json").read_text())
    if "adamw" in case:
        assert ds["optimizer"]["params"]["torch_adam"] is True
    else:
        assert "optimizer" not in ds and ds.get("zero_force_ds_cpu_optimizer", True) is (case != "zero3_offload_sgd")
    for record in records:
        assert record["optimizer"] == optimizer
        assert record["dtype"] == f"torch.{dtype}"
        losses = record["losses"]
        assert sum(losses[-3:]) < sum(losses[:3]) / 2, losses


def test_nvme_offload_paths_pass_through():
    cfg = get_cfg(str(LARGE / "cfg.py"), opts=[
        "deepspeed.config", "zero3_offload",
        "deepspeed.zero_optimization", "{'offload_param': {'device': 'nvme', 'nvme_path': '/local_nvme'},"
        " 'offload_optimizer': {'device': 'nvme', 'nvme_path': '/local_nvme2'}}"])
    ds = build_ds_config(cfg, world_size=2, device="cpu")
    zero = ds["zero_optimization"]
    assert zero["offload_param"] == {"device": "nvme", "nvme_path": "/local_nvme", "pin_memory": True}
    assert zero["offload_optimizer"]["nvme_path"] == "/local_nvme2" and zero["stage"] == 3
