"""The config reference in docs/config.md is generated, complete, and true to what the code does.

Sync alone is not enough: a row can match its generator and still call a working feature
missing. So every documented example of the reference is loaded here through the config
check and the run plan (what ``engine plan`` does, in-process, no process group) and must
have exactly the effect the reference prints beside it, or be refused with the words shown.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from engine.config import get_cfg
from engine.config.defaults import DEEPSPEED_PASSTHROUGH_KEYS, DEFAULTS
from engine.config.node import to_plain
from engine.config.reference import (
    DEEPSPEED_KEY_NOTES,
    END_MARKER,
    FIELD_NOTES,
    NO_EFFECT,
    OPEN_NOTES,
    REFERENCE_PAGE,
    START_MARKER,
    render_reference,
)
from engine.config.reference_examples import EXAMPLES, PROJECT_BASE, Example
from engine.config.schema import Section
from engine.errors import ConfigError
from engine.runplan.ds_config import deepspeed_side, welcome_ds_file
from engine.runplan.ds_schema import check_ds_config
from engine.runplan.plan import build_run_plan

REPO = Path(__file__).resolve().parents[2]
STALE = f"{REFERENCE_PAGE} is stale: run `python -m engine.config.reference --update {REFERENCE_PAGE}`"
ALL_EXAMPLES = [example for examples in EXAMPLES.values() for example in examples]


def test_reference_block_is_the_generated_reference():
    page = (REPO / REFERENCE_PAGE).read_text(encoding="utf-8")
    assert page.count(START_MARKER) == 1 and page.count(END_MARKER) == 1
    assert page.split(START_MARKER)[1].split(END_MARKER)[0].strip("\n") == render_reference().strip("\n"), STALE


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
    for notes in (OPEN_NOTES, FIELD_NOTES, NO_EFFECT):
        assert set(notes) <= paths, set(notes) - paths
    assert set(DEEPSPEED_KEY_NOTES) <= set(DEEPSPEED_PASSTHROUGH_KEYS)
    shown = {path for example in ALL_EXAMPLES for path in example.shows}
    deepspeed_keys = {f"deepspeed.{key}" for key in DEEPSPEED_PASSTHROUGH_KEYS}
    assert shown <= paths | deepspeed_keys, shown - paths - deepspeed_keys


def _resolve(tree: Any, dotted: str) -> Any:
    """``dotted`` in a plain config/plan tree: keys case-insensitively, list items by index."""
    node = tree
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)]
            continue
        keys = {str(k).lower(): k for k in node}
        assert part.lower() in keys, f"{dotted}: no {part!r} in {sorted(node)}"
        node = node[keys[part.lower()]]
    return node


def run_example(example: Example, folder: Path) -> Dict[str, Any]:
    """Load ``example`` as a user's config file over the project base and plan it, as a run's config check does.

    The checks are the scheduler's before any process starts, less the registry lookups of the
    user's classes (the examples name none that exist): the config, the run plan, and each
    engine's DeepSpeed dict through DeepSpeed's own config classes.
    """
    (folder / "project.py").write_text(PROJECT_BASE, encoding="utf-8")
    path = folder / "example.py"
    path.write_text('_base_ = "project.py"\n' + example.source, encoding="utf-8")
    cfg = welcome_ds_file(get_cfg(str(path)))
    plan = build_run_plan(cfg, rank=0, world_size=example.world_size, device=example.device)
    _, origin = deepspeed_side(cfg)
    for engine in plan.engine_names:
        check_ds_config(plan.ds_config(engine), origin)
    return {"plan": plan.to_json(), "cfg": to_plain(cfg)}


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda e: f"{e.shows[0]}:{e.source.splitlines()[0][:40]}")
def test_documented_example_has_the_documented_effect(example, tmp_path):
    if example.refused:
        with pytest.raises(ConfigError, match=re.escape(example.refused)):
            run_example(example, tmp_path)
        return
    seen = run_example(example, tmp_path)
    for dotted, expected in example.effect:
        assert _resolve(seen, dotted) == expected, dotted


def test_every_section_has_an_example_and_shows_it():
    text = render_reference()
    sections = [""] + [name for name, spec in DEFAULTS.entries.items() if isinstance(spec, Section)] + ["deepspeed keys"]
    assert set(EXAMPLES) == set(sections)
    for example in ALL_EXAMPLES:
        first = example.source.splitlines()[0]
        assert first in text, first
        assert example.refused or example.effect, example  # an example says what it does


def test_every_refusal_the_reference_states_has_a_refused_example():
    """A row that says a value is an error (or must be something) is backed by an example that is refused."""
    claims = {**FIELD_NOTES, **OPEN_NOTES, **{f"deepspeed.{k}": v for k, v in DEEPSPEED_KEY_NOTES.items()}}
    refused = {path for example in ALL_EXAMPLES if example.refused for path in example.shows}
    stating = {path for path, note in claims.items() if re.search(r"\berror\b|\brefused\b|\bmust\b", note)}
    assert stating and stating <= refused, stating - refused


def test_keys_said_to_have_no_effect_are_read_by_nothing():
    """A key the reference calls ineffective is read by no module outside engine/config."""
    sources = [p.read_text(encoding="utf-8") for p in (REPO / "engine").rglob("*.py") if p.parent.name != "config"]
    for path in NO_EFFECT:
        leaf = path.rsplit(".", 1)[-1]
        read = re.compile(rf"\.{leaf.upper()}\b|\[[\"']{leaf}[\"']\]|[\"']{leaf.upper()}[\"']")
        assert not any(read.search(text) for text in sources), f"{path} is read by engine code"


def test_the_reference_calls_nothing_missing_that_exists():
    """'not ... yet' phrases are kept for what the code really lacks; none is left in the reference."""
    assert not re.search(r"\byet\b|not used|does not build|does not set up", render_reference())
