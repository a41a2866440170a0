"""A tag with one file replaced by a crafted pickle: resume, inspect, export and trainer.weights refuse it.

The crafted object creates a file when unpickled. Each file kind is tampered the way an attacker
would (the original content kept, one object added, the manifest updated so the tag still looks
complete); every entry point must refuse with the file and the type named, and the file must
not appear. The opt-in (``--trust-checkpoint``) is used only in the last test, which checks it.
"""

import shutil

import pytest
import torch

from engine.checkpoint import layout
from engine.weights import safe_load
from tests.helpers import TOY, launcher_cmd, load_tool, run_cli, run_scenarios

STEPS = 2
TAG = layout.tag_name(STEPS)
ENGINE = "generator"
#: kind → (file inside the tag, where the crafted object goes: None = top level, else a key path)
KINDS = {
    "deepspeed_model": (f"{ENGINE}/mp_rank_00_model_states.pt", ()),
    "deepspeed_optimizer": (f"{ENGINE}/zero_pp_rank_0_mp_rank_00_optim_states.pt", ()),
    "trainer_state": (layout.rank_state_file("", 0).lstrip("/"), ()),
    "ema": (layout.rank_state_file("", 0).lstrip("/"), ("model", "ema")),
}


class CreatesFile:
    """Unpickling this creates ``path`` (``open(path, "w")``): code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def train_argv(out, *extra):
    flags = [a for a in extra if a.startswith("--")]
    return ["--config-file", str(TOY / "cfg.py"), *flags, "--opts", "output_dir", str(out), "deepspeed.config", "zero1",
            "solver.ema", "{'enabled': True, 'decay_rate': 0.9}", "solver.checkpoint_period", str(STEPS),
            *[a for a in extra if not a.startswith("--")]]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("safe") / "run"
    result = run_cli(launcher_cmd("python", TOY / "train.py", 1, 0) + train_argv(out, "solver.max_iter", str(STEPS)),
                     timeout=150)
    assert result.returncode == 0, result.stdout[-3000:]
    return out


@pytest.fixture(autouse=True)
def untrusted():
    safe_load.trust_checkpoints(False)
    yield
    safe_load.trust_checkpoints(False)


def tamper(clean_run, tmp_path, kind):
    """A copy of the run whose ``kind`` file holds a crafted object; (run dir, the file it would create)."""
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    tag_dir = out / "checkpoints" / TAG
    rel, key_path = KINDS[kind]
    victim = tmp_path / f"created_by_{kind}"
    state = safe_load.load(str(tag_dir / rel))  # the clean file loads safely
    holder = state
    for key in key_path:
        holder = holder[key]
    holder["crafted"] = CreatesFile(victim)
    torch.save(state, tag_dir / rel)
    info = layout.read_marker(str(tag_dir))
    info.pop("files")
    layout.write_marker(str(tag_dir), info)  # the tag still looks whole, as a crafted one would
    assert layout.check_complete(str(tag_dir))[0]
    return out, victim, str(tag_dir / rel)


def assert_refused(text, path, victim):
    assert "refused to load" in text and path in text and "io.open" in text, text[-3000:]
    assert safe_load.TRUST_FLAG in text
    assert "Traceback" not in text
    assert not victim.exists()


@pytest.fixture(scope="module")
def attacks(clean_run, tmp_path_factory):
    """Every training that meets a crafted file, in one start (the trusted one last).

    Returns name → (run dir, the file the crafted object would create, the tampered file,
    the training's Outcome): ``resume-<kind>`` for each kind, ``weights`` (the crafted
    model file as ``trainer.weights``) and ``trusted-resume`` (with the opt-in).
    """
    root = tmp_path_factory.mktemp("attacks")
    cases, runs = {}, []
    for kind in KINDS:
        cases[f"resume-{kind}"] = tamper(clean_run, root / kind, kind)
        runs.append((f"resume-{kind}", train_argv(cases[f"resume-{kind}"][0], "--resume", "solver.max_iter",
                                                  str(STEPS + 1))))
    cases["weights"] = tamper(clean_run, root / "weights", "deepspeed_model")
    runs.append(("weights", train_argv(root / "fresh", "solver.max_iter", "1", "trainer.weights", cases["weights"][2])))
    cases["trusted-resume"] = tamper(clean_run, root / "trusted", "trainer_state")
    runs.append(("trusted-resume", train_argv(cases["trusted-resume"][0], "--resume", safe_load.TRUST_FLAG,
                                              "solver.max_iter", str(STEPS + 1))))
    outcomes = run_scenarios(runs, root / "starts", nproc=1, imports=[TOY / "toy.py"], timeout=300)
    return {name: (*cases[name], outcomes[name]) for name in cases}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", list(KINDS))
def test_crafted_file_is_refused_everywhere(attacks, tmp_path, kind, capsys):
    out, victim, path, result = attacks[f"resume-{kind}"]
    assert result.codes == [2]
    assert_refused(result.stdout, path, victim)

    assert load_tool("inspect_ckpt").main([str(out), "--json"]) == 3
    assert_refused(capsys.readouterr().err, path, victim)

    convert_args = [str(out), str(tmp_path / "g.safetensors")] + (["--ema"] if kind in ("trainer_state", "ema") else [])
    assert load_tool("convert_ckpt").main(convert_args) == safe_load.REFUSED_EXIT
    assert_refused(capsys.readouterr().err, path, victim)
    assert not (tmp_path / "g.safetensors").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_crafted_trainer_weights_are_refused(attacks):
    out, victim, path, result = attacks["weights"]
    assert result.codes == [2]
    assert_refused(result.stdout, path, victim)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trust_checkpoint_opt_in_loads_the_file(clean_run, attacks, tmp_path, capsys):
    """The one place the opt-in is used: the file loads (and its code runs) only when asked."""
    out, victim, _ = tamper(clean_run, tmp_path, "ema")
    assert load_tool("convert_ckpt").main([str(out), str(tmp_path / "ema.safetensors"), "--ema",
                                           safe_load.TRUST_FLAG]) == 0
    assert victim.exists() and (tmp_path / "ema.safetensors").exists()

    out, victim, _, result = attacks["trusted-resume"]
    assert result.codes == [0], result.stdout[-3000:]
    assert victim.exists()
    assert f"{safe_load.TRUST_FLAG}: checkpoint files are unpickled with weights_only=False" in result.stdout
    assert f"resumed from {out / 'checkpoints' / TAG} at step {STEPS}" in result.stdout
