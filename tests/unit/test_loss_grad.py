"""Every registered loss passes a finite, non-zero gradient back to its prediction."""

import subprocess
import sys

import pytest
import torch

from engine.loss import LOSS_ARCH_REGISTRY, build_loss

ALL_NAMES = ["L1Loss", "NLLLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss", "SoftMarginLoss",
             "CrossEntropyLoss", "MultiLabelSoftMarginLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss",
             "BinaryDiceLoss", "GeneralizedDiceLoss", "IOULoss", "OnlineHardExampleMiningCELoss", "SSIMLoss",
             "VggLoss", "FocalLoss", "CharbonnierLoss", "GeneralizedCELoss"]


def _inputs(name, g):
    """(params, the tensor that needs a gradient, the full input tuple)."""
    rand = lambda *s: torch.rand(*s, generator=g)
    randn = lambda *s: torch.randn(*s, generator=g)
    mask = (rand(2, 1, 8, 8) > 0.5).float()
    classes = torch.randint(0, 3, (2, 8, 8), generator=g)
    pred = randn(2, 3, 8, 8)
    if name == "NLLLoss":
        return {}, pred, lambda p: (p.log_softmax(1), classes)
    if name in ("CrossEntropyLoss", "OnlineHardExampleMiningCELoss", "GeneralizedCELoss"):
        return ({"min_kept": 4} if name.startswith("Online") else {}), pred, lambda p: (p, classes)
    if name == "FocalLoss":
        return {"mode": "multiclass"}, pred, lambda p: (p, classes)
    if name == "GeneralizedDiceLoss":
        return {"from_logits": True}, pred, lambda p: (p, classes)
    if name in ("BinaryDiceLoss", "IOULoss"):
        return {"from_logits": True}, randn(2, 1, 8, 8), lambda p: (p, mask)
    if name == "BCELoss":
        return {}, randn(2, 1, 8, 8), lambda p: (torch.sigmoid(p), mask)
    if name in ("BCEWithLogitsLoss", "MultiLabelSoftMarginLoss"):
        return {}, randn(4, 3), lambda p: (p, (rand(4, 3) > 0.5).float())
    if name == "SoftMarginLoss":
        return {}, randn(4, 3), lambda p: (p, (rand(4, 3) > 0.5).float() * 2 - 1)
    if name.startswith("Triplet"):
        return {"margin": 10.0}, randn(4, 6), lambda p: (p, randn(4, 6), randn(4, 6))
    if name == "SSIMLoss":
        return {}, rand(2, 3, 16, 16), lambda p: (p, rand(2, 3, 16, 16))
    if name == "VggLoss":
        return ({"allow_random_init": True, "layers": ["relu1_2", "relu2_1"]}, rand(1, 3, 16, 16),
                lambda p: (p, rand(1, 3, 16, 16)))
    return {}, randn(2, 3, 8, 8), lambda p: (p, randn(2, 3, 8, 8))  # L1, MSE, SmoothL1, Charbonnier


def test_the_registry_holds_exactly_the_documented_losses():
    assert sorted(LOSS_ARCH_REGISTRY.names()) == sorted(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_gradient_flows(name):
    g = torch.Generator().manual_seed(0)
    params, leaf, make_inputs = _inputs(name, g)
    leaf.requires_grad_(True)
    loss = build_loss(name, dict(params, lambda_weight=2.0), where=f"LOSS.{name}[0]")
    out = loss(*make_inputs(leaf))
    assert out.dim() == 0 and torch.isfinite(out)
    out.backward()
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()
    assert leaf.grad.abs().sum() > 0


def test_engine_loss_imports_no_deepspeed_and_no_trainer():
    code = ("import sys, engine.loss, engine.loss.pipe; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'deepspeed' or m.startswith(("
            "'engine.trainer', 'engine.model', 'engine.schedule'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_docs_list_every_loss():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "losses.md").read_text()
    assert [name for name in ALL_NAMES if f"`{name}`" not in doc] == []
