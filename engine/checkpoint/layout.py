"""The on-disk layout of checkpoints and what makes a tag "complete".

``output_dir/checkpoints/``::

    iter_0000500/                  one tag = every engine + trainer state after 500 steps
        generator/                 DeepSpeed's own files for engine "generator" (its tag = engine name)
        trainer_state_rank00000.pt per-rank trainer state: iteration, sampler position, RNG
        COMPLETE.json              written last, by rank 0, after every rank fsynced: the manifest
    latest                         name of the newest complete tag, replaced atomically

DeepSpeed writes shards in place and its ``latest`` without fsync; a crash mid-save leaves a
folder that looks like a checkpoint. Only the marker says a tag is whole, and its manifest
(every file with its size) catches files truncated or removed afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import Dict, List, Optional, Tuple

from engine.utils.fileio import atomic_write_text

logger = logging.getLogger("engine")

MARKER = "COMPLETE.json"
LATEST = "latest"
TAG_RE = re.compile(r"^iter_(\d{7,})$")


def tag_name(step: int) -> str:
    """``iter_0000500``: steps completed, zero-padded so names sort by step."""
    return f"iter_{step:07d}"


def tag_step(tag: str) -> Optional[int]:
    match = TAG_RE.match(tag)
    return int(match.group(1)) if match else None


def checkpoint_root(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def rank_state_file(tag_dir: str, rank: int) -> str:
    return os.path.join(tag_dir, f"trainer_state_rank{rank:05d}.pt")


def list_tags(root: str) -> List[str]:
    """Every tag folder under ``root``, newest step first (complete or not)."""
    if not os.path.isdir(root):
        return []
    tags = [t for t in os.listdir(root) if tag_step(t) is not None and os.path.isdir(os.path.join(root, t))]
    return sorted(tags, key=lambda t: tag_step(t), reverse=True)


def fsync_tree(folder: str) -> None:
    """fsync every file and folder under ``folder``: the data is on disk before the marker is."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_manifest(tag_dir: str) -> Dict[str, int]:
    """Relative path → size of every file in the tag (the marker excluded)."""
    files: Dict[str, int] = {}
    for dirpath, _, names in os.walk(tag_dir):
        for name in names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, tag_dir)
            if rel != MARKER and not name.startswith("."):
                files[rel] = os.path.getsize(path)
    return files


def write_marker(tag_dir: str, info: Dict) -> None:
    """The last write of a save: the manifest plus what a reader needs (world size, engines)."""
    atomic_write_text(os.path.join(tag_dir, MARKER), json.dumps(dict(info, files=build_manifest(tag_dir)), indent=1))
    fsync_dir(tag_dir)


def read_marker(tag_dir: str) -> Dict:
    with open(os.path.join(tag_dir, MARKER), encoding="utf-8") as f:
        return json.load(f)


def check_complete(tag_dir: str) -> Tuple[bool, str]:
    """(True, "") for a whole tag, else (False, the reason naming the file)."""
    marker = os.path.join(tag_dir, MARKER)
    if not os.path.isfile(marker):
        return False, f"no {MARKER} (save interrupted or still running)"
    try:
        info = read_marker(tag_dir)
        files = info["files"]
    except (OSError, ValueError, KeyError) as exc:
        return False, f"{marker} unreadable: {exc}"
    for rel, size in files.items():
        path = os.path.join(tag_dir, rel)
        if not os.path.isfile(path):
            return False, f"{path} missing"
        actual = os.path.getsize(path)
        if actual != size:
            return False, f"{path} has {actual} bytes, the manifest says {size} (truncated?)"
    return True, ""


def complete_tags(root: str) -> List[str]:
    """Complete tags, newest first."""
    return [t for t in list_tags(root) if check_complete(os.path.join(root, t))[0]]


def write_latest(root: str, tag: str) -> None:
    atomic_write_text(os.path.join(root, LATEST), tag + "\n")


def remove_tag(root: str, tag: str) -> None:
    """Marker first, so a deletion cut short never leaves something that looks complete."""
    tag_dir = os.path.join(root, tag)
    marker = os.path.join(tag_dir, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
        fsync_dir(tag_dir)
    shutil.rmtree(tag_dir, ignore_errors=True)


def rotate(root: str, max_keep: int) -> List[str]:
    """Delete all but the ``max_keep`` newest complete tags, and incomplete tags older than the newest.

    The newest complete tag always survives (``max_keep`` >= 1 is enforced). Incomplete tags
    newer than it are left alone: they could belong to a save in progress.
    """
    keep = max(1, max_keep)
    complete = complete_tags(root)
    if not complete:
        return []
    newest = tag_step(complete[0])
    doomed = complete[keep:] + [t for t in list_tags(root) if t not in complete and tag_step(t) < newest]
    for tag in doomed:
        remove_tag(root, tag)
    if doomed:
        logger.info(f"checkpoints: removed {', '.join(sorted(doomed))} (solver.max_keep {keep})")
    return doomed


#: the best-metric tag: not an ``iter_`` tag, so rotation never removes it and resume never picks it
BEST = "best"
#: a new best is written whole here, then renamed over ``best``: a crash mid-save keeps the old best
BEST_STAGING = "best.new"


def promote_best(root: str) -> None:
    """Rank 0, once ``best.new`` is complete: it replaces ``best`` (the old one goes last)."""
    best, staging, old = (os.path.join(root, name) for name in (BEST, BEST_STAGING, BEST + ".old"))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(best):
        os.rename(best, old)
    os.rename(staging, best)
    fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)


def best_record(root: str) -> Optional[Dict]:
    """What a complete ``best`` tag's marker says of it (metric, mode, value), else None."""
    tag_dir = os.path.join(root, BEST)
    if not check_complete(tag_dir)[0]:
        return None
    return read_marker(tag_dir).get("best") or None
