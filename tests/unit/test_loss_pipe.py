"""LossCompose and LossKeyCompose: pairings, groups, named inputs, per-term logging, bad input."""

from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F

from engine.errors import ConfigError, RegistryError
from engine.events.storage import EventStorage
from engine.loss.pipe import LossCompose, LossKeyCompose

g = torch.Generator().manual_seed(0)
A, B, C, D = (torch.randn(3, 4, generator=g) for _ in range(4))
LOGITS = torch.randn(3, 5, generator=g)
LABELS = torch.tensor([0, 4, 2])


class AttrDict(dict):
    """A dict with attribute access, like a config node."""

    def __getattr__(self, key):
        return self[key]


class ReadOnlyConfig(Mapping):
    """A Mapping that is not a dict subclass, with attribute access."""

    def __init__(self, **items):
        self._items = items

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __getattr__(self, key):
        try:
            return self.__dict__["_items"][key]
        except KeyError:
            raise AttributeError(key) from None


def test_loss_compose_sums_every_loss_on_one_pair():
    compose = LossCompose([dict(name="L1Loss"), dict(name="MSELoss", lambda_weight=2.0),
                           dict(name="L1Loss", param=dict(lambda_weight=0.5))])
    expected = F.l1_loss(A, B) + 2 * F.mse_loss(A, B) + 0.5 * F.l1_loss(A, B)
    torch.testing.assert_close(compose((A, B)), expected)
    torch.testing.assert_close(compose(A, B), expected)
    total, terms = compose(A, B, return_terms=True)
    assert list(terms) == ["loss/L1Loss", "loss/MSELoss", "loss/L1Loss_1"]
    torch.testing.assert_close(terms["loss/L1Loss_1"], 0.5 * F.l1_loss(A, B))
    torch.testing.assert_close(total, sum(terms.values()))


def test_loss_compose_dict_input_and_prefix():
    compose = LossCompose([dict(name="L1Loss", input_name=["out", "gt"])], prefix="g")
    torch.testing.assert_close(compose({"out": A, "gt": B, "unused": C}), F.l1_loss(A, B))
    assert list(compose.last_terms) == ["g/L1Loss"]


def test_one_input_per_loss():
    compose = LossKeyCompose(dict(loss1=[dict(name="L1Loss"), dict(name="CrossEntropyLoss", param=dict(lambda_weight=10.0))]))
    total, terms = compose({"loss1": [(A, B), (LOGITS, LABELS)]}, return_terms=True)
    assert list(terms) == ["loss1/L1Loss", "loss1/CrossEntropyLoss"]
    torch.testing.assert_close(total, F.l1_loss(A, B) + 10 * F.cross_entropy(LOGITS, LABELS))


def test_one_loss_many_inputs():
    compose = LossKeyCompose(dict(pix=[dict(name="L1Loss", param=dict(lambda_weight=2.0))]))
    total, terms = compose({"pix": [(A, B), (C, D), (A, D)]}, return_terms=True)
    assert list(terms) == ["pix/L1Loss", "pix/L1Loss_1", "pix/L1Loss_2"]
    torch.testing.assert_close(total, 2 * (F.l1_loss(A, B) + F.l1_loss(C, D) + F.l1_loss(A, D)))


def test_one_input_many_losses():
    compose = LossKeyCompose(dict(rec=[dict(name="L1Loss"), dict(name="MSELoss"), dict(name="SmoothL1Loss")]))
    expected = F.l1_loss(A, B) + F.mse_loss(A, B) + F.smooth_l1_loss(A, B)
    torch.testing.assert_close(compose({"rec": [(A, B)]}), expected)
    torch.testing.assert_close(compose({"rec": (A, B)}), expected)  # one input need not be wrapped


def test_groups_apply_together_to_one_input():
    cfg = dict(loss1=[(dict(name="L1Loss"), dict(name="MSELoss", param=dict(lambda_weight=3.0))),
                      dict(name="CrossEntropyLoss")])
    compose = LossKeyCompose(cfg)
    total, terms = compose({"loss1": [(A, B), (LOGITS, LABELS)]}, return_terms=True)
    assert list(terms) == ["loss1/L1Loss", "loss1/MSELoss", "loss1/CrossEntropyLoss"]
    torch.testing.assert_close(total, F.l1_loss(A, B) + 3 * F.mse_loss(A, B) + F.cross_entropy(LOGITS, LABELS))
    # a group as the only entry is applied to each input; a list works like a tuple
    many = LossKeyCompose(dict(k=[[dict(name="L1Loss"), dict(name="MSELoss")]]))
    expected = F.l1_loss(A, B) + F.mse_loss(A, B) + F.l1_loss(C, D) + F.mse_loss(C, D)
    torch.testing.assert_close(many({"k": [(A, B), (C, D)]}), expected)


def test_dict_inputs_matched_by_input_name():
    cfg = dict(loss2=[(dict(name="L1Loss", input_name=["fake", "real"]),
                       dict(name="CrossEntropyLoss", input_name=["logits", "labels"]))])
    compose = LossKeyCompose(cfg)
    inputs = dict(fake=A, real=B, logits=LOGITS, labels=LABELS)
    torch.testing.assert_close(compose({"loss2": inputs}), F.l1_loss(A, B) + F.cross_entropy(LOGITS, LABELS))
    torch.testing.assert_close(compose({"loss2": [inputs]}), F.l1_loss(A, B) + F.cross_entropy(LOGITS, LABELS))


def test_seed_readme_config_and_bare_tuple_call():
    cfg = dict(loss=dict(loss1=[dict(name="CrossEntropyLoss", param=dict(lambda_weight=10.0))],
                         loss2=[dict(name="CrossEntropyLoss", param=dict(lambda_weight=1.0),
                                     input_name=["input_tensor", "target_tensor"])]))
    compose = LossKeyCompose(cfg["loss"])
    total = compose({"loss1": (LOGITS, LABELS), "loss2": {"input_tensor": LOGITS, "target_tensor": LABELS}})
    torch.testing.assert_close(total, 11 * F.cross_entropy(LOGITS, LABELS))
    single = LossKeyCompose(dict(loss1=[dict(name="CrossEntropyLoss", param=dict(lambda_weight=10.0))]))
    torch.testing.assert_close(single((LOGITS, LABELS)), 10 * F.cross_entropy(LOGITS, LABELS))
    with pytest.raises(ValueError, match=r"bare tuple but 2 loss keys are configured \(loss1, loss2\)"):
        compose((LOGITS, LABELS))


@pytest.mark.parametrize("wrap", [AttrDict, ReadOnlyConfig])
def test_config_as_mapping_with_attribute_access_and_upper_case_entry_keys(wrap):
    entry = wrap(NAME="MSELoss", PARAM=wrap(lambda_weight=4.0), INPUT_NAME=["x", "y"])
    compose = LossKeyCompose(wrap(myKey=[entry]))
    torch.testing.assert_close(compose({"myKey": {"x": A, "y": B}}), 4 * F.mse_loss(A, B))
    assert list(compose.last_terms) == ["myKey/MSELoss"]


def test_terms_are_kept_detached_and_put_into_the_event_storage():
    compose = LossKeyCompose(dict(loss1=[dict(name="L1Loss"), dict(name="L1Loss", param=dict(lambda_weight=2.0))],
                                  loss2=[dict(name="MSELoss")]))
    a = A.clone().requires_grad_(True)
    with EventStorage() as storage:
        total = compose({"loss1": [(a, B), (C, D)], "loss2": (a, D)})
        logged = storage.pop_step()
    assert total.requires_grad and isinstance(total, torch.Tensor)
    expected = {"loss1/L1Loss": F.l1_loss(A, B), "loss1/L1Loss_1": 2 * F.l1_loss(C, D), "loss2/MSELoss": F.mse_loss(A, D)}
    assert set(logged) == set(expected) == set(compose.last_terms)
    for name, value in expected.items():
        torch.testing.assert_close(logged[name], value)
        torch.testing.assert_close(compose.last_terms[name], value)
        assert not compose.last_terms[name].requires_grad
    # outside a training loop reporting is a no-op and the call still works
    compose({"loss2": (A, D)})
    assert list(compose.last_terms) == ["loss2/MSELoss"]


def test_compose_moves_its_losses_with_to():
    compose = LossCompose([dict(name="CrossEntropyLoss", weight=[1.0, 2.0, 1.0, 1.0, 1.0])])
    compose.to(torch.float64)
    assert compose.losses[0].fn.weight.dtype == torch.float64


# ---- bad input -------------------------------------------------------------------------------

def test_unknown_loss_name_lists_closest_and_names_the_key():
    with pytest.raises(ConfigError, match=r"TRAINER\.MODEL\.LOSS\.loss1\[0\]\.name.*'CrossEntropyLos'.*"
                                          r"Did you mean 'CrossEntropyLoss'") as info:
        LossKeyCompose(dict(loss1=[dict(name="CrossEntropyLos")]), where="TRAINER.MODEL.LOSS")
    assert isinstance(info.value, RegistryError)  # also catchable as the registry's error


def test_bad_entries_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"LOSS\.loss1\[0\].*unexpected parameter 'lambda_weigth'.*Did you mean 'lambda_weight'"):
        LossKeyCompose(dict(loss1=[dict(name="L1Loss", param=dict(lambda_weigth=2.0))]))
    with pytest.raises(ConfigError, match=r"LOSS\.k\[1\]: expected a 'name' key"):
        LossKeyCompose(dict(k=[dict(name="L1Loss"), dict(param=dict())]))
    with pytest.raises(ConfigError, match=r"LOSS\.k\[0\]\.input_name: 3 name\(s\).*L1Loss takes 2 inputs \(pred, target\)"):
        LossKeyCompose(dict(k=[dict(name="L1Loss", input_name=["a", "b", "c"])]))
    with pytest.raises(ConfigError, match=r"LOSS\.k: expected a non-empty list"):
        LossKeyCompose(dict(k=[]))


def test_input_name_missing_from_the_input_dict():
    compose = LossKeyCompose(dict(loss2=[dict(name="L1Loss", input_name=["fake", "real"])]))
    with pytest.raises(ValueError, match=r"key 'loss2'.*input_name 'real'.*not in the input dict.*Keys given: \['fake', 'gt'\]"):
        compose({"loss2": {"fake": A, "gt": B}})
    plain = LossKeyCompose(dict(loss1=[dict(name="L1Loss")]))
    with pytest.raises(ValueError, match=r"key 'loss1'.*input is a dict.*no input_name; expected input_name=\[\.\.\.\] naming its 2 inputs"):
        plain({"loss1": {"fake": A, "real": B}})


def test_input_count_matching_no_pairing():
    compose = LossKeyCompose(dict(loss1=[dict(name="L1Loss"), dict(name="MSELoss"), dict(name="SmoothL1Loss")]))
    with pytest.raises(ValueError, match=r"key 'loss1': 2 inputs do not match its 3 losses \(L1Loss, MSELoss, SmoothL1Loss\); "
                                         r"expected 3 inputs \(one per loss\) or 1 input"):
        compose({"loss1": [(A, B), (C, D)]})


def test_shapes_that_do_not_fit_name_the_key():
    compose = LossKeyCompose(dict(seg=[dict(name="CrossEntropyLoss")]))
    with pytest.raises(ValueError, match=r"key 'seg', CrossEntropyLoss \(input 0\): target shape \(3, 2\).*"
                                         r"expected integer class indices of shape \(3,\)"):
        compose({"seg": (LOGITS, torch.zeros(3, 2, dtype=torch.long))})
    pair = LossCompose([dict(name="MSELoss")])
    with pytest.raises(ValueError, match=r"LossCompose loss/MSELoss: target shape \(3, 1\) does not fit pred shape \(3, 4\)"):
        pair(A, torch.zeros(3, 1))


def test_unknown_call_key_and_unreduced_loss():
    compose = LossKeyCompose(dict(loss1=[dict(name="L1Loss", reduction="none")]))
    with pytest.raises(ValueError, match=r"unknown loss key 'los1'.*Did you mean 'loss1'.*Configured keys: loss1"):
        compose({"los1": (A, B)})
    with pytest.raises(ValueError, match=r"key 'loss1'.*returned shape \(3, 4\).*expected reduction='mean' or 'sum'"):
        compose({"loss1": (A, B)})


def test_the_docs_example_runs():
    cfg = dict(
        pix=[dict(name="L1Loss", param=dict(lambda_weight=1.0))],
        seg=[dict(name="CrossEntropyLoss", param=dict(lambda_weight=10.0, ignore_index=255)),
             dict(name="BinaryDiceLoss", param=dict(from_logits=True), input_name=["edge_logits", "edge_mask"])],
        percep=[(dict(name="VggLoss", param=dict(allow_random_init=True, layers=["relu1_2"], lambda_weight=0.1)),
                 dict(name="SSIMLoss", param=dict(lambda_weight=0.5)))],
    )
    loss = LossKeyCompose(cfg, where="TRAINER.MODEL.LOSS")
    fake, real = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    total = loss({
        "pix": [(fake, real), (fake[..., ::2, ::2], real[..., ::2, ::2])],
        "seg": [(torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))),
                dict(edge_logits=torch.randn(2, 1, 8, 8), edge_mask=(torch.rand(2, 1, 8, 8) > 0.5).float())],
        "percep": (fake, real),
    })
    assert list(loss.last_terms) == ["pix/L1Loss", "pix/L1Loss_1", "seg/CrossEntropyLoss", "seg/BinaryDiceLoss",
                                     "percep/VggLoss", "percep/SSIMLoss"]
    torch.testing.assert_close(total, sum(loss.last_terms.values()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_losses_follow_the_inputs_to_the_gpu_and_compute_bf16_in_float32():
    compose = LossKeyCompose(dict(seg=[dict(name="CrossEntropyLoss", param=dict(weight=[1.0, 2.0, 1.0, 1.0, 1.0]))],
                                  img=[(dict(name="SSIMLoss"),
                                        dict(name="VggLoss", param=dict(allow_random_init=True, layers=["relu1_2"])))]))
    logits, fake, real = LOGITS.cuda().bfloat16(), torch.rand(1, 3, 16, 16).cuda(), torch.rand(1, 3, 16, 16).cuda()
    total = compose({"seg": (logits, LABELS.cuda()), "img": (fake.bfloat16(), real)})
    assert total.device.type == "cuda" and total.dtype == torch.float32
    assert all(t.device.type == "cuda" for t in compose.state_dict().values())
