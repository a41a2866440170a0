"""Resume exactness with real processes: N steps straight == N/2, stop, ``--resume``, the rest.

The network adds dropout (torch RNG) and the loss python/numpy noise, so every RNG stream this
rank restores shows up in the compared losses and weights. The noise is a constant to backward
(the weights never see it) as large as the loss, so a touchy spike test (``solver.spike``, window
4, z 0.1) flags several steps after the split: the resumed run flags the same ones, with the same
z-scores, only if its window came back with the checkpoint (a fresh one would judge none of its
first 4 steps).
"""

from pathlib import Path

import pytest
import torch

from engine.checkpoint import layout
from engine.sentinel.records import read_bad_batches
from engine.weights import safe_load
from tests.helpers import TOY, read_records, run_scenarios

STEPS = 16
NOISY_TRAIN = f'''
import os, random, sys
import numpy as np
import torch
from torch import nn
sys.path.insert(0, {str(TOY)!r})
import toy
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.schedule.scheduler import BaseScheduler

@BUILD_NETWORK_REGISTRY.register()
class NoisyMLP(nn.Module):
    def __init__(self, dim=8, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(0.2), nn.Linear(hidden, 1))
    def forward(self, x):
        return self.net(x)

@BUILD_MODEL_REGISTRY.register()
class NoisyModel(toy.ToyModel):
    def run_step(self, data, *, epoch=None, **kwargs):
        loss = super().run_step(data, epoch=epoch, **kwargs)
        return loss + random.random() + float(np.random.rand())  # a constant to backward: only the logged loss moves

if __name__ == "__main__":
    BaseScheduler().schedule()
'''
CFG = f'''
_base_ = {str(TOY / "cfg.py")!r}
trainer = dict(model=dict(name="NoisyModel", generator=dict(name="NoisyMLP", dim=8, hidden=16)))
solver = dict(max_iter={STEPS}, checkpoint_period=0, spike=dict(enabled=True, window=4, warmup=4, z=0.1),
              generator=dict(lr_scheduler=dict(enabled=True, type="StepLR", params=dict(step_size=5, gamma=0.7))))
'''


def write_project(tmp: Path):
    (tmp / "train_noisy.py").write_text(NOISY_TRAIN)
    (tmp / "cfg.py").write_text(CFG)
    return tmp / "train_noisy.py", tmp / "cfg.py"


def train_argv(cfg, out, stage, workers, *extra):
    """The training command line of one case: ``--`` flags first, then the case's and ``extra``'s options."""
    return ["--config-file", str(cfg), *[a for a in extra if a.startswith("--")], "--opts", "output_dir", str(out),
            "deepspeed.config", f"zero{stage}", "dataloader.num_workers", str(workers),
            *[a for a in extra if not a.startswith("--")]]


def tensors(obj, prefix=""):
    """Every tensor inside a (nested) checkpoint object, by path."""
    found = {}
    if isinstance(obj, torch.Tensor):
        found[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.update(tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found.update(tensors(v, f"{prefix}/{i}"))
    return found


def engine_tensors(tag_dir: Path):
    out = {}
    for f in sorted((tag_dir / "generator").glob("*.pt")):
        out.update(tensors(safe_load.load(str(f)), f.name))
    return out


def zero3_padding_mask(weights, world_size, key):
    """True where a ZeRO-3 flat fp32 shard of rank r holds a real element (each parameter is split alone)."""
    if not key.startswith("zero_pp_rank_"):
        return None
    rank = int(key.split("_")[3])
    mask = []
    for tensor in weights.values():
        n = tensor.numel()
        per = -(-n // world_size)
        real = max(0, min(per, n - rank * per))
        mask += [True] * real + [False] * (per - real)
    return torch.tensor(mask, dtype=torch.bool)


CASES = [(2, 0, 0), (2, 1, 0), (2, 2, 2), (2, 3, 0), (1, 2, 0)]
IDS = [f"ws{n}-zero{s}-workers{w}" for n, s, w in CASES]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Every case trained straight, trained to the middle and resumed in a new start.

    A stopped run ends its process (``solver.stop_at_iter`` acts as a kill), so each case
    stops in a start of its own, the first one after all the straight runs of its world
    size; the resumes of a world size share one more start, which reads only what the
    stopped ones wrote. Returns case id → (straight dir, split dir, the resume's console output).
    """
    tmp = tmp_path_factory.mktemp("resume")
    script, cfg = write_project(tmp)
    dirs, logs = {}, {}
    for nproc in sorted({n for n, _, _ in CASES}):
        cases = [(i, s, w) for i, (n, s, w) in zip(IDS, CASES) if n == nproc]
        dirs.update({i: (tmp / i / "straight", tmp / i / "split") for i, _, _ in cases})
        straight = [(f"{i}-straight", train_argv(cfg, dirs[i][0], s, w)) for i, s, w in cases]
        for k, (i, s, w) in enumerate(cases):
            runs = (straight if k == 0 else []) + [
                (f"{i}-split", train_argv(cfg, dirs[i][1], s, w, "solver.stop_at_iter", str(STEPS // 2)))]
            for outcome in run_scenarios(runs, tmp / f"{i}-first", nproc=nproc, imports=[script]).values():
                assert outcome.codes == [0] * nproc, outcome.stdout[-4000:]
            assert layout.complete_tags(str(dirs[i][1] / "checkpoints")) == [layout.tag_name(STEPS // 2)]
        then = [(i, train_argv(cfg, dirs[i][1], s, w, "--resume")) for i, s, w in cases]
        for name, outcome in run_scenarios(then, tmp / f"then{nproc}", nproc=nproc, imports=[script]).items():
            assert outcome.codes == [0] * nproc, outcome.stdout[-4000:]
            logs[name] = outcome.stdout
    return {i: (*dirs[i], logs[i]) for i in IDS}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("nproc,stage,workers", CASES, ids=IDS)
def test_resume_is_exact(resumed, request, nproc, stage, workers):
    straight, split, log = resumed[request.node.callspec.id]
    assert f"resumed from {split / 'checkpoints' / layout.tag_name(STEPS // 2)} at step {STEPS // 2}" in log
    final = layout.tag_name(STEPS)
    a, b = engine_tensors(straight / "checkpoints" / final), engine_tensors(split / "checkpoints" / final)
    assert a.keys() == b.keys() and len(a) > 0
    wa = wb = {}
    if stage > 0:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        wa = get_fp32_state_dict_from_zero_checkpoint(str(straight / "checkpoints" / final), tag="generator")
        wb = get_fp32_state_dict_from_zero_checkpoint(str(split / "checkpoints" / final), tag="generator")
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for key in a:
        x, y = a[key], b[key]
        mask = zero3_padding_mask(wa, nproc, key) if stage == 3 else None
        if mask is not None and x.dim() == 1 and len(x) == len(mask):
            x, y = x[mask], y[mask]  # ZeRO-3 pads each parameter's shard with uninitialised memory
        assert torch.equal(x, y), key
    after_split = [[{k: v for k, v in r.items() if k != "checkpoint"} for r in read_bad_batches(str(d / "bad_batches.jsonl"))
                    if r["step"] > STEPS // 2] for d in (straight, split)]
    assert after_split[0] == after_split[1] and len(after_split[0]) > 0
    for whole, second in zip(read_records(straight, nproc), read_records(split, nproc)):
        assert second["losses"] == whole["losses"][STEPS // 2:]
        assert second["seen"] == whole["seen"][len(whole["seen"]) // 2:]
        assert second["lr"] == whole["lr"]
