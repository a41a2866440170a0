"""Activation checkpointing of declared blocks: the same gradients, fewer saved activations."""

import copy

import pytest
import torch
from torch import nn

from engine.errors import EngineError
from engine.model.activation_checkpointing import (activation_checkpointing_requested, apply_activation_checkpointing,
                                                   declared_blocks)
from tests.helpers import free_port


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        self.scale = nn.Parameter(torch.ones(width))  # owned by the block itself, not a child

    def forward(self, x, *, shift=0.0):
        return x + self.scale * self.fc2(torch.nn.functional.gelu(self.fc1(x))) + shift


class Net(nn.Module):
    checkpoint_blocks = ("stem", "blocks", "last")  # stem: an input that needs no gradient

    def __init__(self, width=16, depth=4):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Linear(8, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.last = Block(width)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, shift=0.5)
        return self.head(self.last(x))


def grads(net, x):
    net.zero_grad()
    net(x).square().mean().backward()
    return {k: p.grad.clone() for k, p in net.named_parameters()}


def saved_bytes(net, x):
    """Bytes autograd keeps for backward (what checkpointing trades for recomputation)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).square().mean()
    return total


@pytest.fixture
def deepspeed_ready(monkeypatch):
    """DeepSpeed's checkpointing asks for the rank: a one-process gloo group, torn down after."""
    import deepspeed
    import torch.distributed as dist

    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    # as engine's launch does on CPU: no JIT build of DeepSpeed's shm allreduce op (~50 s, and it depends on
    # which earlier test happened to switch it off in this process)
    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, "deepspeed_shm_comm", False)
    started = not dist.is_initialized()
    if started:
        deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    yield
    if started:
        deepspeed.comm.destroy_process_group()


@pytest.mark.parametrize("flavour", ["torch", "deepspeed"])
def test_gradients_identical_and_memory_lower(flavour, request):
    if flavour == "deepspeed":
        request.getfixturevalue("deepspeed_ready")
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    plain = Net()
    wrapped = copy.deepcopy(plain)
    section = {"partition_activations": False, "cpu_checkpointing": False} if flavour == "deepspeed" else None
    paths = apply_activation_checkpointing(wrapped, section)
    assert paths == ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "last"]
    expected, got = grads(plain, x), grads(wrapped, x)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert saved_bytes(wrapped, x) < saved_bytes(plain, x) / 2
    assert wrapped.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(wrapped(x), plain(x))


def test_protocol_errors_name_the_problem():
    with pytest.raises(EngineError, match="declares no blocks"):
        declared_blocks(nn.Linear(2, 2))
    net = Net()
    net.checkpoint_blocks = ("nope",)
    with pytest.raises(EngineError, match="'nope', which is not a submodule"):
        declared_blocks(net)
    net.checkpoint_blocks = lambda: ["last"]
    assert declared_blocks(net) == ["last"]


def test_switches():
    assert not activation_checkpointing_requested(False, {"zero_optimization": {}})
    assert activation_checkpointing_requested(True, {})
    assert activation_checkpointing_requested(False, {"activation_checkpointing": {"partition_activations": False}})
