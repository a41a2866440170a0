"""Every relative link of README.md and docs/*.md leads somewhere, and the docs cite nothing outside the project."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


def _prose(text: str) -> str:
    """The page without code blocks: a '#' line in a shell block is no heading, a link there is no link."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped (not '-' or '_'), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every anchor of a Markdown page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    for heading in HEADING.findall(_prose(path.read_text(encoding="utf-8"))):
        base = github_anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> List[Tuple[str, str]]:
    """(target path, anchor) of every link on the page that is not a URL."""
    text = CODE_SPAN.sub("", _prose(path.read_text(encoding="utf-8")))
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        links.append((file_part, anchor))
    return links


def test_the_anchor_rule_matches_githubs():
    assert github_anchor("Bringing an existing `ds_config.json`") == "bringing-an-existing-ds_configjson"
    assert github_anchor("`trainer`, `trainer.model` and `dataloader` accept keys") == "trainer-trainermodel-and-dataloader-accept-keys"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    for file_part, anchor in relative_links(page):
        target = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(REPO)}: ({file_part}#{anchor})"
        assert target.exists(), f"{where}: no such file"
        if anchor:
            assert target.suffix == ".md", f"{where}: an anchor into a file that is not Markdown"
            assert anchor in anchors(target), f"{where}: no heading with that anchor in {target.name}"


def test_readme_links_every_docs_page():
    linked = {(REPO / file_part).resolve() for file_part, _ in relative_links(REPO / "README.md")}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, missing


def test_nothing_cites_notes_outside_the_project():
    """The project's text names no file of the machine it was written on; what a reader needs is in docs/."""
    outside = re.compile("|".join(re.escape(name) for name in ("DESIGN" + ".md", "SEED" + "_API", "DEEPSPEED" + "_NOTES",
                                                                  "shared" + "/")))
    roots = ["engine", "tools", "docs", "examples", "benchmarks", "tests", "README.md"]
    hits = []
    for root in roots:
        paths = [REPO / root] if (REPO / root).is_file() else (REPO / root).rglob("*")
        for path in paths:
            if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".yml", ".json", ".txt", ".cfg", ".toml"):
                for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                    if outside.search(line):
                        hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
