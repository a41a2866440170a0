"""The compute dtype a ds_config implies, float inputs cast to it, and BatchNorm running stats cast with half-precision weights."""

import pytest
import torch
from torch import nn

from engine.model.base_model import BaseModel
from engine.model.precision import align_norm_buffers, compute_dtype


@pytest.mark.parametrize("ds,dtype", [({}, torch.float32), ({"bf16": {"enabled": True}}, torch.bfloat16),
                                      ({"fp16": {"enabled": True}}, torch.float16),
                                      ({"fp16": {"enabled": False}, "bf16": None}, torch.float32)])
def test_compute_dtype(ds, dtype):
    assert compute_dtype(ds) is dtype


class WithNorms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.bn1d = nn.BatchNorm1d(4, track_running_stats=False)  # no running stats to cast
        self.register_buffer("inv_freq", torch.arange(4, dtype=torch.float32))


@pytest.mark.parametrize("key,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_casts_batchnorm_running_stats_only(key, dtype):
    net = WithNorms()
    assert align_norm_buffers(net, {key: {"enabled": True}}) == 2
    assert net.bn.running_mean.dtype is dtype and net.bn.running_var.dtype is dtype
    assert net.bn.num_batches_tracked.dtype is torch.int64
    assert net.inv_freq.dtype is torch.float32  # other buffers keep DeepSpeed's choice
    assert net.bn.weight.dtype is torch.float32  # parameters are DeepSpeed's business


@pytest.mark.parametrize("ds", [{}, {"fp16": {"enabled": True}, "data_types": {"buffer_dtype": "fp32"}}])
def test_fp32_and_explicit_buffer_dtype_leave_buffers(ds):
    net = WithNorms()
    assert align_norm_buffers(net, ds) == 0
    assert net.bn.running_mean.dtype is torch.float32


def test_to_device_casts_floats_and_keeps_integers():
    model = BaseModel.__new__(BaseModel)  # only ds_config and device matter here
    model.ds_config, model.device = {"bf16": {"enabled": True}}, torch.device("cpu")
    batch = {"img": torch.rand(2, 3), "label": torch.tensor([1, 2]), "pair": (torch.rand(1), [torch.zeros(1, dtype=torch.int32)]),
             "name": "x"}
    moved = model.to_device(batch)
    assert moved["img"].dtype is torch.bfloat16 and torch.equal(moved["img"], batch["img"].bfloat16())
    assert moved["label"].dtype is torch.int64 and moved["name"] == "x"
    assert isinstance(moved["pair"], tuple) and moved["pair"][0].dtype is torch.bfloat16
    assert moved["pair"][1][0].dtype is torch.int32


def test_to_device_keeps_namedtuples():
    import collections

    from engine.model.precision import to_device

    Pair = collections.namedtuple("Pair", "image label")
    moved = to_device(Pair(torch.rand(1), torch.tensor([3])), torch.device("cpu"), torch.float16)
    assert isinstance(moved, Pair) and moved.image.dtype is torch.float16 and moved.label.dtype is torch.int64


def test_pipeline_inputs_become_tuples_and_labels_keep_their_dtype():
    from engine.model.pipeline import _to

    inputs = _to([torch.rand(2), torch.ones(2, dtype=torch.int64)], torch.device("cpu"), torch.bfloat16)
    assert isinstance(inputs, tuple) and inputs[0].dtype is torch.bfloat16 and inputs[1].dtype is torch.int64
    labels = _to(torch.rand(2), torch.device("cpu"), None)
    assert labels.dtype is torch.float32
