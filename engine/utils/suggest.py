"""Closest-name suggestions for misspelled config keys and registry names."""

from __future__ import annotations

import difflib
from typing import Iterable, List, Optional


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


def typo_of(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate ``name`` is most likely a misspelling of, or None.

    Stricter than ``closest_names``: where a config accepts names of the user's own
    (helper variables of a ``.py`` config, keys of the open ``trainer`` section), a name
    must not be refused merely for resembling a framework name (``model_path`` beside
    ``model``, ``my_weights`` beside ``weights``). A typo is one edit (insertion,
    deletion, substitution or swap of neighbours) from a candidate, or two edits from a
    candidate of eight letters or more; case is ignored, and an exact match is no typo.

    Args:
        name: the name as the user wrote it.
        candidates: the framework's names.

    Returns:
        The closest candidate within that distance (ties: the first given), or None.
    """
    lowered = name.lower()
    best: Optional[str] = None
    best_distance = 3
    for candidate in candidates:
        target = candidate.lower()
        if target == lowered:
            return None
        allowed = 2 if len(target) >= 8 else 1
        distance = _edit_distance(lowered, target, limit=allowed)
        if distance <= allowed and distance < best_distance:
            best, best_distance = candidate, distance
    return best


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance of ``a`` and ``b``; anything above ``limit`` reads as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: List[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)
