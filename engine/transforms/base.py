"""The transform base class and the parameter checks every transform shares.

Parameters are checked once, in ``__init__``, so that a bad config fails when the
pipeline is built (with the transform, the parameter, the value and what was
expected) instead of deep inside a data-loader worker.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from engine.errors import ConfigError

INTERPOLATIONS: Dict[str, int] = {
    "INTER_NEAREST": cv2.INTER_NEAREST,
    "INTER_LINEAR": cv2.INTER_LINEAR,
    "INTER_AREA": cv2.INTER_AREA,
    "INTER_CUBIC": cv2.INTER_CUBIC,
    "INTER_LANCZOS4": cv2.INTER_LANCZOS4,
    "INTER_NEAREST_EXACT": cv2.INTER_NEAREST_EXACT,
    "INTER_LINEAR_EXACT": cv2.INTER_LINEAR_EXACT,
}


class BaseTransform:
    """A callable ``results -> results`` applied with probability ``p``.

    Subclasses implement :meth:`transform`, the unconditional body. ``__call__`` only adds
    the probability gate, so composition helpers (``OneOf``) can force a chosen transform
    to run by calling :meth:`transform` directly.

    The probability draw uses numpy's global RNG, like every other draw in this package:
    the data loader seeds it per sample, which makes augmentation reproducible.
    """

    def __init__(self, p: float = 1.0) -> None:
        self.p = check_prob(self, "p", p)

    def __call__(self, results: dict) -> dict:
        return self.transform(results) if self.draw() else results

    def draw(self) -> bool:
        """Whether to apply this time; p of exactly 0 or 1 draws nothing from the RNG."""
        return self.p >= 1.0 or (self.p > 0.0 and np.random.random() < self.p)

    def transform(self, results: dict) -> dict:
        """Apply the transform unconditionally."""
        raise NotImplementedError

    def __repr__(self) -> str:
        try:
            names = list(inspect.signature(type(self).__init__).parameters)[1:]
        except (TypeError, ValueError):  # pragma: no cover - builtins only
            names = []
        shown = [f"{n}={getattr(self, n)!r}" for n in names if n != "dataset" and hasattr(self, n)]
        return f"{type(self).__name__}({', '.join(shown)})"


def _owner(owner: Any) -> str:
    return owner if isinstance(owner, str) else type(owner).__name__


def config_error(owner: Any, name: str, value: Any, expected: str) -> ConfigError:
    """The one message format of bad transform parameters: who, which, what, and what instead.

    The parts stay on the error (``param``, ``value``, ``expected``) so a wrapper such as
    ``RandomColorJitter`` can re-raise under its own parameter names.
    """
    err = ConfigError(f"{_owner(owner)}: {name}={value!r} is invalid; expected {expected}")
    err.param, err.value, err.expected = name, value, expected
    return err


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(owner: Any, name: str, value: Any, low: float = -np.inf, high: float = np.inf,
                 *, integer: bool = False) -> Any:
    """``value`` if it is a (integer) number in ``[low, high]``, else a ConfigError."""
    kind = "an integer" if integer else "a number"
    ok = _is_number(value) and (not integer or float(value).is_integer())
    if not ok or not low <= value <= high:
        raise config_error(owner, name, value, f"{kind} in [{low}, {high}]")
    return int(value) if integer else float(value)


def check_prob(owner: Any, name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    return check_number(owner, name, value, 0.0, 1.0)


def check_bool(owner: Any, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise config_error(owner, name, value, "True or False")
    return bool(value)


def to_range(owner: Any, name: str, value: Any, *, center: Optional[float] = 1.0,
             low: Optional[float] = None, bounds: Tuple[float, float] = (-np.inf, np.inf)) -> Tuple[float, float]:
    """Turn a seed-style limit into a ``(lo, hi)`` range and check it.

    A pair is the range itself. A single number ``x`` means ``[center - x, center + x]``
    (the seed's convention: ``0.2`` around 1 is ``[0.8, 1.2]``), or ``[low, x]`` when
    ``low`` is given (kernel sizes, CLAHE clip limits, where a symmetric range is
    meaningless), or the fixed value ``[x, x]`` when both ``center`` and ``low`` are None.
    """
    if _is_number(value):
        if center is None and low is None:
            rng = (float(value), float(value))
        elif low is not None:
            rng = (float(low), float(value))
        else:
            rng = (center - abs(float(value)), center + abs(float(value)))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 \
            and all(_is_number(v) for v in value):
        rng = (float(value[0]), float(value[1]))
    else:
        raise config_error(owner, name, value, "a number or a [low, high] pair")
    if rng[0] > rng[1]:
        raise config_error(owner, name, value, f"low <= high (got the range {list(rng)})")
    if rng[0] < bounds[0] or rng[1] > bounds[1]:
        raise config_error(owner, name, value, f"a range within [{bounds[0]}, {bounds[1]}], got {list(rng)}")
    return rng


def check_choices(owner: Any, name: str, value: Any, allowed: Sequence[str]) -> Tuple[str, ...]:
    """One allowed string, or a non-empty list of them (the transform picks one per sample)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or \
            any(not isinstance(v, str) or v not in allowed for v in values):
        raise config_error(owner, name, value, f"one of {list(allowed)} or a non-empty list of them")
    return tuple(values)


def check_interpolation(owner: Any, name: str, value: Any) -> Tuple[int, ...]:
    """cv2 interpolation flags from names such as ``'INTER_LINEAR'`` (or a list to choose from)."""
    names = check_choices(owner, name, value, list(INTERPOLATIONS))
    return tuple(INTERPOLATIONS[n] for n in names)


def check_size(owner: Any, name: str, value: Any) -> Tuple[int, int]:
    """A positive ``int`` (square) or ``(h, w)`` pair of positive ints."""
    if _is_number(value) and float(value).is_integer() and value > 0:
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(_is_number(v) and float(v).is_integer() and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise config_error(owner, name, value, "a positive int or an (h, w) pair of positive ints")


# The draws below are bit-identical to the numpy calls they replace, value and RNG
# consumption alike (tests/unit/test_transforms_draws.py), so augmented streams stay as they
# were; they exist because numpy's legacy wrappers cost 3-4 us a call in argument handling,
# several times the draw itself, and a sample makes a dozen draws.

#: numpy's legacy bounded integers draw 32-bit words (one MT19937 ``random_raw`` each)
_MAX_WORD = 0xFFFFFFFF


def uniform(rng: Tuple[float, float]) -> float:
    """One draw from ``[lo, hi]``, as ``np.random.uniform(lo, hi)``; a degenerate range draws nothing.

    ``lo + (hi - lo) * random()`` is the legacy ``uniform``'s own formula in the same double
    operations, at a third of its call cost.
    """
    lo, hi = rng
    return lo if lo == hi else lo + (hi - lo) * np.random.random()


def randbelow(n: int) -> int:
    """``int(np.random.randint(n))`` for ``n >= 1``: the same value, the same words drawn; ``n == 1`` draws nothing.

    numpy's legacy ``randint`` takes 32-bit words masked to the smallest ``2**k - 1`` that
    covers ``n - 1`` and rejects those above it. With MT19937 (the global RNG's generator)
    a word is one ``random_raw()``; other generators buffer half-words their own way and
    go through numpy.

    Args:
        n: how many values to choose from (``>= 1``).

    Returns:
        An int in ``[0, n)``.
    """
    top = n - 1
    if top == 0:
        return 0
    bitgen = np.random.get_bit_generator()
    if type(bitgen) is not np.random.MT19937 or top > _MAX_WORD:
        return int(np.random.randint(n))
    mask = (1 << top.bit_length()) - 1
    while True:
        word = bitgen.random_raw() & mask
        if word <= top:
            return int(word)


def shuffled(n: int) -> List[int]:
    """``np.random.permutation(n)`` as a list: numpy shuffles a list with the same Fisher-Yates draws, minus the array.

    Args:
        n: length of the permutation.

    Returns:
        ``0..n-1`` in a random order.
    """
    order = list(range(n))
    np.random.shuffle(order)
    return order


def choice(options: Sequence[Any]) -> Any:
    """One of ``options``, drawn from numpy's global RNG (one option draws nothing)."""
    return options[0] if len(options) == 1 else options[randbelow(len(options))]
