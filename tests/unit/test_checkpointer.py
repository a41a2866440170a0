"""``Checkpointer`` on its own (one process, no trainer): save, rotation, resume hand-off, best tag, async.

The model bundle is a stand-in with one torch module per engine that writes through its
``checkpoint_engine`` as DeepSpeed's engines do; DeepSpeed's own engines go through the same
sequence in tests/distributed (resume exactness, async, preemption, NaN stop, best).
"""

import logging
import os

import pytest
import torch

from engine import comm
from engine.checkpoint import layout
from engine.checkpoint.async_writer import BackgroundWriter
from engine.checkpoint.checkpointer import Checkpointer
from engine.checkpoint.hook import CheckpointHook, check_runs_last
from engine.checkpoint.resume import choose_tag, load_checkpoint
from engine.errors import EngineError
from engine.events.hooks import HookBase


class TorchSave:
    """What DeepSpeed's default checkpoint engine does with a state: ``torch.save`` it."""

    def save(self, state, path):
        torch.save(state, path)


class TinyEngine:
    """The part of a DeepSpeed engine the save sequence uses: save/load under ``<dir>/<tag>/``."""

    def __init__(self, seed):
        torch.manual_seed(seed)
        self.module = torch.nn.Linear(3, 2)
        self.checkpoint_engine = TorchSave()

    def save_checkpoint(self, save_dir, tag, client_state, save_latest):
        os.makedirs(os.path.join(save_dir, tag), exist_ok=True)
        self.checkpoint_engine.save({"module": self.module.state_dict(), **client_state},
                                    os.path.join(save_dir, tag, "model_states.pt"))

    def load_checkpoint(self, load_dir, tag):
        path = os.path.join(load_dir, tag, "model_states.pt")
        state = torch.load(path, weights_only=True)
        self.module.load_state_dict(state["module"])
        return path, state


class TinyBundle:
    def __init__(self, seed=0):
        self.engines = {"generator": TinyEngine(seed)}

    def learning_rates(self):
        return {"generator": 0.1}


def weights(bundle):
    return bundle.engines["generator"].module.weight.detach().clone()


def test_save_rotate_resume_and_best_without_a_trainer(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), max_keep=2, zero_stage=1)
    model = TinyBundle()
    for step in (1, 2):
        checkpointer.save_tag(model, lambda: {"iteration": step}, step)
    best_dir = checkpointer.save_best(model, {"iteration": 2}, 2, {"metric": "val/acc", "mode": "max", "value": 0.5})
    for step in (3, 4, 5):
        tag_dir = checkpointer.save_tag(model, {"iteration": step}, step)
    next_draw = torch.rand(4)  # what the step after the save draws
    root = checkpointer.root
    assert layout.complete_tags(root) == [layout.tag_name(5), layout.tag_name(4)]  # max_keep 2
    assert open(os.path.join(root, layout.LATEST)).read().strip() == layout.tag_name(5)
    marker = layout.read_marker(tag_dir)
    assert (marker["engines"], marker["zero_stage"], marker["iteration"]) == (["generator"], 1, 5)
    assert best_dir == os.path.join(root, layout.BEST) and layout.check_complete(best_dir)[0]  # never rotated
    assert layout.read_marker(best_dir)["iteration"] == 2 and not os.path.exists(os.path.join(root, layout.BEST_STAGING))

    resumed, fresh = Checkpointer(str(tmp_path), max_keep=2), TinyBundle(seed=1)
    assert not torch.equal(weights(fresh), weights(model))
    loaded = []
    assert choose_tag(resumed.root) == layout.tag_name(5)
    load_checkpoint(resumed, fresh, loaded.append, os.path.join(resumed.root, layout.tag_name(5)))
    assert torch.equal(weights(fresh), weights(model)) and loaded == [{"iteration": 5}]
    assert resumed.previous_best("val/acc", "max") == 0.5  # read once, from best's marker
    assert resumed.previous_best("val/acc", "min") is None and resumed.previous_best("val/loss", "max") is None
    torch.manual_seed(123)  # e.g. building the data iterator draws
    assert resumed.rng_pending and resumed.restore_rng()
    assert torch.equal(torch.rand(4), next_draw)
    assert not resumed.rng_pending and not resumed.restore_rng()  # handed over once


def test_async_save_completes_on_wait_and_a_step_is_saved_once(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), max_keep=1, writer=BackgroundWriter())
    model = TinyBundle()
    tag_dir = checkpointer.save_tag(model, {"iteration": 3}, 3)
    assert checkpointer.pending_save is not None
    checkpointer.wait()
    assert checkpointer.pending_save is None and layout.check_complete(tag_dir)[0]
    assert checkpointer.save_once(model, {"iteration": 3}, 3) is None  # the hook and the seed's save: once
    blocking = checkpointer.save_tag(model, {"iteration": 4}, 4, blocking=True)  # the NaN stop's save
    assert checkpointer.pending_save is None and layout.complete_tags(checkpointer.root) == [os.path.basename(blocking)]


@pytest.mark.parametrize("world", [1, 2])
def test_a_failed_run_settles_the_save_in_flight(tmp_path, monkeypatch, caplog, world):
    """The crash handler (CheckpointHook.after_failure) waits for the background write; alone it completes the tag."""
    checkpointer = Checkpointer(str(tmp_path), max_keep=2, writer=BackgroundWriter())
    model = TinyBundle()
    done = checkpointer.save_tag(model, {"iteration": 1}, 1)
    checkpointer.wait()
    tag_dir = checkpointer.save_tag(model, {"iteration": 2}, 2)
    monkeypatch.setattr(comm, "get_world_size", lambda: world)
    with caplog.at_level(logging.INFO, logger="engine"):
        CheckpointHook(checkpointer, period=1).after_failure()
    assert checkpointer.pending_save is None and not checkpointer.writer.busy
    assert os.path.exists(layout.rank_state_file(tag_dir, 0))  # this rank's files are on disk either way
    complete = [os.path.basename(tag_dir), os.path.basename(done)] if world == 1 else [os.path.basename(done)]
    assert layout.complete_tags(checkpointer.root) == complete
    assert ("was completed first" if world == 1 else "not marked complete") in caplog.text


def test_max_keep_below_one_is_refused(tmp_path):
    with pytest.raises(EngineError, match="max_keep"):
        Checkpointer(str(tmp_path), max_keep=0)


def test_hooks_after_the_checkpoint_hook_are_named(tmp_path, caplog):
    class Late(HookBase):
        pass

    hook = CheckpointHook(Checkpointer(str(tmp_path), max_keep=1), period=1)
    with caplog.at_level(logging.WARNING, logger="engine"):
        check_runs_last([Late(), hook])
        assert caplog.text == ""
        check_runs_last([hook, Late()])
    assert "hooks Late run after CheckpointHook" in caplog.text
