"""The README and docs/ stay true to the code: set-up commands, configs, flags, names and rules they show.

The generated config reference and its examples are checked by test_config_reference.py.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from engine.config import build_cfg, get_cfg
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in sorted((REPO / "docs").glob("*.md"))}
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
COMPLETE = re.compile(r"<!-- complete-config(?: dir=(\S+))? -->\n```(\w+)\n(.*?)^```", re.S | re.M)


def test_readme_starts_with_a_short_intro_then_the_two_commands():
    first = FENCE.search(README)
    intro = [line for line in README[: first.start()].splitlines() if line.strip()]
    assert 2 <= len(intro) <= 3, intro
    commands = [line.strip() for line in first.group(2).splitlines() if line.strip()]
    assert commands == ["make train", "make test"]


def test_makefile_has_the_two_targets():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^train:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_the_sentence_after_the_commands_names_what_they_make():
    after = README[FENCE.search(README).end():].strip().split("\n\n")[0]
    for named in ("`.venv`", "`output/", "`. .venv/bin/activate`"):
        assert named in after, named
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^VENV \?= \.venv$", makefile, re.M)
    assert re.search(r"^output_dir = \"\./output/", (REPO / "examples/digits/configs/base.py").read_text(), re.M)
    assert "TORCH_SPEC=" in README and re.search(r"^TORCH_SPEC \?=", makefile, re.M)


def test_ci_and_the_cpu_image_run_the_readme_commands():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
    image = (REPO / "docker" / "Dockerfile.cpu").read_text()
    assert re.search(r"^RUN make train$", image, re.M) and re.search(r'^CMD \["make", "test"\]$', image, re.M)


@pytest.mark.parametrize("page", ["README.md"] + [f"docs/{name}" for name in DOCS])
def test_every_python_snippet_parses(page):
    text = (REPO / page).read_text(encoding="utf-8")
    for body in (body for lang, body in FENCE.findall(text) if lang == "python"):
        ast.parse(body)


def test_readme_shows_the_quick_tour_code():
    assert len([body for lang, body in FENCE.findall(README) if lang == "python"]) >= 5


def test_complete_config_snippets_load(tmp_path):
    snippets = COMPLETE.findall(README) + COMPLETE.findall(DOCS["config.md"])
    assert len(snippets) >= 3 and any(lang == "python" for _, lang, _ in snippets)
    for index, (folder, lang, body) in enumerate(snippets):
        where = tmp_path / f"snippet{index}"
        if folder:  # the snippet's _base_ paths are relative to this repository folder
            shutil.copytree(REPO / folder, where)
        else:
            where.mkdir()
        path = where / f"readme_snippet.{'py' if lang == 'python' else 'yaml'}"
        path.write_text(body, encoding="utf-8")
        cfg = get_cfg(str(path))
        assert cfg.TRAINER.MODEL.NAME


@pytest.mark.parametrize("solver", [{"max_iters": 5}, {"max_iter": "five"},
                                    {"train_per_batch": 30, "gradient_accumulation_batch": 4}])
def test_the_validation_errors_shown_are_the_ones_engine_gives(solver):
    with pytest.raises(ConfigError) as caught:
        _cfg(solver=solver)
    assert f"engine: error: {caught.value}\n" in DOCS["config.md"]


def test_every_command_line_flag_is_documented():
    from engine.schedule.args import build_parser

    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help", "--local_rank"):
                assert f"`{flag}" in DOCS["launching.md"], flag


def test_every_registered_loss_is_listed():
    import engine.loss  # noqa: F401  (registers the losses)
    from engine.loss.build import LOSS_ARCH_REGISTRY

    for name in LOSS_ARCH_REGISTRY.names():
        assert f"`{name}`" in DOCS["losses.md"], name


def test_bundled_templates_are_the_ones_named():
    named = {"zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload", "bf16"}
    assert {p.stem for p in (REPO / "ds_configs").glob("*.json")} == named
    for name in named:
        assert f"`{name}`" in DOCS["deepspeed_config.md"]


# ---- the DeepSpeed rules docs/deepspeed_config.md states ---------------------------------------------------------

def _cfg(**sections):
    data = {
        "trainer": {"model": {"name": "M", "generator": {"name": "N"}}},
        "dataloader": {"train_data_set": {"name": "D"}},
    }
    data.update(sections)
    return build_cfg(data)


def _ds(cfg, device="cpu", world_size=1):
    from engine.runplan.ds_config import build_ds_config

    return build_ds_config(cfg, world_size=world_size, device=device)


def test_batch_sizes_are_derived_from_solver():
    ds = _ds(_cfg(solver={"train_per_batch": 32, "gradient_accumulation_batch": 2}), world_size=4)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (16, 2, 128)
    ds = _ds(_cfg(solver={"train_per_batch": 8}, deepspeed={"pipeline": {"stages": 2}}), world_size=4)
    assert ds["train_batch_size"] == 16


@pytest.mark.parametrize("deepspeed,solver,message", [
    ({"train_batch_size": 64}, {}, "deepspeed.train_batch_size"),
    ({"gradient_clipping": 1.0}, {"generator": {"clip_gradients": {"enabled": True, "clip_value": 5.0}}},
     "solver.generator.clip_gradients.clip_value"),
    ({"optimizer": {"type": "SGD"}}, {"generator": {"optimizer": {"type": "AdamW"}}}, "solver.generator.optimizer"),
    ({"scheduler": {"type": "WarmupLR"}}, {"generator": {"lr_scheduler": {"enabled": True, "type": "StepLR"}}},
     "solver.generator.lr_scheduler"),
    ({"fp16": {"enabled": True}}, {}, "deepspeed.fp16"),
    ({"pipeline": {"stages": 2}, "config": "zero2"}, {}, "deepspeed.pipeline"),
])
def test_conflicts_are_errors_naming_the_keys(deepspeed, solver, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _ds(_cfg(deepspeed=deepspeed, solver=solver))


def test_optimizer_rules():
    adam = _ds(_cfg(solver={"generator": {"optimizer": {"type": "Adam", "params": {"lr": 0.1}}}}))
    assert adam["optimizer"] == {"type": "Adam", "params": {"lr": 0.1, "adam_w_mode": False, "torch_adam": True}}
    on_gpu = _ds(_cfg(solver={"generator": {"optimizer": {"type": "AdamW"}}}), device="cuda")
    assert "torch_adam" not in on_gpu["optimizer"]["params"]
    sgd = _ds(_cfg(solver={"generator": {"optimizer": {"type": "SGD"}}}, deepspeed={"config": "zero2"}))
    assert "optimizer" not in sgd and sgd["zero_allow_untested_optimizer"] is True
    offload = _ds(_cfg(solver={"generator": {"optimizer": {"type": "SGD"}}}, deepspeed={"config": "zero2_offload"}))
    assert offload["zero_force_ds_cpu_optimizer"] is False


def test_clipping_by_norm_becomes_gradient_clipping_and_otherwise_it_is_off():
    norm = _ds(_cfg(solver={"generator": {"clip_gradients": {"enabled": True, "clip_value": 3.0}}}))
    assert norm["gradient_clipping"] == 3.0
    value = _ds(_cfg(solver={"generator": {"clip_gradients": {"enabled": True, "clip_type": "value"}}}))
    assert value["gradient_clipping"] == 0.0


def test_seed_spellings_are_readable_both_ways():
    cfg = _cfg(trainer={"model": {"name": "M", "generator": {"name": "N"}, "ema": {"enable": False, "decay_rate": 0.9}},
                        "loss": {"x": []}})
    assert cfg.SOLVER.EMA.ENABLED is False and cfg.TRAINER.MODEL.EMA.ENABLE is False
    assert cfg.SOLVER.EMA.DECAY_RATE == cfg.TRAINER.MODEL.EMA.DECAY_RATE == 0.9
    assert cfg.TRAINER.MODEL.LOSS == cfg.TRAINER.LOSS == {"x": []}
