"""Layering of the project, read from the source with ``ast`` (nothing is imported);
checked by tests/test_layers.py.

What counts as an import of a project module (``benchmark``, ``editors``, ``prune``,
``tests``, ``tasks`` and ``noxfile``), wherever it appears (top level or inside a function):

- ``import a.b.c`` -- the deepest of ``a.b.c``, ``a.b``, ``a`` that is a project module;
- ``from a.b import c`` -- ``a.b.c`` if that is a module, else ``a.b``; relative forms
  (``from . import x``, ``from ..y import z``) are resolved against the importing module;
- ``importlib.import_module("a.b")`` / ``__import__("a.b")`` with a literal name;
- strings that name a project module for a lazy import: ``"a.b:attr"`` (the form of the
  registries of :mod:`benchmark.core.registry`, imported on first lookup) and ``"a.b"``
  exactly (module tables such as ``benchmark.cli.COMMANDS``). They are imports that happen
  later, so they count like imports inside a function: for the layers and for cycles.
  ``editors.EDITORS`` naming ``"editors.rome:ROME"`` is an import within editors, allowed.

Parent packages that Python runs implicitly (``benchmark/__init__.py`` when
``benchmark.core.io`` is imported) are not edges: a package ``__init__`` that re-exports its
submodules would otherwise be in a cycle with every submodule that imports a sibling.

Checks: (a) modules in ``benchmark/core/``, ``editors/`` and ``prune/`` import no project
module outside ``benchmark.core`` (``editors`` may also import ``editors.*``, ``prune``
``prune.*``); (b) no import cycle between modules, and the package graph
(``benchmark.core``, ``editors``, ``prune``, the rest of ``benchmark``) is acyclic with the
rest of ``benchmark`` imported by none of the others; (c) no Python module over
:data:`LINE_LIMIT` lines in ``benchmark/``, ``editors/``, ``prune/``, ``tests/`` or
``noxfile.py`` (data files are not Python modules and are not counted).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("benchmark", "editors", "prune", "tests", "tasks")
SIZE_CHECKED = ("benchmark", "editors", "prune", "tests")
LINE_LIMIT = 400
#: lower layers -> the project modules they may import (and their submodules)
ALLOWED = {"benchmark.core": ("benchmark.core",),
           "editors": ("benchmark.core", "editors"),
           "prune": ("benchmark.core", "prune")}
_REGISTRY_STRING = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module
    line: int
    lazy: bool  # inside a function or through a string

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}{' (lazy)' if self.lazy else ''}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project."""
    out = {}
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    if (root / "noxfile.py").is_file():
        out["noxfile"] = root / "noxfile.py"
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return None


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]):
        self.module, self.modules, self.depth = module, modules, 0
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: dict[tuple[str, int], Import] = {}  # (target, line) -> the import

    def _add(self, name: str | None, node: ast.AST, lazy: bool = False) -> None:
        target = _resolve(name, self.modules) if name else None
        if target is not None and target != self.module:
            imp = Import(self.module, target, node.lineno, lazy or self.depth > 0)
            self.found.setdefault((target, node.lineno), imp)

    def _scope(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.package.split(".") if self.package else []
            if node.level > len(pkg):  # beyond the top-level package: not an import that works
                return
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join(pkg + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}" if base else alias.name
            self._add(sub if sub in self.modules else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
        if (name in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            self._add(node.args[0].value, node, lazy=True)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str):
            return
        m = _REGISTRY_STRING.match(node.value)
        if m and m.group(1) in self.modules:
            self._add(m.group(1), node, lazy=True)
        elif "." in node.value and node.value in self.modules:
            self._add(node.value, node, lazy=True)


def project_imports(root: Path) -> list[Import]:
    modules = module_files(root)
    found: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        walker = _Walker(name, path.name == "__init__.py", modules)
        walker.visit(tree)
        found += walker.found.values()
    return found


# --------------------------------------------------------------------------- checks
def upward_imports(imports: list[Import]) -> list[str]:
    """(a) Imports of a lower layer that leave what the layer may import."""
    out = []
    for imp in imports:
        for layer, allowed in ALLOWED.items():
            if _within(imp.source, layer) and not any(_within(imp.target, a) for a in allowed):
                out.append(f"{imp} (a module of {layer} may import only {', '.join(allowed)})")
    return out


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    comp.append(n)
                    if n == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _cycle_in(comp: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through the first node of a strongly connected component (BFS)."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle in component {comp}")


def _graph(edges: list[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    return graph


def module_cycles(imports: list[Import]) -> list[str]:
    """(b) Import cycles between modules, each as one path and the import lines on it."""
    graph = _graph([(i.source, i.target) for i in imports])
    where = {(i.source, i.target): i for i in imports}
    out = []
    for comp in _components(graph):
        path = _cycle_in(comp, graph)
        steps = "; ".join(str(where[(a, b)]) for a, b in zip(path, path[1:]))
        out.append(f"cycle {' -> '.join(path)} ({len(comp)} modules in the component): {steps}")
    return out


def package_of(module: str) -> str | None:
    """The layer a module belongs to (None: tests, tasks and noxfile, above everything)."""
    for layer in ("benchmark.core", "editors", "prune", "benchmark"):
        if _within(module, layer):
            return layer
    return None


def package_problems(imports: list[Import]) -> list[str]:
    """(b) Cycles in the package graph, and imports of the rest of benchmark from below."""
    edges = {}
    for i in imports:
        a, b = package_of(i.source), package_of(i.target)
        if a and b and a != b:
            edges.setdefault((a, b), i)
    out = [f"{b} (the rest of benchmark) imported by {a}: {imp}"
           for (a, b), imp in sorted(edges.items()) if b == "benchmark"]
    graph = _graph(list(edges))
    for comp in _components(graph):
        path = _cycle_in(comp, graph)
        out.append(f"package cycle {' -> '.join(path)}: "
                   + "; ".join(str(edges[(a, b)]) for a, b in zip(path, path[1:])))
    return out


def oversized(root: Path, limit: int = LINE_LIMIT) -> list[str]:
    """(c) Python modules over ``limit`` lines."""
    paths = [p for top in SIZE_CHECKED for p in sorted((root / top).rglob("*.py"))]
    paths += [root / "noxfile.py"] if (root / "noxfile.py").is_file() else []
    out = []
    for p in paths:
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{p.relative_to(root)}: {n} lines (limit {limit})")
    return out
