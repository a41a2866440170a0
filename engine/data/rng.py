"""Seeding and exact snapshots of the process-global RNGs that augmentations draw from.

A sample is augmented with Python's ``random``, numpy's global ``RandomState`` and
torch's CPU generator all seeded from its per-sample seed (user transforms may use any
of them). Loading in the main process (``num_workers=0``) must then put the training
RNG states back exactly, or loading data would shift dropout and every later draw.

numpy's own ``get_state``/``set_state`` copy the 624-word Mersenne Twister key one
element at a time through Python objects (about 90 us each, per micro-batch).
:func:`capture` instead copies the raw MT19937 state struct through the bit
generator's documented ``ctypes.state_address`` (under 1 us). The one part of a legacy
state outside that struct is ``RandomState``'s cached second Gaussian (``has_gauss``),
which nothing exposes cheaply: :func:`capture` reads it with one ``standard_normal()``
probe (a cached value is returned without touching the MT state, otherwise the state
moves), and only a state holding a cached Gaussian, which a training loop leaves only
after an odd number of legacy normal draws, takes numpy's slow exact path. The copy's
layout is checked against ``bit_generator.state`` once per process; a bit generator
other than MT19937, or a layout that does not match, also takes the slow path.
"""

from __future__ import annotations

import ctypes
import random
import sys
from typing import Any, Optional, Tuple

import numpy as np
import torch

#: the MT19937 state struct: ``uint32_t key[624]; int pos;``
_MT_WORDS = 624
_MT_BYTES = _MT_WORDS * 4 + ctypes.sizeof(ctypes.c_int)
_raw_layout_ok: Optional[bool] = None  # checked on first use


def seed_all(seed: int) -> None:
    """Seed ``random``, numpy's global RNG and torch's CPU generator with ``seed`` (a 32-bit int).

    The CPU generator only: ``torch.manual_seed`` would also reseed every CUDA device's
    training RNG (and costs about 0.2 ms a call, recording a stack trace for CUDA's lazy init).

    Args:
        seed: the sample's seed, in ``[0, 2**32)`` (numpy's legacy seeding takes no more).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


def _layout_matches(bitgen: Any) -> bool:
    """Whether the raw bytes at ``state_address`` are the key and position ``bitgen.state`` reports."""
    state = bitgen.state["state"]
    raw = ctypes.string_at(bitgen.ctypes.state_address, _MT_BYTES)
    key = np.frombuffer(raw, np.uint32, _MT_WORDS)
    pos = int.from_bytes(raw[_MT_WORDS * 4:], sys.byteorder, signed=True)
    return bool(np.array_equal(key, state["key"])) and pos == state["pos"]


def _raw_capable(bitgen: Any) -> bool:
    global _raw_layout_ok
    if type(bitgen) is not np.random.MT19937:
        return False
    if _raw_layout_ok is None:
        _raw_layout_ok = _layout_matches(bitgen)
    return _raw_layout_ok


def _capture_numpy() -> Tuple[Any, ...]:
    """numpy's global legacy state: ``("raw", bitgen, bytes)`` when it holds no cached Gaussian, else the full tuple."""
    bitgen = np.random.get_bit_generator()
    if not _raw_capable(bitgen):
        return ("legacy", np.random.get_state())
    address = bitgen.ctypes.state_address
    raw = ctypes.string_at(address, _MT_BYTES)
    probe = np.random.standard_normal()
    if ctypes.string_at(address, _MT_BYTES) != raw:
        return ("raw", bitgen, raw)  # nothing was cached: the probe drew from the MT state
    key = np.frombuffer(raw, np.uint32, _MT_WORDS).copy()
    pos = int.from_bytes(raw[_MT_WORDS * 4:], sys.byteorder, signed=True)
    return ("legacy", ("MT19937", key, pos, 1, float(probe)))


def _restore_numpy(saved: Tuple[Any, ...]) -> None:
    if saved[0] == "legacy":
        np.random.set_state(saved[1])
        return
    _, bitgen, raw = saved
    # reattaching the bit generator clears RandomState's cached Gaussian (has_gauss = 0, as
    # captured), and undoes a bit generator swapped in meanwhile; then the MT words go back
    np.random.set_bit_generator(bitgen)
    ctypes.memmove(bitgen.ctypes.state_address, raw, _MT_BYTES)


def capture() -> Tuple[Any, ...]:
    """The states of ``random``, numpy's global RNG and torch's CPU generator, for :func:`restore`.

    May leave numpy's global state changed (its probe draw): call :func:`restore` (or
    reseed) before anything else draws.

    Returns:
        An opaque snapshot.
    """
    return random.getstate(), _capture_numpy(), torch.get_rng_state()


def restore(saved: Tuple[Any, ...]) -> None:
    """Put back exactly the states :func:`capture` returned (bit-identical later draws).

    Args:
        saved: what :func:`capture` returned.
    """
    random.setstate(saved[0])
    _restore_numpy(saved[1])
    torch.set_rng_state(saved[2])
