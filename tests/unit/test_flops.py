"""engine.log.flops: FLOPs counted on the meta device match the hand formula; MFU arithmetic and peaks."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from engine.log.flops import (
    PEAK_TFLOPS,
    TrainingFlopsCounter,
    device_peak_tflops,
    forward_flops,
    mfu,
    peak_flops,
    training_flops_per_item,
)
from engine.log.metrics import MetricsWindow


def test_linear_forward_is_two_flops_per_multiply_add():
    batch, d_in, d_out = 8, 16, 32
    assert forward_flops(nn.Linear(d_in, d_out), torch.zeros(batch, d_in)) == 2 * batch * d_in * d_out


def test_mlp_counts_every_matmul_and_nothing_else():
    batch, sizes = 4, (10, 24, 12, 3)
    layers = []
    for d_in, d_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
    expected = sum(2 * batch * d_in * d_out for d_in, d_out in zip(sizes, sizes[1:]))
    assert forward_flops(nn.Sequential(*layers), torch.zeros(batch, sizes[0])) == expected


def test_count_runs_on_meta_and_leaves_the_module_alone():
    net = nn.Linear(5, 7)
    before = net.weight.detach().clone()
    example = torch.randn(3, 5)
    # a meta input is fine too: only shapes matter
    assert forward_flops(net, example) == forward_flops(net, torch.empty(3, 5, device="meta")) == 2 * 3 * 5 * 7
    assert net.weight.device.type == "cpu" and torch.equal(net.weight, before)


def test_a_module_too_big_to_allocate_is_counted_from_its_meta_shapes():
    with torch.device("meta"):
        huge = nn.Linear(1 << 16, 1 << 16)  # 16 GiB of fp32 weights if it were real
    assert forward_flops(huge, torch.empty(2, 1 << 16, device="meta")) == 2 * 2 * (1 << 32)


def test_training_flops_are_three_forwards_per_item():
    net = nn.Linear(16, 16)
    per_item = training_flops_per_item(net, 4, torch.zeros(4, 16))
    assert per_item == 3 * 2 * 16 * 16
    with pytest.raises(ValueError):
        training_flops_per_item(net, 0, torch.zeros(4, 16))


def test_a_forward_that_reads_values_is_a_clear_error():
    class ReadsValue(nn.Module):
        def forward(self, x):
            return x * float(x.sum())

    with pytest.raises(ValueError, match="meta device"):
        forward_flops(ReadsValue(), torch.ones(2))


def test_mfu_is_achieved_over_peak_of_all_devices():
    assert mfu(1000.0, 6e9, 1e13) == pytest.approx(0.6)
    assert mfu(2000.0, 6e9, 1e13, num_devices=2) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, 0.0)


def test_peak_table_picks_the_longest_matching_name_and_the_dtype():
    assert device_peak_tflops("NVIDIA H100 PCIe", torch.bfloat16) == PEAK_TFLOPS["H100 PCIe"][0]
    assert device_peak_tflops("NVIDIA H100 80GB HBM3", torch.bfloat16) == PEAK_TFLOPS["H100"][0]
    assert device_peak_tflops("NVIDIA A100-SXM4-80GB", torch.float32) == PEAK_TFLOPS["A100"][1]
    assert device_peak_tflops("NVIDIA L40S", torch.float16) == PEAK_TFLOPS["L40S"][0]  # not L4's
    assert device_peak_tflops("Some Future Chip", torch.bfloat16) is None


def test_cpu_has_a_peak_only_when_the_config_gives_one(caplog):
    with caplog.at_level(logging.INFO, logger="engine"):
        assert peak_flops(0.0, "cpu") is None
    assert "trainer.peak_tflops" in caplog.text
    assert peak_flops(2.5, "cpu") == 2.5e12


def test_attention_counts_the_projections_and_both_attention_matmuls():
    class Attention(nn.Module):  # the shape of a GPT block's attention
        def __init__(self, width, heads):
            super().__init__()
            self.heads, self.qkv, self.proj = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

        def forward(self, x):
            b, t, w = x.shape
            q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2) for y in self.qkv(x).split(w, dim=-1))
            att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(att.transpose(1, 2).reshape(b, t, w))

    b, t, w = 2, 16, 32
    projections = 2 * b * t * w * 3 * w + 2 * b * t * w * w
    scores_and_values = 2 * (2 * b * t * t * w)  # q·kᵀ and att·v, each 2·t·t·width per sample (causal not halved)
    assert forward_flops(Attention(w, 4), torch.zeros(b, t, w)) == projections + scores_and_values


def test_a_zero3_partitioned_parameter_is_counted_at_its_full_shape():
    net = nn.Linear(8, 4)
    for param in net.parameters():  # what zero.Init leaves on a rank: an empty partition, the full shape beside it
        full = param.shape
        param.data = torch.empty(0)
        param.ds_shape = full
    assert forward_flops(net, torch.zeros(3, 8)) == 2 * 3 * 8 * 4


def test_the_first_training_forward_is_counted_as_it_runs_and_later_ones_are_not():
    counter = TrainingFlopsCounter()
    net, batch = nn.Linear(16, 32), 8
    first = torch.randn(batch, 16)
    with counter.counting(first):
        net(first)
    assert counter.per_sample == 3 * 2 * 16 * 32
    later = torch.randn(1, 16)
    with counter.counting(later):  # a later micro-batch: no counting, the figure stays
        net(later)
    assert counter.per_sample == 3 * 2 * 16 * 32


def test_the_metrics_window_reports_mfu_from_the_bundles_count_and_the_peak():
    class Bundle:
        training_flops_per_sample = 1e9

    window = MetricsWindow(samples_per_step=32, peak_flops=1e12, devices=2)
    window.reset()
    window.add({"loss": torch.tensor(1.0)}, 0.0)
    scalars = window.summary(1, Bundle()).scalars
    assert scalars["perf/mfu"] == pytest.approx(scalars["speed/samples_per_s"] * 1e9 / 2e12)
    assert scalars["perf/tflops_per_device"] == pytest.approx(scalars["perf/mfu"] * 1.0)
    unknown = MetricsWindow(samples_per_step=32)  # no peak: no MFU
    unknown.reset()
    unknown.add({"loss": torch.tensor(1.0)}, 0.0)
    assert "perf/mfu" not in unknown.summary(1, Bundle()).scalars
