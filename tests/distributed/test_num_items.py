"""Losses weighed by ``num_items``: the same update whatever the accumulation, world size and ZeRO stage.

A byte-level LM on padded sequences of 4 to 32 tokens (tests/assets/item_lm.py), fp32, SGD,
20 steps of 16 sequences. The reference is one process with one micro-batch of 16 per step,
where a per-token mean is what the loss computes anyway. With ``num_items`` the final
weights of 4 accumulated micro-batches of 4, and of 2 ranks x 8 at ZeRO 1, 2 and 3, must be
within 1e-5 of it; without, the mean of per-micro-batch means must be measurably off (so the
comparison can fail). DeepSpeed's pipeline engine (2 stages, 4 micro-batches) is held to the
same bound: its loss function weighs each micro-batch the same way.
"""

import importlib.util
import sys

import pytest
import torch

from engine.weights.exported import read_exported
from tests.helpers import REPO, read_records, run_scenarios, run_tool

ASSET = REPO / "tests" / "assets" / "item_lm.py"
STEPS = 20
CFG = f'''
output_dir = "./output/item_lm"
seed = 3
dataloader = dict(num_workers=0, train_data_set=dict(name="ByteSequences", size=64))
trainer = dict(name="DumpTrainer", log_period=5,
               model=dict(name="PaddedLM", generator=dict(name="ByteBigramLM", dim=16, hidden=32)))
solver = dict(train_per_batch=16, max_iter={STEPS}, checkpoint_period=1000,
              generator=dict(optimizer=dict(type="SGD", params=dict(lr=0.5))))
deepspeed = dict(config="zero0")
'''
MEAN_OF_MEANS = ("trainer.model.name", "PaddedLMMeanOfMeans")
ACCUMULATED = ("solver.gradient_accumulation_batch", "4")
TWO_RANKS = ("solver.train_per_batch", "8")
# 2 stages on 2 ranks (one data-parallel replica), 4 micro-batches of 4; a final tag to export
PIPELINE = (*ACCUMULATED, "deepspeed.pipeline", "{'stages': 2, 'partition_method': 'uniform', 'micro_batches': 4}",
            "solver.checkpoint_period", str(STEPS))


def runs(tmp, layouts):
    return [(name, ["--config-file", tmp / "cfg.py", "--opts", "output_dir", tmp / name, *opts])
            for name, opts in layouts.items()]


@pytest.fixture(scope="module")
def final_weights(tmp_path_factory):
    """Layout name → its final weights; one 1-process start and one 2-rank start for all of them."""
    tmp = tmp_path_factory.mktemp("num_items")
    (tmp / "cfg.py").write_text(CFG)
    # an uneven last batch (20 = 6 + 6 + 6 + 2): only a per-token mean is independent of the batching
    validated = ("dataloader.val_data_set", "{'name': 'ByteSequences', 'size': 20}", "solver.val_per_batch", "6")
    one = {"reference": validated, "accumulated": ACCUMULATED, "accumulated_mean_of_means": (*ACCUMULATED, *MEAN_OF_MEANS)}
    two = {f"ranks_zero{stage}": (*TWO_RANKS, "deepspeed.config", f"zero{stage}") for stage in (1, 2, 3)}
    two["ranks_mean_of_means"] = (*TWO_RANKS, *MEAN_OF_MEANS, "deepspeed.config", "zero1")
    piped = {"pipeline": PIPELINE, "pipeline_mean_of_means": (*PIPELINE, *MEAN_OF_MEANS)}
    two.update(piped)
    for nproc, layouts in ((1, one), (2, two)):
        outcomes = run_scenarios(runs(tmp, layouts), tmp / f"np{nproc}", nproc=nproc, imports=[ASSET], timeout=400)
        for name, outcome in outcomes.items():
            assert set(outcome.codes) == {0}, (name, outcome.stdout[-4000:])
    weights = {name: torch.load(tmp / name / "live.pt") for name in [*one, *two] if name not in piped}
    for name in piped:  # each stage holds its own layers: the exported checkpoint is the whole network
        result = run_tool("convert_ckpt", tmp / name, tmp / f"{name}.safetensors")
        assert result.returncode == 0, result.stdout[-3000:]
        weights[name] = read_exported(str(tmp / f"{name}.safetensors"))
    record = read_records(tmp / "reference", 1)[0]
    weights["reference_losses"], weights["reference_metrics"] = record["losses"], record["metrics"]
    return weights


def max_diff(a, b):
    assert sorted(a) == sorted(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", ["accumulated", "ranks_zero1", "ranks_zero2", "ranks_zero3", "pipeline"])
def test_counted_losses_train_to_one_big_batch_weights(final_weights, layout):
    reference = final_weights["reference"]
    losses = final_weights["reference_losses"]
    assert len(losses) == STEPS and losses[-1] < 0.85 * losses[0], losses  # it trained
    assert max_diff(final_weights[layout], reference) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["accumulated_mean_of_means", "ranks_mean_of_means", "pipeline_mean_of_means"])
def test_without_num_items_the_mean_of_means_differs(final_weights, layout):
    assert max_diff(final_weights[layout], final_weights["reference"]) > 1e-3


@pytest.mark.slow
def test_evaluation_reports_the_per_item_mean(final_weights):
    """With num_items the validation loss is the mean over every token of the set, not a mean of batch means."""
    lm = load_asset()
    network = lm.ByteBigramLM(16, 32)
    network.load_state_dict(final_weights["reference"])
    samples = [lm.ByteSequences(size=20)[i] for i in range(20)]
    inputs, labels = (torch.stack([s[key] for s in samples]) for key in ("input", "label"))
    with torch.no_grad():
        per_token = lm.ByteBigramLM.loss_fn(network(inputs), labels).item()
        per_batch = [lm.ByteBigramLM.loss_fn(network(inputs[i:i + 6]), labels[i:i + 6]).item() for i in range(0, 20, 6)]
    mean_of_means = sum(m * len(range(i, min(i + 6, 20))) for m, i in zip(per_batch, range(0, 20, 6))) / 20
    assert abs(per_token - mean_of_means) > 1e-4  # the two means differ on this set
    assert final_weights["reference_metrics"]["val/loss"] == pytest.approx(per_token, rel=1e-5)


def load_asset():
    """tests/assets/item_lm.py, imported once under its own name (as the training processes import it)."""
    if "item_lm" not in sys.modules:
        spec = importlib.util.spec_from_file_location("item_lm", ASSET)
        module = importlib.util.module_from_spec(spec)
        sys.modules["item_lm"] = module
        spec.loader.exec_module(module)
    return sys.modules["item_lm"]
