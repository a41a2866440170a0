"""The config reference in Markdown, generated from ``engine.config.defaults.DEFAULTS``.

``python -m engine.config.reference`` prints it; ``docs/config.md`` embeds the same text between
``<!-- config-reference:start -->`` and ``<!-- config-reference:end -->``, and
``python -m engine.config.reference --update docs/config.md`` rewrites that block. A unit test
keeps the two equal, so the documented keys and defaults cannot drift from the code, and runs
each section's examples (``engine.config.reference_examples``) through the config check and the
run plan, so what a row says a key does (or refuses) is what the code does.

Like the rest of ``engine.config`` this imports neither torch nor DeepSpeed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from engine.config.no_effect import NO_EFFECT
from engine.config.defaults import DEEPSPEED_PASSTHROUGH_KEYS, DEFAULTS
from engine.config.reference_examples import EXAMPLES, PROJECT_BASE, Example
from engine.config.schema import Field, Open, Section

#: the page that embeds the generated reference (relative to the repository root)
REFERENCE_PAGE = "docs/config.md"
START_MARKER = "<!-- config-reference:start -->"
END_MARKER = "<!-- config-reference:end -->"

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}

#: Who receives each user-owned (``Open``) section. A section missing here gets the generic note.
OPEN_NOTES: Dict[str, str] = {
    "dataloader.train_data_set": "required; user-owned, passed to your constructor: every key but `name` goes "
                                 "to the dataset class, whose `transformer` list becomes `self.data_pipeline`",
    "dataloader.val_data_set": "user-owned, passed to your constructor (as `train_data_set`)",
    "dataloader.test_data_set": "user-owned, passed to your constructor; the trainer builds it as `test_data_loader` "
                               "(batch `solver.test_per_batch`) for your code to iterate: engine runs no test loop itself",
    "trainer.model.generator": "user-owned, passed to your constructor: every key but `name` goes to the "
                               "network class (or to your model's `create_model(params)`)",
    "trainer.model.discriminator": "user-owned, read by `BaseGanModel`: one dict is the network (named "
                                   "`default`); a list entry's `params` is the network; names must be unique",
    "trainer.model.loss": "user-owned; your model reads it, e.g. `LossKeyCompose(cfg.TRAINER.MODEL.LOSS)`",
    "trainer.model.ema": "an alias, not user-owned: folded into `solver.ema` and checked there (`enable` means "
                         "`enabled`); a value that differs from `solver.ema` is an error; after loading both "
                         "places hold the same values",
    "trainer.loss": "an alias: folded into `trainer.model.loss` (a differing value there is an error); after "
                    "loading both hold the same value",
    "solver.generator.optimizer.params": "user-owned, passed to the optimizer's constructor",
    "solver.generator.lr_scheduler.params": "user-owned, passed to the scheduler's constructor",
    "solver.discriminator": "each dict is checked like `solver.generator` (defaults filled in); one dict serves "
                            "every discriminator, a list needs exactly one entry per discriminator name",
}

#: Further facts about a framework key that its one-line doc leaves out.
FIELD_NOTES: Dict[str, str] = {
    "trainer.model.name": "a config without it is an error",
    "solver.gradient_accumulation_batch": "`train_per_batch` must be divisible by it",
    "solver.generator.optimizer.type": "DeepSpeed's own types are built by DeepSpeed (see below), others by engine "
                                       "from torch.optim",
    "solver.generator.clip_gradients.norm_type": "any other value with `clip_type='norm'` is an error",
    "trainer.weights": "None (TrainFramework's default) reads as ''",
    "solver.ema.num_updates": "None (TrainFramework's default) reads as -1",
    "solver.spike.warmup": "a warmup above `solver.spike.window` is an error",
    "solver.spike.z": "must be above 0; the test is one-sided (a drop of the loss is never a spike)",
    "solver.test_per_batch": "the batch of the trainer's `test_data_loader` (`dataloader.test_data_set`, else the "
                             "validation set); engine runs no test loop itself",
    "deepspeed.config": "a path is looked up from the working directory, not from the config file's folder; "
                        "when no file is there, its base name is looked up among the bundled templates",
}


#: What engine does with some of the DeepSpeed keys it passes through (ds_config.py).
DEEPSPEED_KEY_NOTES: Dict[str, str] = {
    "train_batch_size": "derived (`train_per_batch` × data-parallel size); a different number is an error; "
                        "`\"auto\"` is filled",
    "train_micro_batch_size_per_gpu": "taken into `solver.train_per_batch` (× accumulation) when the user did not "
                                      "write that; otherwise derived from it, and a different value is an error",
    "gradient_accumulation_steps": "taken into `solver.gradient_accumulation_batch` when the user did not write that; "
                                   "otherwise derived from it, and a different value is an error",
    "gradient_clipping": "taken into `solver.generator.clip_gradients` when the user did not write that; otherwise "
                         "derived from it, and a different value is an error",
    "optimizer": "taken into `solver.generator.optimizer` when the user did not write that (`\"auto\"` params from "
                 "the solver); a different written optimizer is an error naming both",
    "scheduler": "an error while `solver.generator.lr_scheduler.enabled` is true; otherwise DeepSpeed builds it "
                 "(`\"auto\"` warm-up and length params filled from the solver); checked against its class up front",
    "fp16": "refused on CPU (works on CUDA); `fp16` and `bf16` both enabled is an error",
    "pipeline": "pipeline parallel: `stages` ranks hold one replica (the network's "
                "`to_layers()`, docs/large_models.md), so the data-parallel size is the world size / `stages`; "
                "`stages` must divide the world size; refused with ZeRO stage 2 or 3, with tensor_parallel, and "
                "with `clip_type='value'`; `micro_batches`, if given, must equal `solver.gradient_accumulation_batch`",
    "tensor_parallel": "tensor parallel through DeepSpeed's AutoTP: `autotp_size` ranks hold one replica "
                       "(docs/large_models.md), so the data-parallel size is the world size / `autotp_size`, "
                       "which it must divide; "
                       "the network's `autotp_layer_specs` become `partition_config` when the config gives none, "
                       "and `train_batch_size` is left for DeepSpeed to derive",
    "zero_optimization": "merged key by key over the template's; `stage` must be 0-3",
    "zero_allow_untested_optimizer": "engine sets it to true for a torch.optim optimizer at ZeRO stage ≥ 1 unless given",
    "zero_force_ds_cpu_optimizer": "engine sets it to false for a torch.optim optimizer with optimizer offload unless given",
}


def render_reference() -> str:
    """The Markdown config reference: one table per top-level section, then the DeepSpeed keys."""
    lines: List[str] = [
        "Generated from `engine/config/defaults.py` (examples: `engine/config/reference_examples.py`) by "
        "`python -m engine.config.reference`. "
        "Files spell keys in lowercase; code reads them upper-case (`cfg.SOLVER.MAX_ITER`). "
        "Any key not listed is an error, except inside **user-owned** sections, whose keys pass "
        "through to your own classes, and in `dataloader`, `trainer` and `trainer.model`, which also "
        "accept keys of your own (see below).",
        "",
        "Each section ends with examples: a fragment of a config file and what it does, as `engine plan "
        "--json` shows it (`plan.…`: the run plan, also written to `output_dir/plan.json`; `cfg.…`: the "
        "resolved config, `output_dir/config.yaml`) or the error the config check gives. Each fragment is "
        "merged over this project (its `_base_`); `tests/unit/test_config_reference.py` runs every one.",
        "",
        "```python",
        *PROJECT_BASE.rstrip("\n").splitlines(),
        "```",
        "",
    ]
    top_rows = [(path, spec) for path, spec in DEFAULTS.walk() if "." not in path and not isinstance(spec, Section)]
    lines += _table("Top level", top_rows) + _examples(EXAMPLES[""])
    for name, spec in DEFAULTS.entries.items():
        if isinstance(spec, Section):
            rows = [(path, item) for path, item in spec.walk(name)]
            lines += _table(f"`{name}`", rows, doc=" ".join(filter(None, [spec.doc, _accepts_user_keys_note(name, spec)])))
            lines += _examples(EXAMPLES[name])
    lines += _deepspeed_keys() + _examples(EXAMPLES["deepspeed keys"])
    return "\n".join(lines).rstrip("\n") + "\n"


def _examples(examples: Tuple[Example, ...]) -> List[str]:
    """The section's examples: the rows each shows, its fragment in a code block, then its effect or refusal."""
    out = ["Examples:", ""]
    for example in examples:
        heading = ", ".join(f"`{path}`" for path in example.shows)
        heading += f", world size {example.world_size}" if example.world_size > 1 else ""
        heading += ", on CUDA" if example.device == "cuda" else ""
        out += [f"{heading}:", "", "```python", *example.source.rstrip("\n").splitlines(), "```", ""]
        if example.refused:
            out += [f"→ refused at config check; the error says `{example.refused}`", ""]
        else:
            out += ["→ " + ", ".join(f"`{path}` = `{value!r}`" for path, value in example.effect), ""]
    return out


def _table(title: str, rows: List[Tuple[str, Any]], doc: str = "") -> List[str]:
    out = [f"### {title}", ""]
    if doc:
        out += [_escape(doc), ""]
    out += ["| key | default | type | meaning |", "|---|---|---|---|"]
    for path, spec in rows:
        if isinstance(spec, Section) and not spec.doc:
            continue  # a plain grouping: its keys follow with their full paths
        out.append(f"| `{path}` | {_default(spec)} | {_type(spec)} | {_meaning(path, spec)} |")
    return out + [""]


def _accepts_user_keys_note(name: str, spec: Section) -> str:
    """What a section with ``accepts_user_keys`` (or one nested in it) does with keys it does not declare."""
    open_paths = [f"`{path}`" for path, item in [(name, spec)] + list(spec.walk(name))
                  if isinstance(item, Section) and item.accepts_user_keys]
    if not open_paths:
        return ""
    verb = "accepts" if len(open_paths) == 1 else "accept"
    return (f"Besides the keys below, {' and '.join(open_paths)} {verb} keys of your own, kept as written for "
            f"your code (`cfg.{name.upper()}.MY_KEY`) and listed once in the log at start; a key one or two "
            "letters off a framework key is an error that names the key meant.")


def _default(spec: Any) -> str:
    if isinstance(spec, Section):
        return "—"
    if isinstance(spec, Open) and not spec.nullable and spec.default is None:
        return "required"
    return f"`{_escape(repr(spec.default))}`"


def _type(spec: Any) -> str:
    if isinstance(spec, Section):
        return "section"
    if isinstance(spec, Open):
        kind = "dict or list of dicts" if spec.allow_list else "dict"
        if spec.required_keys:
            kind += " with " + ", ".join(f"`{k}`" for k in spec.required_keys)
        return kind
    assert isinstance(spec, Field)
    text = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in spec.types)
    if spec.choices is not None:
        text += ": one of " + ", ".join(f"`{c}`" for c in spec.choices)
    if spec.minimum is not None:
        text += f", ≥ {spec.minimum:g}"
    return text


def _meaning(path: str, spec: Any) -> str:
    text = _escape(spec.doc)
    if isinstance(spec, Open):
        text += ". " + _italic(OPEN_NOTES.get(path, "user-owned, passed to your constructor"))
    if path in FIELD_NOTES:
        text += f"; {FIELD_NOTES[path]}"
    if path in NO_EFFECT:
        text += f". **Has no effect:** {NO_EFFECT[path]}"
    return text


def _deepspeed_keys() -> List[str]:
    engine_keys = [k for k, v in DEFAULTS.entries["deepspeed"].entries.items() if isinstance(v, Field)]
    out = [
        "### DeepSpeed keys passed through",
        "",
        "Besides " + ", ".join(f"`deepspeed.{k}`" for k in engine_keys) + ", the `deepspeed` section accepts "
        "these DeepSpeed config keys. Each is merged over the template named by `deepspeed.config` "
        "(dicts key by key) and handed to DeepSpeed as written, except where noted. A key not in this "
        "list is an error naming the closest ones.",
        "",
        "| key | what engine does with it |",
        "|---|---|",
    ]
    noted = [k for k in DEEPSPEED_PASSTHROUGH_KEYS if k in DEEPSPEED_KEY_NOTES]
    plain = [k for k in DEEPSPEED_PASSTHROUGH_KEYS if k not in DEEPSPEED_KEY_NOTES]
    out += [f"| `{key}` | {DEEPSPEED_KEY_NOTES[key]} |" for key in noted]
    out += ["", "Passed through as written: " + ", ".join(f"`{k}`" for k in plain) + "."]
    return out + [""]


def _escape(text: str) -> str:
    """Make free text safe inside a Markdown table cell (no tags, no emphasis, no column breaks)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def _italic(text: str) -> str:
    return f"*{text}*"


def update_page(path: str) -> bool:
    """Replace the text between the markers in ``path`` with ``render_reference()``; True if it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(START_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise SystemExit(f"{path}: expected one {START_MARKER} and one {END_MARKER}")
    head, rest = text.split(START_MARKER)
    _, tail = rest.split(END_MARKER)
    new = f"{head}{START_MARKER}\n{render_reference()}{END_MARKER}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


#: the earlier name, from when the reference lived in the README
update_readme = update_page
#: the earlier name of ``NO_EFFECT``
NOT_USED_YET = NO_EFFECT


def main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Print the Markdown config reference generated from the defaults.")
    parser.add_argument("--update", metavar="PAGE", help=f"rewrite the reference block of this file instead ({REFERENCE_PAGE})")
    args = parser.parse_args(argv)
    if args.update:
        print(f"{args.update}: {'updated' if update_page(args.update) else 'already up to date'}")
    else:
        print(render_reference(), end="")


if __name__ == "__main__":
    main()
