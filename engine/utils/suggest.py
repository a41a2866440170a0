"""Closest-name suggestions for misspelled config keys and registry names."""

from __future__ import annotations

import difflib
from typing import Iterable, List


def closest_names(name: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """The candidates most similar to ``name``, case-insensitively, best first."""
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
    return [by_lower[m] for m in matches]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ``did you mean ...?`` phrase, or the empty string when nothing is close."""
    close = closest_names(name, candidates)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
