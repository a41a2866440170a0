"""The torch-backed losses equal torch.nn.functional times lambda_weight, with torch's parameters."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.loss import LOSS_ARCH_REGISTRY, LossInputError, build_loss

torch.manual_seed(0)
N, C = 4, 3
_logits = torch.randn(N, C)
_probs = torch.rand(N, C).clamp(0.05, 0.95)
_binary = (torch.rand(N, C) > 0.5).float()
_signs = _binary * 2 - 1
_classes = torch.tensor([0, 2, 1, 2])
_emb = [torch.randn(N, 8) for _ in range(3)]


def _cosine(x, y):
    return 1.0 - F.cosine_similarity(x, y)


# name, params, inputs, reference (functional call)
CASES = [
    ("L1Loss", {}, (_logits, _probs), lambda a, b: F.l1_loss(a, b)),
    ("L1Loss", {"reduction": "sum"}, (_logits, _probs), lambda a, b: F.l1_loss(a, b, reduction="sum")),
    ("MSELoss", {}, (_logits, _probs), lambda a, b: F.mse_loss(a, b)),
    ("SmoothL1Loss", {"beta": 0.5}, (_logits, _probs), lambda a, b: F.smooth_l1_loss(a, b, beta=0.5)),
    ("BCELoss", {"weight": [1.0, 2.0, 0.5]}, (_probs, _binary),
     lambda a, b: F.binary_cross_entropy(a, b, weight=torch.tensor([1.0, 2.0, 0.5]))),
    ("BCEWithLogitsLoss", {"pos_weight": [3.0, 1.0, 2.0]}, (_logits, _binary),
     lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=torch.tensor([3.0, 1.0, 2.0]))),
    ("SoftMarginLoss", {}, (_logits, _signs), lambda a, b: F.soft_margin_loss(a, b)),
    ("MultiLabelSoftMarginLoss", {"weight": [1.0, 0.5, 2.0]}, (_logits, _binary),
     lambda a, b: F.multilabel_soft_margin_loss(a, b, weight=torch.tensor([1.0, 0.5, 2.0]))),
    ("NLLLoss", {"ignore_index": 1}, (_logits.log_softmax(1), _classes),
     lambda a, b: F.nll_loss(a, b, ignore_index=1)),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "weight": [1.0, 2.0, 3.0]}, (_logits, _classes),
     lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1, weight=torch.tensor([1.0, 2.0, 3.0]))),
    ("CrossEntropyLoss", {}, (_logits, _probs.softmax(1)), lambda a, b: F.cross_entropy(a, b)),
    ("TripletMarginLoss", {"margin": 0.5, "p": 1.0}, tuple(_emb),
     lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=0.5, p=1.0)),
    ("TripletMarginWithDistanceLoss", {"distance_function": "cosine", "margin": 0.3}, tuple(_emb),
     lambda a, p, n: F.triplet_margin_with_distance_loss(a, p, n, distance_function=_cosine, margin=0.3)),
    ("TripletMarginWithDistanceLoss", {}, tuple(_emb),
     lambda a, p, n: F.triplet_margin_with_distance_loss(a, p, n)),
]

TORCH_NAMES = ["L1Loss", "NLLLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss", "SoftMarginLoss",
               "CrossEntropyLoss", "MultiLabelSoftMarginLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss"]


def test_every_torch_loss_has_a_case():
    assert {name for name, *_ in CASES} == set(TORCH_NAMES)


@pytest.mark.parametrize("lambda_weight", [1.0, 2.5])
@pytest.mark.parametrize("name,params,inputs,reference", CASES, ids=[c[0] for c in CASES])
def test_equals_functional_times_lambda(name, params, inputs, reference, lambda_weight):
    loss = build_loss(name, dict(params, lambda_weight=lambda_weight), where="LOSS.x[0]")
    expected = reference(*inputs) * lambda_weight
    torch.testing.assert_close(loss(*inputs), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_signature_is_torch_plus_lambda_weight(name):
    """The binary cross-entropies also take ignore_index, last (torch gives it only to the class-index losses)."""
    cls = LOSS_ARCH_REGISTRY.get(name)
    accepted = list(inspect.signature(cls).parameters)
    assert accepted[0] == "lambda_weight"
    added = ["ignore_index"] if name in ("BCELoss", "BCEWithLogitsLoss") else []
    assert accepted[1:] == list(inspect.signature(getattr(torch.nn, name)).parameters) + added


def test_misspelled_parameter_names_path_and_closest():
    with pytest.raises(ConfigError, match=r"LOSS\.loss1\[0\].*'label_smooth'.*Did you mean 'label_smoothing'"):
        build_loss("CrossEntropyLoss", {"label_smooth": 0.1}, where="LOSS.loss1[0]")
    with pytest.raises(ConfigError, match="label_smooth"):  # direct construction checks too
        LOSS_ARCH_REGISTRY.get("CrossEntropyLoss")(label_smooth=0.1)


def test_bad_values_are_config_errors_with_path():
    with pytest.raises(ConfigError, match=r"LOSS\.a\[0\] \(L1Loss\): reduction must be one of"):
        build_loss("L1Loss", {"reduction": "avg"}, where="LOSS.a[0]")
    with pytest.raises(ConfigError, match="distance_function 'cosin'.*Did you mean 'cosine'"):
        build_loss("TripletMarginWithDistanceLoss", {"distance_function": "cosin"}, where="LOSS.a[0]")
    with pytest.raises(ConfigError, match="lambda_weight must be a number"):
        build_loss("MSELoss", {"lambda_weight": "2"}, where="LOSS.a[0]")


def test_shapes_that_do_not_fit_are_refused():
    mse = build_loss("MSELoss", {}, where="x")
    # torch itself would broadcast (4, 1) against (4,) with only a warning
    with pytest.raises(LossInputError, match=r"target shape \(4,\) does not fit pred shape \(4, 1\)"):
        mse(torch.zeros(4, 1), torch.zeros(4))
    ce = build_loss("CrossEntropyLoss", {}, where="x")
    with pytest.raises(LossInputError, match=r"expected integer class indices of shape \(4,\)"):
        ce(_logits, torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(LossInputError, match=r"expects 3 inputs \(anchor, positive, negative\), got 2"):
        build_loss("TripletMarginLoss", {}, where="x")(_emb[0], _emb[1])
    with pytest.raises(LossInputError, match="target must be a tensor"):
        mse(torch.zeros(2), [0.0, 0.0])


def test_half_precision_inputs_are_computed_in_float32():
    loss = build_loss("CrossEntropyLoss", {"weight": [1.0, 2.0, 3.0]}, where="x")
    out = loss(_logits.bfloat16(), _classes)
    assert out.dtype == torch.float32
    expected = F.cross_entropy(_logits.bfloat16().float(), _classes, weight=torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(out, expected)
