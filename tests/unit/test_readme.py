"""The README stays true to the code: generated reference, set-up commands, configs and claims it shows."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import build_cfg, get_cfg
from engine.config.defaults import DEEPSPEED_PASSTHROUGH_KEYS, DEFAULTS
from engine.config.reference import (
    DEEPSPEED_KEY_NOTES,
    END_MARKER,
    FIELD_NOTES,
    NOT_USED_YET,
    OPEN_NOTES,
    START_MARKER,
    render_reference,
)
from engine.config.schema import Section
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)
COMPLETE = re.compile(r"<!-- complete-config(?: dir=(\S+))? -->\n```(\w+)\n(.*?)^```", re.S | re.M)
STALE = "README.md is stale: run `python -m engine.config.reference --update README.md`"


def reference_block() -> str:
    assert README.count(START_MARKER) == 1 and README.count(END_MARKER) == 1
    return README.split(START_MARKER)[1].split(END_MARKER)[0]


def test_reference_block_is_the_generated_reference():
    assert reference_block().strip("\n") == render_reference().strip("\n"), STALE


def test_reference_cli_prints_the_same_text():
    out = subprocess.run([sys.executable, "-m", "engine.config.reference"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out == render_reference()


def test_reference_documents_every_framework_key():
    text = render_reference()
    for path, spec in DEFAULTS.walk():
        if not (isinstance(spec, Section) and not spec.doc):  # plain groupings have no row of their own
            assert f"| `{path}` |" in text, path
    for key in DEEPSPEED_PASSTHROUGH_KEYS:
        assert f"`{key}`" in text, key


def test_reference_notes_name_real_keys():
    paths = {path for path, _ in DEFAULTS.walk()}
    for notes in (OPEN_NOTES, FIELD_NOTES, NOT_USED_YET):
        assert set(notes) <= paths, set(notes) - paths
    assert set(DEEPSPEED_KEY_NOTES) <= set(DEEPSPEED_PASSTHROUGH_KEYS)


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


def test_every_python_snippet_parses():
    blocks = [body for lang, body in FENCE.findall(README) if lang == "python"]
    assert len(blocks) >= 5
    for body in blocks:
        ast.parse(body)


def test_complete_config_snippets_load(tmp_path):
    snippets = COMPLETE.findall(README)
    assert any(lang == "python" for _, lang, _ in snippets)
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


def test_every_command_line_flag_is_documented():
    from engine.schedule.args import build_parser

    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help", "--local_rank"):
                assert f"`{flag}" in README, flag


def test_every_registered_loss_is_listed():
    import engine.loss  # noqa: F401  (registers the losses)
    from engine.loss.build import LOSS_ARCH_REGISTRY

    section = README.split("## Losses")[1].split("\n## ")[0]
    for name in LOSS_ARCH_REGISTRY.names():
        assert f"`{name}`" in section, name


def test_bundled_templates_are_the_ones_named():
    named = {"zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload", "bf16"}
    assert {p.stem for p in (REPO / "ds_configs").glob("*.json")} == named
    for name in named:
        assert f"`{name}`" in README


# ---- the DeepSpeed rules the README states ---------------------------------------------------------

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
