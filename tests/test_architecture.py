"""The house: every import runs downward and no module imports itself back through a circle.

The layers below are the module map of the README, bottom first. A module may import from its own
unit (the top-level module or subpackage it belongs to) and from units on lower layers; units that
share a layer are siblings and import nothing from each other. Imports inside functions count too:
a lazy import that runs upward is still an upward import. Within a unit, the graph of its modules
(the package ``__init__`` included) has no circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bandit_engine"

# Bottom first. Each entry is one layer; the names are top-level units of ``bandit_engine``.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "errors"),
    ("records",),
    ("profiles",),
    ("features", "rewards", "fileformat", "store"),
    ("catalog", "policies", "privacy"),
    ("rules", "holdout"),
    ("engine",),
    ("service", "evaluation", "reporting"),
    ("simulation",),
    ("demo",),
    ("testing", "server"),
    ("cli",),
    ("__init__",),
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every ``bandit_engine`` import in module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bandit_engine":
                    yield _existing(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "bandit_engine":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else _existing(base)), node.lineno


def _existing(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _unit(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in MODULES}
    missing = sorted(units - set(RANK))
    assert not missing, f"units without a layer in LAYERS (add them to the module map): {missing}"


def test_imports_run_downward() -> None:
    bad = []
    for name in MODULES:
        unit = _unit(name)
        for target, line in _imports(name):
            other = _unit(target)
            if other == unit:
                continue
            if RANK[other] >= RANK[unit]:
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not bad, "imports that do not run downward:\n" + "\n".join(bad)


def test_no_circles() -> None:
    graph = {name: {t for t, _ in _imports(name) if t != name} for name in MODULES}
    # A package's __init__ re-exporting its submodules is how packages work; an edge from a
    # submodule back to its own package's __init__ closes a circle, and is what this finds.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"modules that import each other (directly or through others): {circles}"
