"""The package's import rule, enforced: one direction, no cycles, no private names across modules.

Every module under ``argos/`` is parsed with ``ast``; imports inside functions count like any other
(a function-level import hides a dependency, it does not remove it). The layers, top to bottom, as
docs/architecture.md draws them (``python -m argos`` on top); a module may import only from layers
below its own, and modules of two different subpackages on the same layer never import each other:

    cli
    report | distributed | export
    training | evaluation | online
    sandbox | llm
    rules | methods
    data | metrics
    _types | _version

Inside one subpackage the modules may import each other, but never in a cycle. The package root
(``argos/__init__.py``, the public facade) is imported by nothing inside the package.

The same checks run on planted trees, so this test can fail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "argos"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("report", "distributed", "export"),
    ("training", "evaluation", "online"),
    ("sandbox", "llm"),
    ("rules", "methods"),
    ("data", "metrics"),
    ("_types", "_version"),
)
"""Top to bottom. A name is the first component after ``argos.`` (a subpackage or a module)."""


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    names: tuple[str, ...]
    line: int


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_edges(package: Path) -> list[Edge]:
    """Every import of a module of ``package`` by another, inside functions included."""
    modules = module_files(package)
    root = package.name
    edges = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        edges.append(Edge(name, _owner(alias.name, modules), (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.module, node.level)
                if base != root and not base.startswith(root + "."):
                    continue
                plain = []
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:  # `from argos.data import catalog`: a module import
                        edges.append(Edge(name, full, (), node.lineno))
                    else:
                        plain.append(alias.name)
                if plain:
                    edges.append(Edge(name, _owner(base, modules), tuple(plain), node.lineno))
    return [e for e in edges if e.importer != e.imported]


def _absolute(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    parts = importer.split(".")
    parts = parts if is_package else parts[:-1]
    parts = parts[: len(parts) - level + 1]
    return ".".join([*parts, *([module] if module else [])])


def _owner(dotted: str, modules: dict[str, Path]) -> str:
    while dotted not in modules and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def group(module: str) -> str:
    """The layer name of a module: the first component after the package name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(group_name: str) -> int:
    for depth, names in enumerate(LAYERS):
        if group_name in names:
            return len(LAYERS) - depth
    raise KeyError(group_name)


def violations(package: Path) -> list[str]:
    """Everything that breaks the import rule, one line each (empty when the rule holds)."""
    found = []
    edges = import_edges(package)
    for module in module_files(package):
        if group(module) not in ("__init__",) and not any(group(module) in g for g in LAYERS):
            found.append(f"{module}: not in any layer (add it to LAYERS and docs/architecture.md)")
    for e in edges:
        a, b = group(e.importer), group(e.imported)
        where = f"{e.importer} (line {e.line}) imports {e.imported}"
        if b == "__init__":
            found.append(f"{where}: nothing inside the package imports its root facade")
            continue
        if a == "__init__" or a == b:
            pass
        elif a not in {n for g in LAYERS for n in g} or b not in {n for g in LAYERS for n in g}:
            continue  # reported above
        elif layer_of(b) == layer_of(a):
            found.append(f"{where}: sideways ({a} and {b} are on the same layer)")
        elif layer_of(b) > layer_of(a):
            found.append(f"{where}: upward ({b} is above {a})")
        private = [n for n in e.names if n.startswith("_") and not n.startswith("__")]
        if private:
            found.append(f"{where}: private name(s) {', '.join(private)} used across modules")
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    return found


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ---- the rule on the real package ------------------------------------------------------------


def test_the_package_follows_the_import_rule() -> None:
    assert violations(PACKAGE) == []


def test_every_module_is_on_the_architecture_map() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"argos/[\w/]+\.py", text))
    missing = [
        str(path.relative_to(ROOT))
        for path in module_files(PACKAGE).values()
        if path.name not in ("__init__.py", "__main__.py")
        and str(path.relative_to(ROOT)) not in mentioned
    ]
    assert missing == [], f"docs/architecture.md does not mention: {missing}"
    stale = [m for m in mentioned if not (ROOT / m).is_file()]
    assert stale == [], f"docs/architecture.md names modules that do not exist: {stale}"


# ---- the checker catches what it must (planted trees) -------------------------------------------


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "argos"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_a_clean_planted_tree_passes(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "_types.py": "",
            "data/__init__.py": "",
            "data/series.py": "from argos._types import X\n",
            "online/__init__.py": "",
            "online/detector.py": "from argos.data.series import S\nfrom argos.online import x\n",
            "online/x.py": "",
        },
    )
    assert violations(package) == []


def test_an_upward_import_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "data/__init__.py": "",
            "data/series.py": "def f():\n    from argos.online.detector import Detector\n",
            "online/__init__.py": "",
            "online/detector.py": "",
        },
    )
    assert any("upward" in v and "argos.data.series" in v for v in violations(package))


def test_a_sideways_import_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "training/__init__.py": "",
            "training/driver.py": "import argos.online.detector\n",
            "online/__init__.py": "",
            "online/detector.py": "",
        },
    )
    assert any("sideways" in v for v in violations(package))


def test_a_cycle_hidden_in_a_function_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "training/__init__.py": "",
            "training/driver.py": "from argos.training.search import search\n",
            "training/search.py": "def register():\n    from argos.training import driver\n",
        },
    )
    assert violations(package) == ["import cycle: argos.training.driver -> argos.training.search"]


def test_a_private_name_across_modules_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "training/__init__.py": "",
            "training/driver.py": "def _unit(): ...\n",
            "distributed.py": "from argos.training.driver import _unit\n",
        },
    )
    assert any("private name(s) _unit" in v for v in violations(package))


def test_importing_the_root_facade_fails(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"metrics.py": "from argos import __version__\n"})
    assert any("root facade" in v for v in violations(package))


def test_a_relative_upward_import_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "data/__init__.py": "",
            "data/series.py": "from ..online.detector import Detector\n",
            "online/__init__.py": "",
            "online/detector.py": "",
        },
    )
    assert any("upward" in v and "argos.online.detector" in v for v in violations(package))
