"""engine's imports point down a declared order of layers, form no circle and do not hide in functions.

The import graph is read with ``ast`` (nothing is imported), module level and function level
alike: an import inside a function is still a dependency, it only happens later. Each failure
names the file, the line and the import, so the fix is where the message points.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]

#: bottom to top; a package may import its own modules and those of lower layers only. Packages
#: of one layer are independent of each other (none imports another of its layer).
LAYERS: Sequence[Sequence[str]] = (
    ("engine.deferred_import",),  # import machinery, standard library only, installed by the root __init__
    ("engine", "engine.errors"),  # "engine" is the root __init__ alone (it imports only the layer below)
    ("engine.utils",),
    ("engine.comm", "engine.launch", "engine.trackers"),  # process-group and launcher helpers; metric writers (config checks their names)
    ("engine.config",),
    ("engine.events",),  # hook protocol, event storage, step window
    ("engine.transforms", "engine.solver", "engine.weights"),
    ("engine.data", "engine.loss"),
    ("engine.runplan",),  # run plan and DeepSpeed config derivation
    ("engine.log", "engine.collect_env"),
    ("engine.model",),
    ("engine.checkpoint",),
    ("engine.sentinel",),  # bad-batch records, loss spikes: given the trainer's checkpointer, called by the trainer
    ("engine.trainer",),
    ("engine.schedule",),  # the orchestrator
    ("engine.plan", "engine.slover"),  # the `engine plan` command; the seed's misspelt alias of solver
    ("engine.cli",),  # the `engine` command, over its subcommands
)

#: engine imports allowed inside a function, each with the reason (never "to dodge a cycle")
LAZY_ALLOWED: Dict[tuple, str] = {
    ("engine/cli.py", "engine.plan"): "heavy (torch): `engine --help` must not pay for it",
    ("engine/schedule/__init__.py", "engine.schedule.scheduler"): "heavy (torch): `import engine.schedule` must not pay for it",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. engine.model.pipeline
    target: str  # imported module, e.g. engine.weights.safe_load
    path: str  # file of the importing module, relative to the repository
    line: int
    function: Optional[str]  # enclosing function, None at module level

    def where(self) -> str:
        inside = f" (inside {self.function}())" if self.function else ""
        return f"{self.path}:{self.line}: {self.source} imports {self.target}{inside}"


def engine_modules(root: Path) -> Dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root/engine``."""
    modules = {}
    for path in sorted((root / "engine").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.AST, module: str, is_package: bool, known: Dict[str, Path]) -> List[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # ``from engine.checkpoint import layout`` depends on the submodule, not only on the package
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def read_imports(root: Path) -> List[Import]:
    """Every import of an engine module by an engine module, with its line and enclosing function."""
    known = engine_modules(root)
    found: List[Import] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(root).as_posix()

        def visit(node: ast.AST, function: Optional[str]) -> None:
            for child in ast.iter_child_nodes(node):
                inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(child, module, path.name == "__init__.py", known):
                        if target == "engine" or target.startswith("engine."):
                            found.append(Import(module, target, rel, child.lineno, function))
                visit(child, inner)

        visit(tree, None)
    return found


def layer_of(module: str) -> tuple:
    """(layer index, package) of a module: the longest declared package that contains it."""
    best = None
    for index, packages in enumerate(LAYERS):
        for package in packages:
            inside = module == package or (package != "engine" and module.startswith(package + "."))
            if inside and (best is None or len(package) > len(best[1])):
                best = (index, package)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in tests/unit/test_layers.py")
    return best


def upward(imports: Sequence[Import]) -> List[str]:
    """Imports that point up, or sideways to another package of the same layer."""
    bad = []
    for imp in imports:
        (low, source_pkg), (high, target_pkg) = layer_of(imp.source), layer_of(imp.target)
        if source_pkg != target_pkg and high >= low:
            bad.append(f"{imp.where()}: layer {high} ({target_pkg}) is not below layer {low} ({source_pkg})")
    return bad


def circles(imports: Sequence[Import]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: Dict[str, set] = {}
    for imp in imports:
        if imp.source != imp.target:
            graph.setdefault(imp.source, set()).add(imp.target)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack = set()
    groups = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def hidden(imports: Sequence[Import]) -> List[str]:
    """Engine imports inside functions that the allow-list does not name."""
    return [imp.where() for imp in imports if imp.function and (imp.path, imp.target) not in LAZY_ALLOWED]


IMPORTS = read_imports(REPO)


def test_imports_point_down_the_layers():
    assert len(IMPORTS) > 100  # the reader found the package's imports at all
    assert not upward(IMPORTS), "imports that point up:\n" + "\n".join(upward(IMPORTS))


def test_no_import_circle():
    found = circles(IMPORTS)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_no_engine_import_inside_a_function():
    assert not hidden(IMPORTS), ("engine imports inside functions (move them to module level, or name them in "
                                 "LAZY_ALLOWED with the reason):\n" + "\n".join(hidden(IMPORTS)))


def test_allow_list_names_imports_that_exist():
    lazy = {(imp.path, imp.target) for imp in IMPORTS if imp.function}
    assert set(LAZY_ALLOWED) <= lazy, f"stale LAZY_ALLOWED entries: {sorted(set(LAZY_ALLOWED) - lazy)}"


def test_checker_names_the_offending_import(tmp_path):
    """The three checks fail on a tree that breaks each rule, naming file and line."""
    pkg = tmp_path / "engine"
    (pkg / "model").mkdir(parents=True)
    (pkg / "trainer").mkdir()
    (pkg / "model" / "a.py").write_text("from engine.trainer.b import X\n")
    (pkg / "trainer" / "b.py").write_text("def f():\n    import engine.model.a\n")
    imports = read_imports(tmp_path)
    assert upward(imports) == ["engine/model/a.py:1: engine.model.a imports engine.trainer.b: "
                               "layer 13 (engine.trainer) is not below layer 10 (engine.model)"]
    assert circles(imports) == [["engine.model.a", "engine.trainer.b"]]
    assert hidden(imports) == ["engine/trainer/b.py:2: engine.trainer.b imports engine.model.a (inside f())"]
