"""Checkpoint layout without processes: completeness, corruption, fallback, rotation."""

import os

import torch

from engine.checkpoint import layout
from engine.checkpoint.resume import usable_tags


def make_tag(root, step, complete=True, ranks=1):
    tag_dir = os.path.join(root, layout.tag_name(step))
    os.makedirs(os.path.join(tag_dir, "generator"))
    with open(os.path.join(tag_dir, "generator", "model.pt"), "wb") as f:
        f.write(b"x" * (100 + step))
    for r in range(ranks):
        torch.save({"trainer": {"iteration": step}}, layout.rank_state_file(tag_dir, r))
    if complete:
        layout.write_marker(tag_dir, {"tag": layout.tag_name(step), "iteration": step, "world_size": ranks})
    return tag_dir


def test_tag_names_sort_by_step(tmp_path):
    for step in (5, 100, 20):
        make_tag(str(tmp_path), step)
    assert layout.list_tags(str(tmp_path)) == ["iter_0000100", "iter_0000020", "iter_0000005"]
    assert layout.tag_step("iter_0000500") == 500 and layout.tag_step("latest") is None


def test_incomplete_and_truncated_tags_are_skipped(tmp_path, caplog):
    root = str(tmp_path)
    make_tag(root, 10)
    make_tag(root, 20, complete=False)
    truncated = make_tag(root, 30)
    with open(os.path.join(truncated, "generator", "model.pt"), "r+b") as f:
        f.truncate(10)
    corrupt = make_tag(root, 40)
    state = layout.rank_state_file(corrupt, 0)
    size = os.path.getsize(state)
    with open(state, "r+b") as f:  # same size, garbage content: only loading finds it
        f.write(b"\0" * size)
    assert layout.check_complete(os.path.join(root, "iter_0000020"))[1].startswith("no COMPLETE.json")
    assert "truncated" in layout.check_complete(truncated)[1]
    assert layout.complete_tags(root) == ["iter_0000040", "iter_0000010"]
    assert usable_tags(root, rank=0) == ["iter_0000010"]
    assert "unreadable" in caplog.text and "iter_0000020" in caplog.text


def test_rotation_keeps_newest_complete(tmp_path):
    root = str(tmp_path)
    for step in (10, 20, 30, 40):
        make_tag(root, step)
    make_tag(root, 25, complete=False)  # older than the newest complete: garbage
    make_tag(root, 50, complete=False)  # newer: might be a save in progress
    removed = layout.rotate(root, max_keep=2)
    assert sorted(removed) == ["iter_0000010", "iter_0000020", "iter_0000025"]
    assert layout.list_tags(root) == ["iter_0000050", "iter_0000040", "iter_0000030"]
    layout.rotate(root, max_keep=0)  # never below one: the newest complete tag survives
    assert layout.complete_tags(root) == ["iter_0000040"]


def test_latest_is_replaced_atomically(tmp_path):
    layout.write_latest(str(tmp_path), "iter_0000010")
    layout.write_latest(str(tmp_path), "iter_0000020")
    assert (tmp_path / "latest").read_text().strip() == "iter_0000020"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
