"""The house keeps its floors (ARCHITECTURE.md): a module imports only modules of its own floor or
of the floors below, the import graph has no circle, and imports inside functions (which hide
both) appear only where ARCHITECTURE.md allows them.  Read from the sources, lazy imports
included, so nothing hides at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import anklume

PACKAGE = Path(anklume.__file__).parent

#: Lowest first.  A module belongs to the floor of its longest matching prefix.
FLOORS: list[tuple[str, ...]] = [
    ("anklume", "anklume.errors", "anklume.fsio", "anklume.executor", "anklume.jsonsafe"),
    ("anklume.model",),
    # the resolvers' pure parsers pin what a source sends; the lock checks its pins with them
    ("anklume.sources", "anklume.lock", "anklume.resolve"),
    ("anklume.units", "anklume.render", "anklume.project"),
    ("anklume.backends",),
    ("anklume.resolve.http", "anklume.resolve.inventory", "anklume.resolve.resolver", "anklume.store"),
    ("anklume.provision",),
    ("anklume.engine",),
    ("anklume.actions",),
    ("anklume.cli", "anklume.__main__"),
]

#: Where an import of an anklume module inside a function is allowed, and why.
LAZY_ALLOWED = {
    "anklume.cli": "the CLI imports each command's handler when it runs: `--help` stays instant",
    "anklume.provision.connection_plugins": "loaded by Ansible in its own process, not by anklume",
    "anklume.resolve.resolver": "pylxd (about 90 ms) is imported only when the lock asks Incus",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int:
    best, floor = -1, None
    for i, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), i
    assert floor is not None, f"{module} is on no floor: add it to FLOORS and to ARCHITECTURE.md"
    return floor


def resolve_target(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The anklume modules an import statement loads (``from pkg import mod`` counts as ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".")
            if not MODULES[module].name == "__init__.py":
                pkg = pkg[:-1]
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return sorted({n for n in names if n == "anklume" or n.startswith("anklume.")})


def imports(module: str) -> tuple[set[str], set[str]]:
    """(every anklume module imported, those imported inside a function)."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for the type checker only
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    everything: set[str] = set()
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            everything |= set(resolve_target(module, node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    lazy |= set(resolve_target(module, sub))
    everything.discard(module)
    return everything, lazy


GRAPH = {m: imports(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_floors(module):
    mine = floor_of(module)
    upward = sorted(t for t in GRAPH[module][0] if t in MODULES and floor_of(t) > mine)
    assert upward == [], f"{module} (floor {mine}) imports from higher floors: {upward}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_inside_functions_only_where_allowed(module):
    lazy = GRAPH[module][1]
    allowed = any(module == p or module.startswith(p + ".") for p in LAZY_ALLOWED)
    assert allowed or not lazy, f"{module} imports {sorted(lazy)} inside a function: import at the top"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle():
    # a package's __init__ importing its own modules is not a circle of files
    graph = {m: {t for t in deps if t in MODULES and not m.startswith(t + ".")} for m, (deps, _) in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_guard_against():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert floor_of("anklume.units.plan") < floor_of("anklume.backends.incus.live") < floor_of("anklume.actions.build")
