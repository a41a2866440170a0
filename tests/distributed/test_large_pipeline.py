"""Pipeline parallel on 2 ranks (2 stages) against a 1-process run without pipeline.

The same network, data and seed: the pipelined run's losses must equal the plain run's
(first step within float rounding), fall, survive stop + resume exactly, and the layer
files of its checkpoint must load with ``strict=True`` into the plain network.

The straight pipelined run and the run stopped at step 5 share one 2-rank start (the stop
ends it); the resume reads files in a start of its own.
"""

import pytest
import torch

from engine.model.pipeline import layer_key_map, pipeline_state_dict
from engine.weights.exported import read_exported
from tests.distributed.test_large_zero3 import run_large, run_large_together
from tests.distributed.test_plan_ds_config import REPORT_HOOK, assert_ds_config_is_what_ran
from tests.helpers import read_records, run_tool

COMMON = ("solver.gradient_accumulation_batch", "2", "solver.max_iter", "10")
PIPE = ("deepspeed.pipeline", "{'stages': 2, 'partition_method': 'uniform', 'micro_batches': 2}")


@pytest.mark.slow
def test_pipeline_matches_plain_run_resumes_and_exports(tmp_path):
    import large

    plain = run_large(tmp_path / "plain", *COMMON, "deepspeed.config", "zero0", nproc=1)[0]["losses"]
    # ZeRO-1: stop at step 5 (checkpoint), resumed to 10 below; the losses continue as the straight run's
    out = run_large_together(tmp_path, {
        "pipe0": (*COMMON, *PIPE, "deepspeed.config", "zero0", *REPORT_HOOK,
                  "dataloader.val_data_set", "{'name': 'LargeRegression', 'size': 20}", "solver.eval_period", "5"),
        "pipe1": (*COMMON, *PIPE, "deepspeed.config", "zero1", "solver.stop_at_iter", "5"),
    })["pipe1"]
    piped = read_records(tmp_path / "pipe0", 2)
    assert_ds_config_is_what_ran(tmp_path / "pipe0", engines=["generator"])
    assert piped[0]["losses"] == piped[1]["losses"]  # every stage reports the last stage's loss
    assert piped[0]["losses"][0] == pytest.approx(plain[0], rel=1e-6)
    assert piped[0]["losses"] == pytest.approx(plain, rel=1e-4, abs=1e-6)
    assert sum(plain[-3:]) < sum(plain[:3]) / 2, plain
    log = (tmp_path / "pipe0" / "train.log").read_text()
    assert "eval at step 10: val/loss" in log

    resumed = run_large(out, *COMMON, *PIPE, "deepspeed.config", "zero1", "--resume")
    assert resumed[0]["losses"] == pytest.approx(piped[0]["losses"][5:], rel=1e-5, abs=1e-7)

    network = large.DeepMLP(dim=8, hidden=32, depth=4)
    state = pipeline_state_dict(str(out / "checkpoints" / "iter_0000010" / "generator"), layer_key_map(network))
    network.load_state_dict(state, strict=True)
    assert not torch.equal(state["head.weight"], large.DeepMLP(dim=8, hidden=32, depth=4).head.weight)

    # the export tool needs no network: the tag's marker records the pipeline's key map
    exported = tmp_path / "pipe.safetensors"
    result = run_tool("convert_ckpt", out, exported)
    assert result.returncode == 0, result.stdout[-3000:]
    fresh = large.DeepMLP(dim=8, hidden=32, depth=4)
    fresh.load_state_dict(read_exported(str(exported)), strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_pipeline_config_checks_and_data_layout():
    from engine.config import get_cfg
    from engine.errors import ConfigError
    from engine.runplan.plan import build_run_plan
    from tests.distributed.test_large_zero3 import LARGE

    def plans(*opts, world_size=4):
        cfg = get_cfg(str(LARGE / "cfg.py"), opts=["deepspeed.config", "zero1", *opts])
        return [build_run_plan(cfg, rank=r, world_size=world_size, device="cpu") for r in range(world_size)]

    def ds(*opts, world_size=4):
        return plans(*opts, world_size=world_size)[0].ds_config()

    pipe = plans("deepspeed.pipeline", "{'stages': 2}")
    assert pipe[0].ds_config()["train_batch_size"] == pipe[0].batch.global_batch == 16  # 2 replicas × 8
    # stage-major: ranks 0,1 are stage 0 of replicas 0,1; ranks 2,3 their stage 1
    assert [(p.layout.data_parallel_rank, p.layout.data_parallel_size, p.layout.pipeline_stage) for p in pipe] == \
        [(0, 2, 0), (1, 2, 0), (0, 2, 1), (1, 2, 1)]
    tp = plans("deepspeed.tensor_parallel", "{'autotp_size': 2}")
    assert [(p.layout.data_parallel_rank, p.layout.data_parallel_size, p.layout.tensor_parallel_rank) for p in tp] == \
        [(0, 2, 0), (0, 2, 1), (1, 2, 0), (1, 2, 1)]
    assert "train_batch_size" not in tp[0].ds_config() and tp[0].batch.global_batch == 16  # DeepSpeed derives its own
    with pytest.raises(ConfigError, match="micro_batches = 3 conflicts with solver.gradient_accumulation_batch = 1"):
        ds("deepspeed.pipeline", "{'stages': 2, 'micro_batches': 3}")
    with pytest.raises(ConfigError, match="does not divide the world size 3"):
        ds("deepspeed.pipeline", "{'stages': 2}", world_size=3)
    with pytest.raises(ConfigError, match="clip_type = 'value' with deepspeed.pipeline"):
        ds("deepspeed.pipeline", "{'stages': 2}", "solver.generator.clip_gradients",
           "{'enabled': True, 'clip_type': 'value'}")
    with pytest.raises(ConfigError, match="ZeRO 0-1 only"):
        ds("deepspeed.pipeline", "{'stages': 2}", "deepspeed.config", "zero2")
