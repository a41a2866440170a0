"""The GAN bundle with real 2-process torchrun runs: one and two discriminators, EMA on.

Each case trains N steps straight, and N/2 + stop + ``--resume`` + the rest; both must give
the same per-step losses and bit-identical engines and EMA state in the final tag. Every
network of the tag then exports with ``tools/convert_ckpt.py`` and loads with ``strict=True``.
"""

import json
from pathlib import Path

import pytest
import torch

from engine.checkpoint import layout
from engine.weights import safe_load
from tests.distributed.test_resume import zero3_padding_mask
from tests.distributed.test_plan_ds_config import REPORT_HOOK, assert_ds_config_is_what_ran
from tests.helpers import REPO, TOY, load_tool, run_cli, run_scenarios

STEPS = 6
NETS = """
class ToyG(nn.Module):
    def __init__(self, z=4, dim=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z, 16), nn.ReLU(), nn.Linear(16, dim))
    def forward(self, z):
        return self.net(z)

class ToyD(nn.Module):
    def __init__(self, dim=8, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
    def forward(self, x):
        return self.net(x)
"""
TRAIN = f'''
import json, os, sys
import torch
from torch import nn
sys.path.insert(0, {str(TOY)!r})
import toy  # registers ToyRegression
from engine import comm
from engine.model.build import BUILD_MODEL_REGISTRY, BUILD_NETWORK_REGISTRY
from engine.model.gan_model import BaseGanModel
from engine.trainer.build import BUILD_TRAINER_REGISTRY
from engine.trainer.trainer import BaseTrainer
from engine.schedule.scheduler import BaseScheduler

{NETS}
BUILD_NETWORK_REGISTRY.register(ToyG)
BUILD_NETWORK_REGISTRY.register(ToyD)

@BUILD_MODEL_REGISTRY.register()
class ToyGan(BaseGanModel):
    def run_step(self, data, *, epoch=None, **kwargs):
        real = data["x"].to(self.device)
        fake = self.g_model(torch.randn(len(real), 4))
        bce = nn.functional.binary_cross_entropy_with_logits
        g_loss = 0.0
        for name in self.d_model:
            real_logit = self.dmodel_forward(real, name=name)
            fake_logit = self.dmodel_forward(fake.detach(), name=name)
            d_loss = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
            self.d_backward_step(d_loss, name=name)
        for name in self.d_model:
            logit = self.dmodel_forward(fake, name=name, for_generator=True)
            g_loss = g_loss + bce(logit, torch.ones_like(logit))
        self.g_backward_step(g_loss)
        return {{"real_score": real_logit.mean()}}

    def generator(self, z):
        return self.g_model(z.to(self.device))

@BUILD_TRAINER_REGISTRY.register()
class GanRecordTrainer(BaseTrainer):
    def before_loop(self):
        self.losses = []
    def iterate_after(self, epoch, loss_dict):
        self.losses.append({{k: float(v) for k, v in sorted(loss_dict.items())}})
    def after_loop(self):
        with open(os.path.join(self.cfg.OUTPUT_DIR, f"gan_rank{{comm.get_rank()}}.json"), "w") as f:
            json.dump({{"losses": self.losses, "lr": self.model.learning_rates()}}, f)

if __name__ == "__main__":
    BaseScheduler().schedule()
'''
BASE = f'''
_base_ = {str(TOY / "cfg.py")!r}
trainer = dict(name="GanRecordTrainer", model=dict(name="ToyGan", generator=dict(_delete_=True, name="ToyG"), ema=dict(enable=True, decay_rate=0.9)))
solver = dict(max_iter={STEPS}, train_per_batch=8, gradient_accumulation_batch=2, checkpoint_period=0,
              generator=dict(optimizer=dict(type="Adam", params=dict(lr=1e-2, betas=(0.5, 0.99)))))
'''
ONE = BASE + '''
trainer["model"]["discriminator"] = dict(name="ToyD", hidden=16)
solver["discriminator"] = dict(optimizer=dict(type="SGD", params=dict(lr=0.05, momentum=0.9)),
                               clip_gradients=dict(enabled=True, clip_type="norm", clip_value=0.5))
'''
TWO = BASE + '''
trainer["model"]["discriminator"] = [dict(name="wide", params=dict(name="ToyD", hidden=32)),
                                     dict(name="narrow", params=dict(name="ToyD", hidden=4))]
solver["discriminator"] = [
    dict(name="narrow", params=dict(optimizer=dict(type="AdamW", params=dict(lr=2e-3)),
                                    clip_gradients=dict(enabled=True, clip_type="value", clip_value=0.05),
                                    lr_scheduler=dict(enabled=True, type="StepLR", params=dict(step_size=2, gamma=0.5)))),
    dict(name="wide", params=dict(optimizer=dict(type="SGD", params=dict(lr=0.02)),
                                  clip_gradients=dict(enabled=True, clip_type="norm", clip_value=1.0))),
]
'''
CASES = {"one-d-zero3": (ONE, "zero3", {"generator": ("ToyG", {}), "discriminator.default": ("ToyD", {"hidden": 16})}),
         "two-d-zero2": (TWO, "zero2", {"generator": ("ToyG", {}), "discriminator.narrow": ("ToyD", {"hidden": 4}),
                                        "discriminator.wide": ("ToyD", {"hidden": 32})})}


def train_argv(cfg, out, stage, *extra):
    return ["--config-file", str(cfg), *[a for a in extra if a.startswith("--")], "--opts", "output_dir", str(out),
            "deepspeed.config", stage, *[a for a in extra if not a.startswith("--")]]


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    """Each case straight, stopped at the middle, and resumed; case → (straight dir, split dir, logs).

    A stop ends its start, so: the straight runs and the first case's stop, the second case's
    stop, then both resumes (a new process reading only the stopped runs' files).
    """
    tmp = tmp_path_factory.mktemp("gan")
    (tmp / "train.py").write_text(TRAIN)
    dirs = {}
    for case, (text, _, _) in CASES.items():
        (tmp / case).mkdir()
        (tmp / case / "cfg.py").write_text(text)
        dirs[case] = (tmp / case / "straight", tmp / case / "split")

    def argv(case, out, *extra):
        return train_argv(tmp / case / "cfg.py", out, CASES[case][1], *extra)

    straight = [(f"{c}-straight", argv(c, dirs[c][0], *REPORT_HOOK)) for c in CASES]
    splits = [[(f"{c}-split", argv(c, dirs[c][1], "solver.stop_at_iter", str(STEPS // 2)))] for c in CASES]
    resumes = [(f"{c}-resume", argv(c, dirs[c][1], "--resume")) for c in CASES]
    logs = {}
    for k, runs in enumerate([straight + splits[0], *splits[1:], resumes]):
        for name, outcome in run_scenarios(runs, tmp / f"start{k}", imports=[tmp / "train.py"], timeout=400).items():
            assert outcome.codes == [0, 0], outcome.stdout[-4000:]
            logs[name] = outcome.stdout
    return {c: (*dirs[c], {kind: logs[f"{c}-{kind}"] for kind in ("straight", "resume")}) for c in CASES}


def tag_tensors(tag_dir: Path):
    """Every tensor of every engine and of each rank's state file (EMA), by file and key path."""
    def walk(obj, prefix):
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{prefix}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from walk(v, f"{prefix}/{i}")
    out = {}
    for f in sorted(tag_dir.rglob("*.pt")):
        state = safe_load.load(str(f))
        if f.name.startswith("trainer_state"):
            state = {"model": state["model"], "trainer": state["trainer"]}  # RNG differs by design (saved later)
        out.update(walk(state, str(f.relative_to(tag_dir))))
    return out


def unpadded(tag_dir: Path, key: str, x: torch.Tensor, y: torch.Tensor):
    """ZeRO-3 pads each parameter's fp32 shard with uninitialised memory: compare real elements only."""
    if "fp32_flat_groups" not in key or x.dim() != 1:
        return x, y
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    engine, rank_file = key.split("/")[:2]
    weights = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir), tag=engine)
    mask = zero3_padding_mask(weights, 2, rank_file)
    return (x[mask], y[mask]) if mask is not None and len(mask) == len(x) else (x, y)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", list(CASES))
def test_gan_trains_saves_one_tag_and_resumes_exactly(gan_runs, tmp_path, case):
    engines = CASES[case][2]
    straight, split, logs = gan_runs[case]
    assert "EMA of the generator" in logs["straight"]
    assert_ds_config_is_what_ran(straight, engines=list(engines))  # one ds_config file per discriminator
    assert f"at step {STEPS // 2}" in logs["resume"]

    final = layout.tag_name(STEPS)
    info = layout.read_marker(str(straight / "checkpoints" / final))
    assert info["engines"] == sorted(engines) and info["ema"] is True
    a, b = tag_tensors(straight / "checkpoints" / final), tag_tensors(split / "checkpoints" / final)
    assert a.keys() == b.keys() and any("ema" in k for k in a)
    different = [k for k in a if not torch.equal(*unpadded(straight / "checkpoints" / final, k, a[k], b[k]))]
    assert different == [], different[:10]
    for r in range(2):
        whole = json.loads((straight / f"gan_rank{r}.json").read_text())
        second = json.loads((split / f"gan_rank{r}.json").read_text())
        assert second["losses"] == whole["losses"][STEPS // 2:] and second["lr"] == whole["lr"]
        assert {"g_loss", "real_score"} <= set(whole["losses"][0])
        assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in whole["losses"])

    # every network exports and loads into a fresh copy with strict=True (in this process: no start-up cost)
    from safetensors.torch import load_file

    convert, nets = load_tool("convert_ckpt"), {}
    exec("from torch import nn\n" + NETS, nets)
    for engine, flags in [(e, []) for e in engines] + [("generator", ["--ema"])]:
        out = tmp_path / f"{engine}{'_ema' if flags else ''}.safetensors"
        assert convert.main([str(straight), "--engine", engine, *flags, "--out", str(out)]) == 0
        cls, kwargs = engines[engine]
        nets[cls](**kwargs).load_state_dict(load_file(str(out)), strict=True)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_gan_digits_example_writes_ema_and_raw_grids(tmp_path):
    out = tmp_path / "gan"
    example = REPO / "examples" / "gan_digits"
    result = run_cli(["python", str(example / "train.py"), "--config-file", str(example / "configs" / "gan_digits.py"),
                      "--opts", "output_dir", str(out), "solver.max_iter", "8", "trainer.log_period", "4"], timeout=150)
    assert result.returncode == 0, result.stdout[-4000:]
    for kind in ("ema", "raw"):
        png = out / f"samples_{kind}_000008.png"
        assert png.is_file() and png.stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.*"))
    assert layout.read_marker(str(out / "checkpoints" / layout.tag_name(8)))["engines"] == ["discriminator.default", "generator"]
