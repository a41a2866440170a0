"""engine.weights.safe_load: weights_only loads with the allow-list, refusals that name the file, the opt-in."""

import os
import random

import numpy as np
import pytest
import torch

from engine.weights import safe_load
from engine.checkpoint.state import capture_rng, restore_rng


class CreatesFile:
    """Unpickling this object opens (creates) ``path``: what a crafted checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def untrusted():
    """Each test starts and ends with the default (no opt-in), whatever it switched."""
    safe_load.trust_checkpoints(False)
    yield
    safe_load.trust_checkpoints(False)


def test_rng_state_is_plain_data_and_restores_exactly(tmp_path, untrusted):
    random.seed(5)
    np.random.seed(7)
    torch.manual_seed(1)
    random.gauss(0, 1)  # python keeps a cached gaussian: part of the state
    np.random.randn(3)
    path = tmp_path / "rng.pt"
    torch.save(capture_rng(), path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []  # no numpy, no tuple-of-objects
    expected = (random.random(), random.gauss(0, 1), float(np.random.randn()), np.random.randint(1 << 30),
                torch.rand(3).tolist())
    restore_rng(safe_load.load(str(path)))
    assert (random.random(), random.gauss(0, 1), float(np.random.randn()), np.random.randint(1 << 30),
            torch.rand(3).tolist()) == expected


def test_rng_state_of_older_tags_still_loads_and_restores(tmp_path, untrusted):
    """Tags saved before RNG state was tensors hold numpy's tuple (an ndarray inside)."""
    np.random.seed(11)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    path = tmp_path / "old_rng.pt"
    torch.save(old, path)
    expected = (random.random(), float(np.random.rand()))
    restore_rng(safe_load.load(str(path)))
    assert (random.random(), float(np.random.rand())) == expected


def test_refused_file_names_type_and_file_and_runs_nothing(tmp_path, untrusted):
    victim = tmp_path / "created_by_unpickling"
    path = tmp_path / "model_states.pt"
    torch.save({"module": {"w": torch.zeros(2)}, "extra": CreatesFile(victim)}, path)
    with pytest.raises(safe_load.UnsafeCheckpointError) as info:
        safe_load.load(str(path))
    message = str(info.value)
    assert str(path) in message and "io.open" in message and safe_load.TRUST_FLAG in message
    assert info.value.found == ["io.open"]
    assert not victim.exists()
    assert safe_load.unsafe_globals(str(path)) == ["io.open"]  # the static scan agrees
    with pytest.raises(safe_load.UnsafeCheckpointError, match="model_states.pt"):
        safe_load.check_folder(str(tmp_path))
    assert not victim.exists()


def test_blocked_module_is_refused_too(tmp_path, untrusted):
    class RunsShell:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'shell_ran'}",)

    path = tmp_path / "state.pt"
    torch.save({"x": RunsShell()}, path)
    with pytest.raises(safe_load.UnsafeCheckpointError, match=r"posix\.system|os\.system"):
        safe_load.load(str(path))
    assert not (tmp_path / "shell_ran").exists()


def test_deepspeed_loads_forces_weights_only_on_explicit_false(tmp_path, untrusted, monkeypatch):
    """DeepSpeed calls torch.load(..., weights_only=False); inside the block that is refused all the same."""
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    victim = tmp_path / "created"
    (tmp_path / "engine").mkdir()
    good, bad = tmp_path / "engine" / "a_model_states.pt", tmp_path / "engine" / "b_optim_states.pt"
    torch.save({"loss_scaler": _loss_scaler(), "w": torch.ones(1)}, good)
    torch.save({"state": CreatesFile(victim)}, bad)
    with safe_load.deepspeed_loads(str(tmp_path / "engine")):
        assert torch.load(good, weights_only=False)["w"].item() == 1.0  # an allow-listed DeepSpeed type loads
    with pytest.raises(safe_load.UnsafeCheckpointError) as info:
        with safe_load.deepspeed_loads(str(tmp_path / "engine")):
            torch.load(bad, weights_only=False)
    assert info.value.path == str(bad) and "io.open" in str(info.value)
    assert not victim.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the process is left as it was


def _loss_scaler():
    from deepspeed.runtime.fp16.loss_scaler import LossScaler

    return LossScaler(scale=1.0)


def test_trust_opt_in_loads_with_weights_only_off(tmp_path, untrusted, caplog):
    victim = tmp_path / "created"
    path = tmp_path / "trusted.pt"
    torch.save({"extra": CreatesFile(victim)}, path)
    safe_load.trust_checkpoints(True)
    with caplog.at_level("WARNING", logger="engine"):
        safe_load.load(str(path))
        safe_load.check_folder(str(tmp_path))  # trusted: no refusal
    assert victim.exists()  # the user asked for it: the pickle ran
    assert safe_load.TRUST_FLAG in caplog.text


@pytest.mark.slow
def test_child_command_runs_a_module_with_safe_loads(tmp_path, untrusted):
    """The universal conversion's child process: python -m engine.weights.safe_load MODULE ARGS."""
    import subprocess

    victim = tmp_path / "created"
    path = tmp_path / "x.pt"
    torch.save({"a": CreatesFile(victim)}, path)
    (tmp_path / "loader.py").write_text("import sys, torch\ntorch.load(sys.argv[1], weights_only=False)\n")
    argv, env = safe_load.child_command("loader", [str(path)])
    env = dict(os.environ, **env)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    done = subprocess.run(argv, cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == safe_load.REFUSED_EXIT, done.stdout[-2000:]
    assert "refused to load" in done.stdout and "io.open" in done.stdout
    assert not victim.exists()
