"""docs/transforms.md stays true: its example runs and it documents every registered transform."""

import pathlib
import re

import engine.transforms as T

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "transforms.md"


def test_doc_example_runs():
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {})


def test_doc_lists_every_registered_transform():
    text = DOC.read_text(encoding="utf-8")
    missing = [n for n in T.BUILD_TRANSFORMER_REGISTRY.names() if f"| `{n}` |" not in text]
    assert not missing
