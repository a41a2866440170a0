"""``engine plan CONFIG``: the run plan before launch, without distributed or the real model.

The report and error cases call ``engine.plan.main`` in this process (a start costs seconds of
imports this process has paid); the GPT-2 case runs ``python -m engine.plan`` as a user would,
with a training script's path as ``--import``, so the command line stays covered end to end.
"""

import json
import resource
import subprocess
import sys

import pytest

from engine import plan as engine_plan_module
from engine.config import build_cfg
from engine.config.loader import merge
from engine.runplan.memory import NetworkSize, model_state_memory
from engine.runplan.plan import build_run_plan
from tests.helpers import REPO, TOY, run_cli, run_main
from tests.unit.test_config import MINIMAL

GPT = REPO / "examples" / "gpt"
GPT2_SMALL = ("trainer.model.generator.vocab", "50257", "trainer.model.generator.width", "768",
              "trainer.model.generator.depth", "12", "trainer.model.generator.heads", "12",
              "trainer.model.generator.block", "1024")


sys.path.insert(0, str(TOY))
import toy  # noqa: E402,F401  (registers the toy classes once; ``--import toy`` then finds it imported)


def engine_plan(*args):
    return run_main(engine_plan_module.main, "engine plan", *args)


@pytest.fixture(scope="module")
def toy_plan():
    result = engine_plan(TOY / "cfg.py", "--import", "toy", "--world-size", "4", "--nodes", "2", "--json",
                         "--opts", "solver.gradient_accumulation_batch", "2", "solver.ema.enabled", "True")
    assert result.returncode == 0, result.stdout[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_json_shows_layout_batch_memory_and_provenance(toy_plan):
    plan = toy_plan["plan"]
    assert plan["layout"]["world_size"] == 4 and plan["layout"]["nodes"] == 2
    assert (plan["batch"]["micro_batch"], plan["batch"]["accumulation"], plan["batch"]["global_batch"]) == (4, 2, 32)
    assert plan["engines"]["generator"]["train_batch_size"] == 32
    net = toy_plan["networks"]["generator"]
    assert net["params"] == 8 * 16 + 16 + 16 + 1  # ToyMLP(dim=8, hidden=16), counted on the meta device
    mem = toy_plan["memory_per_rank"]["generator"]
    assert mem["ema"] == 4 * net["params"] and mem["device_total"] > mem["params"] > 0  # fp32 EMA, ZeRO-2: whole
    config = toy_plan["config"]
    assert config["solver.gradient_accumulation_batch"] == {"value": 2, "source": "--opts"}
    assert config["solver.train_per_batch"]["source"] == "file tests/assets/toy/cfg.py"
    assert config["solver.val_per_batch"]["source"] == "default"


def test_text_report_names_each_part():
    result = engine_plan(TOY / "cfg.py", "--import", "toy", "--world-size", "2")
    assert result.returncode == 0, result.stdout[-3000:]
    for part in ("parallel layout", "batch arithmetic", "model-state memory per rank", "DeepSpeed config of generator",
                 "resolved config (source)", "[default]", "[file tests/assets/toy/cfg.py]"):
        assert part in result.stdout, part


def test_a_bad_config_exits_2_with_one_message_and_no_traceback():
    result = engine_plan(TOY / "cfg.py", "--world-size", "3", "--opts", "deepspeed.pipeline", "{'stages': 2}",
                         "deepspeed.config", "zero1")
    assert result.returncode == 2, result.stdout[-2000:]
    assert "engine plan: error: deepspeed.pipeline.stages" in result.stdout and "world size 3" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.slow
def test_gpt2_small_at_world_size_64_plans_in_under_10_cpu_seconds():
    """Measured as the child's CPU time: wall time on a shared 2-core machine says more about the neighbours."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "engine.plan", str(GPT / "configs" / "zero2.py"), "--import",
                             str(GPT / "train.py"), "--world-size", "64", "--json", "--opts", *GPT2_SMALL],
                            cwd=str(REPO), capture_output=True, text=True, timeout=180)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr[-3000:]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(result.stdout)
    assert 120e6 < report["networks"]["generator"]["params"] < 170e6  # GPT-2 small, untied output layer
    assert report["plan"]["layout"]["data_parallel_size"] == 64
    assert cpu < 10, f"engine plan took {cpu:.1f} s of CPU"


def planned_bytes(stage: int, dtype: str, psi: int, largest: int) -> int:
    """engine plan's device figure for the benchmark's run: Adam, ZeRO ``stage``, 2 ranks."""
    override = {"deepspeed": {"config": f"zero{stage}", "bf16": {"enabled": dtype == "bf16"}},
                "solver": {"generator": {"optimizer": {"type": "Adam", "params": {"lr": 1e-4}}}}}
    plan = build_run_plan(build_cfg(merge(MINIMAL, override)), rank=0, world_size=2, device="cpu")
    memory = model_state_memory(plan, "generator", NetworkSize(psi, largest), {"type": "Adam"})
    return memory.device_total


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_memory_figure_is_within_10_percent_of_the_measured_bytes_per_rank():
    """fp32 here (stages 0-3 in one 2-rank start); bf16 agrees as closely (docs/plan.md, the benchmark's docstring)."""
    result = run_cli([sys.executable, str(REPO / "benchmarks" / "zero_memory.py"), "--params-m", "8", "--nproc", "2",
                      "--dtypes", "fp32", "--json"], timeout=800)
    assert result.returncode == 0, result.stdout[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert {(r["stage"], r["dtype"]) for r in rows} == {(s, "fp32") for s in range(4)}
    for row in rows:
        measured = row["params"] + row["grads"] + row["optim"]
        planned = planned_bytes(row["stage"], row["dtype"], row["psi"], 1024 * 1024 + 1024)
        assert abs(planned - measured) / measured < 0.10, (row, planned)
