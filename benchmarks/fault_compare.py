"""Comparison of two finished runs of ``benchmarks/fault_injection.py``: bitwise, weights to records.

Kept apart from the harness (which starts, kills and resumes the runs): this part only reads
their final tags and the per-rank records the toy project writes.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Dict, List

from engine.checkpoint import layout

#: ranks of every fault-injection run
WORLD = 2


def _tensors(obj: Any, prefix: str = "") -> Dict[str, Any]:
    """Every tensor inside a nested checkpoint object, by path."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    found: Dict[str, Any] = {}
    for key, value in items:
        found.update(_tensors(value, f"{prefix}/{key}"))
    return found


def compare(reference: Path, run: Path, s: Any, resumed_at: int) -> List[str]:
    """Differences between two finished runs' final tags and records; empty when bitwise equal.

    ``s``: the harness's ``Settings`` (its ``steps``); ``resumed_at``: the step the last launch resumed at.
    """
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    final = layout.tag_name(s.steps)
    a_dir, b_dir = reference / "checkpoints" / final, run / "checkpoints" / final
    diffs: List[str] = []
    for d in (a_dir, b_dir):
        ok, why = layout.check_complete(str(d))
        if not ok:
            return [f"{d}: {why}"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # DeepSpeed's chatter
        wa = get_fp32_state_dict_from_zero_checkpoint(str(a_dir), tag="generator")
        wb = get_fp32_state_dict_from_zero_checkpoint(str(b_dir), tag="generator")
    if wa.keys() != wb.keys():
        return [f"fp32 weights: keys differ {sorted(wa)} vs {sorted(wb)}"]
    diffs += [f"fp32 weight {k} differs" for k in wa if not torch.equal(wa[k], wb[k])]
    for f in sorted((a_dir / "generator").glob("*.pt")):
        ta = _tensors(torch.load(f, map_location="cpu", weights_only=False))
        tb = _tensors(torch.load(b_dir / "generator" / f.name, map_location="cpu", weights_only=False))
        diffs += [f"{f.name}{k} differs" for k in ta if k not in tb or not torch.equal(ta[k], tb[k])]
    return diffs + record_diffs(reference, run, s, resumed_at)


def record_diffs(reference: Path, run: Path, s: Any, resumed_at: int) -> List[str]:
    """The last launch's per-step losses, samples and final LR against the uninterrupted run's tail."""
    diffs: List[str] = []
    for rank in range(WORLD):
        whole = json.loads((reference / f"record_rank{rank}.json").read_text())
        last = json.loads((run / f"record_rank{rank}.json").read_text())
        per_step = len(whole["seen"]) // s.steps
        if last["losses"] != whole["losses"][resumed_at:]:
            diffs.append(f"rank {rank}: losses after step {resumed_at} differ")
        if last["seen"] != whole["seen"][resumed_at * per_step:]:
            diffs.append(f"rank {rank}: samples after step {resumed_at} differ")
        if last["lr"] != whole["lr"]:
            diffs.append(f"rank {rank}: final lr differs")
    return diffs
