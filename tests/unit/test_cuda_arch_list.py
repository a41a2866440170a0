"""TORCH_CUDA_ARCH_LIST rewritten so DeepSpeed's JIT op builder can parse it (seen: '9.0a' on a CUDA image)."""

import pytest

from engine import launch


@pytest.mark.parametrize("value,expected", [
    ("9.0a", "9.0"),
    ("8.0 8.6 9.0a+PTX", "8.0;8.6;9.0+PTX"),
    ("9.0;9.0a;10.0a", "9.0;10.0"),
    ("8.0;Hopper", "8.0;Hopper"),  # a name is left for torch/DeepSpeed to judge
])
def test_readable_arch_list(value, expected):
    assert launch.readable_arch_list(value) == expected


def test_fix_rewrites_only_what_deepspeed_cannot_parse(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0 9.0a")
    note = launch.fix_cuda_arch_list()
    assert note and "'8.0 9.0a'" in note and "'8.0;9.0'" in note
    import os

    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    assert launch.fix_cuda_arch_list() is None  # now readable: left alone
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0; 8.6+PTX")
    assert launch.fix_cuda_arch_list() is None and os.environ["TORCH_CUDA_ARCH_LIST"] == "8.0; 8.6+PTX"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    assert launch.fix_cuda_arch_list() is None


def test_deepspeed_jit_builder_reads_the_rewritten_list(monkeypatch):
    """DeepSpeed's own FusedAdam builder, as it runs before a JIT build on GPU."""
    from deepspeed.ops.op_builder.fused_adam import FusedAdamBuilder

    builder = FusedAdamBuilder()
    builder.jit_mode = True
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0 9.0a")
    with pytest.raises(ValueError, match="'0a'"):
        builder.compute_capability_args()
    launch.fix_cuda_arch_list()
    builder.compute_capability_args()  # parses now (no CUDA here, so it may choose no -gencode flags)
