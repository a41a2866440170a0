"""Activation checkpointing under ZeRO-3 on 2 ranks: the same losses as without it.

ZeRO-3 gathers a block's parameters in module hooks; the recomputation in backward must
see them gathered again. Equal fp32 losses step by step show the gradients were the same.
"""

import pytest

from tests.distributed.test_large_zero3 import run_large


@pytest.mark.slow
def test_checkpointed_run_matches_plain_run(tmp_path):
    """DeepSpeed's flavour here; torch's flavour has the same gradients in tests/unit."""
    steps = ("solver.max_iter", "6")
    plain = run_large(tmp_path / "plain", *steps)
    checkpointed = run_large(tmp_path / "ckpt", *steps, "deepspeed.activation_checkpointing",
                             "{'partition_activations': False, 'cpu_checkpointing': False}")
    log = (tmp_path / "ckpt" / "train.log").read_text()
    assert "activation checkpointing (deepspeed): 4 blocks" in log
    for rank in range(2):
        assert checkpointed[rank]["losses"] == pytest.approx(plain[rank]["losses"], rel=1e-6, abs=1e-7)
