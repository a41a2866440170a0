"""Sums of configured losses: ``LossCompose`` (one input pair) and ``LossKeyCompose`` (named groups).

Both return the total as a tensor, which is what a model's ``run_step`` hands back, and
keep each weighted term by name (``loss1/CrossEntropyLoss``) in ``last_terms``; the terms
also go to ``engine.events.storage.put_scalar``, so a trainer logs every term without the
model having to return them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from engine.errors import ConfigError
from engine.events.storage import put_scalar
from engine.loss.base import LossInputError, shape_str
from engine.loss.build import build_loss
from engine.utils.suggest import did_you_mean

Terms = Dict[str, Tensor]
# Spellings of the entry keys; a config system may have upper-cased them.
_ENTRY_KEYS = {"name": "name", "param": "param", "params": "param", "input_name": "input_name"}


@dataclass
class _Term:
    """One configured loss: the module, the name it is logged by, and where it came from."""

    label: str
    loss: nn.Module
    input_name: Optional[Tuple[str, ...]]
    where: str


def _parse_entry(spec: Any, where: str) -> _Term:
    """``dict(name=..., param=dict(...), input_name=[...])``; params may also sit beside name."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a loss dict like dict(name='L1Loss', param=dict(...)), got {spec!r}")
    fields: Dict[str, Any] = {}
    params: Dict[str, Any] = {}
    for key, value in spec.items():
        field = _ENTRY_KEYS.get(str(key).lower())
        if field is None:
            params[key] = value
        elif field in fields:
            raise ConfigError(f"{where}: {key!r} given twice (as {field})")
        else:
            fields[field] = value
    if "name" not in fields:
        raise ConfigError(f"{where}: expected a 'name' key naming a loss, got keys {list(spec)}")
    nested = fields.get("param") or {}
    if not isinstance(nested, Mapping):
        raise ConfigError(f"{where}.param: expected a dict of loss parameters, got {nested!r}")
    clash = sorted(set(nested) & set(params))
    if clash:
        raise ConfigError(f"{where}: parameter {clash[0]!r} given both in param and beside name")
    params.update(nested)
    loss = build_loss(fields["name"], params, where=where)
    input_name = fields.get("input_name")
    if input_name is not None:
        if isinstance(input_name, str):
            input_name = [input_name]
        if not isinstance(input_name, Sequence) or not all(isinstance(n, str) for n in input_name):
            raise ConfigError(f"{where}.input_name: expected a list of input names, got {input_name!r}")
        arguments = getattr(loss, "arguments", None)
        if arguments is not None and len(input_name) != len(arguments):
            raise ConfigError(
                f"{where}.input_name: {len(input_name)} name(s) {list(input_name)} but {fields['name']} takes "
                f"{len(arguments)} inputs ({', '.join(arguments)})"
            )
        input_name = tuple(input_name)
    return _Term(str(fields["name"]), loss, input_name, where)


def _is_group(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, Mapping) for v in value)


class _Compose(nn.Module):
    """The shared machinery: loss modules, applying one term, naming and reporting terms."""

    def __init__(self) -> None:
        super().__init__()
        self.losses = nn.ModuleList()
        self.last_terms: Terms = {}

    def _add(self, term: _Term) -> _Term:
        self.losses.append(term.loss)  # registered, so .to() / .cuda() move it
        return term

    @staticmethod
    def _call_term(term: _Term, inputs: Any, context: str) -> Tensor:
        if isinstance(inputs, Mapping):
            if term.input_name is None:
                wanted = getattr(term.loss, "arguments", ("pred", "target"))
                raise LossInputError(
                    f"{context}: the input is a dict (keys {list(inputs)}) but {term.where} has no input_name; "
                    f"expected input_name=[...] naming its {len(wanted)} inputs ({', '.join(wanted)})"
                )
            missing = [n for n in term.input_name if n not in inputs]
            if missing:
                raise LossInputError(
                    f"{context}: input_name {missing[0]!r} ({term.where}.input_name) is not in the input dict."
                    f"{did_you_mean(missing[0], [str(k) for k in inputs])} Keys given: {list(inputs)}"
                )
            args: Sequence[Any] = [inputs[n] for n in term.input_name]
        elif isinstance(inputs, (list, tuple)):
            args = inputs
        else:
            args = (inputs,)
        try:
            value = term.loss(*args)
        except LossInputError as exc:
            raise LossInputError(f"{context}: {exc}") from None
        if value.dim() != 0:
            raise LossInputError(
                f"{context}: returned shape {shape_str(value.shape)}; a compose sums scalar losses: "
                f"expected reduction='mean' or 'sum' ({term.where})"
            )
        return value

    def _finish(self, terms: Terms, return_terms: bool) -> Union[Tensor, Tuple[Tensor, Terms]]:
        total = None
        for value in terms.values():
            total = value if total is None else total + value
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        for name, value in self.last_terms.items():
            put_scalar(name, value)
        return (total, terms) if return_terms else total


def _unique(name: str, taken: Mapping[str, Any]) -> str:
    """``name``, or ``name_1``, ``name_2``, ... when a term of that name exists already."""
    if name not in taken:
        return name
    i = 1
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


class LossCompose(_Compose):
    """Every loss of a list applied to the same inputs, summed.

    Args:
        losses: loss dicts, ``dict(name='L1Loss', lambda_weight=1.0)`` (or the
            ``LossKeyCompose`` form with ``param=dict(...)`` and ``input_name``).
        prefix: the term names are ``{prefix}/{loss name}``; give two composes of one
            model different prefixes so their terms stay apart in the logs.
        where: the config key path of ``losses``, named in errors.

    Call it with ``(pred, target)`` as one tuple or as two arguments, or with a dict
    matched by each loss's ``input_name``. Returns the total, or ``(total, terms)`` with
    ``return_terms=True`` (terms keep their graph).
    """

    def __init__(self, losses: Sequence[Mapping[str, Any]], prefix: str = "loss", where: str = "LOSS") -> None:
        super().__init__()
        if isinstance(losses, Mapping):
            losses = [losses]
        if not isinstance(losses, (list, tuple)) or not losses:
            raise ConfigError(f"{where}: expected a non-empty list of loss dicts, got {losses!r}")
        self.prefix = prefix
        self.terms = [self._add(_parse_entry(spec, f"{where}[{i}]")) for i, spec in enumerate(losses)]

    def forward(self, *inputs: Any, return_terms: bool = False) -> Union[Tensor, Tuple[Tensor, Terms]]:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple, Mapping)):
            inputs = inputs[0]
        terms: Terms = {}
        for term in self.terms:
            name = _unique(f"{self.prefix}/{term.label}", terms)
            terms[name] = self._call_term(term, inputs, f"LossCompose {name}")
        return self._finish(terms, return_terms)


class LossKeyCompose(_Compose):
    """Named groups of losses, each fed its own inputs, all summed (the seed's ``LossKeyCompose``).

    Args:
        cfg: ``{key: [entry, ...]}``; an entry is a loss dict
            ``dict(name=..., param=dict(...), input_name=[...])`` or a group: a tuple/list of
            loss dicts applied together to one input.
        where: the config key path of ``cfg`` (e.g. ``'TRAINER.MODEL.LOSS'``), named in errors.

    Call it with ``{key: inputs}``. ``inputs`` is one input (a tuple/list of tensors, or a
    dict read through ``input_name``) or a list of inputs. With E entries and I inputs:
    I == E pairs them in order; E == 1 applies the entry to every input; I == 1 applies
    every entry to it. Keys not passed are skipped (a GAN computes its generator and
    discriminator keys at different times). With a single key, a bare tuple
    ``compose((fake, real))`` is accepted as its input.

    Returns the total, or ``(total, terms)`` with ``return_terms=True``; term names are
    ``{key}/{loss name}``, with ``_1``, ``_2`` ... for repeats.
    """

    def __init__(self, cfg: Mapping[str, Any], where: str = "LOSS") -> None:
        super().__init__()
        if not isinstance(cfg, Mapping) or not cfg:
            raise ConfigError(f"{where}: expected a dict {{key: [loss dicts]}}, got {cfg!r}")
        self.plan: Dict[str, List[List[_Term]]] = {}
        for key, entries in cfg.items():
            path = f"{where}.{key}"
            if isinstance(entries, Mapping):
                entries = [entries]
            if not isinstance(entries, (list, tuple)) or not entries:
                raise ConfigError(f"{path}: expected a non-empty list of loss dicts, got {entries!r}")
            plan = []
            for i, entry in enumerate(entries):
                if _is_group(entry):
                    plan.append([self._add(_parse_entry(s, f"{path}[{i}][{j}]")) for j, s in enumerate(entry)])
                else:
                    plan.append([self._add(_parse_entry(entry, f"{path}[{i}]"))])
            self.plan[str(key)] = plan

    def forward(self, inputs: Any, return_terms: bool = False) -> Union[Tensor, Tuple[Tensor, Terms]]:
        terms: Terms = {}
        for key, value in self._by_key(inputs).items():
            entries = self.plan[key]
            for entry, inp, index in self._pair(key, entries, self._as_input_list(key, value)):
                for term in entry:
                    name = _unique(f"{key}/{term.label}", terms)
                    context = f"LossKeyCompose key {key!r}, {term.label} (input {index})"
                    terms[name] = self._call_term(term, inp, context)
        if not terms:
            raise LossInputError(f"LossKeyCompose: no inputs given; expected {{key: inputs}} for keys {list(self.plan)}")
        return self._finish(terms, return_terms)

    def _by_key(self, inputs: Any) -> Dict[str, Any]:
        keys = list(self.plan)
        if isinstance(inputs, (list, tuple)):
            if len(keys) == 1:
                return {keys[0]: inputs}
            raise LossInputError(
                f"LossKeyCompose: got a bare {type(inputs).__name__} but {len(keys)} loss keys are configured "
                f"({', '.join(keys)}); expected a dict {{key: inputs}}"
            )
        if not isinstance(inputs, Mapping):
            raise LossInputError(f"LossKeyCompose: expected a dict {{key: inputs}} for keys {keys}, got {type(inputs).__name__}")
        routed = {}
        lower = {k.lower(): k for k in keys}
        for key, value in inputs.items():
            resolved = key if key in self.plan else lower.get(str(key).lower())
            if resolved is None:
                raise LossInputError(
                    f"LossKeyCompose: unknown loss key {key!r}.{did_you_mean(str(key), keys)} Configured keys: "
                    f"{', '.join(keys)} (to pass named inputs, wrap them: {{{keys[0]!r}: {{...}}}})"
                )
            routed[resolved] = value
        return routed

    @staticmethod
    def _as_input_list(key: str, value: Any) -> List[Any]:
        """One input, or a list of inputs: a list whose items are all tuples/lists/dicts is the latter."""
        if isinstance(value, Mapping):
            return [value]
        if isinstance(value, (list, tuple)):
            nested = [isinstance(v, (list, tuple, Mapping)) for v in value]
            if value and all(nested):
                return list(value)
            if not any(nested):
                return [value]
            raise LossInputError(
                f"LossKeyCompose key {key!r}: inputs mix tensors and lists; expected one input "
                f"(a tuple of tensors or a dict) or a list of such inputs"
            )
        return [value]

    @staticmethod
    def _pair(key: str, entries: List[List[_Term]], inputs: List[Any]) -> List[Tuple[List[_Term], Any, int]]:
        n_entries, n_inputs = len(entries), len(inputs)
        if n_inputs == n_entries:
            return [(e, x, i) for i, (e, x) in enumerate(zip(entries, inputs))]
        if n_entries == 1 and n_inputs > 0:
            return [(entries[0], x, i) for i, x in enumerate(inputs)]
        if n_inputs == 1:
            return [(e, inputs[0], 0) for e in entries]
        names = ", ".join("+".join(t.label for t in e) for e in entries)
        raise LossInputError(
            f"LossKeyCompose key {key!r}: {n_inputs} inputs do not match its {n_entries} losses ({names}); "
            f"expected {n_entries} inputs (one per loss) or 1 input (shared by every loss)"
        )
