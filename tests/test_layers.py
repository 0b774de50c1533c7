"""The project's layers, import cycles and module sizes (the checks: tests/layering.py),
and self-tests that feed each check a small tree with a deliberate violation."""

from __future__ import annotations

from pathlib import Path

from tests.layering import (
    LINE_LIMIT,
    module_cycles,
    module_files,
    oversized,
    package_problems,
    project_imports,
    upward_imports,
)

ROOT = Path(__file__).resolve().parents[1]


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)


def test_walker_sees_the_project():
    imports = project_imports(ROOT)
    pairs = {(i.source, i.target) for i in imports}
    assert ("benchmark.grid", "benchmark.grid_schema") in pairs
    assert ("editors", "benchmark.core.registry") in pairs
    assert ("editors", "editors.rome") in pairs  # the registry's "editors.rome:ROME"
    assert ("benchmark.cli", "benchmark.commands.models") in pairs  # COMMANDS
    assert len(module_files(ROOT)) > 50


def test_no_upward_imports():
    problems = upward_imports(project_imports(ROOT))
    assert not problems, _report(problems)


def test_no_module_cycles():
    problems = module_cycles(project_imports(ROOT))
    assert not problems, _report(problems)


def test_package_graph_is_layered():
    problems = package_problems(project_imports(ROOT))
    assert not problems, _report(problems)


def test_no_module_over_the_line_limit():
    problems = oversized(ROOT)
    assert not problems, _report(problems)


# --------------------------------------------------------------------------- self-tests
def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for top in ("benchmark", "benchmark/core", "editors", "prune"):
        init = root / top / "__init__.py"
        if not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text("")
    return root


def test_selftest_clean_tree_passes(tmp_path):
    root = _tree(tmp_path, {
        "benchmark/core/a.py": "import os\nfrom benchmark.core import b\nfrom . import b as c\n",
        "benchmark/core/b.py": "X = 1\n",
        "editors/__init__.py": 'REG = {"rome": "editors.rome:ROME"}\n',
        "editors/rome.py": "from benchmark.core.a import b\nfrom .common import f\n",
        "editors/common.py": "def f():\n    import benchmark.core.b\n",
        "prune/p.py": "from benchmark.core import a\n",
        "benchmark/top.py": "import editors\nimport prune.p\nfrom benchmark.core import b\n",
        "benchmark/cli.py": 'COMMANDS = {"top": "benchmark.top"}\n',
        "tests/test_x.py": "from benchmark import top\n",
    })
    imports = project_imports(root)
    assert ("editors", "editors.rome") in {(i.source, i.target) for i in imports}
    assert ("benchmark.cli", "benchmark.top") in {(i.source, i.target) for i in imports}
    assert upward_imports(imports) == []
    assert module_cycles(imports) == []
    assert package_problems(imports) == []


def test_selftest_upward_imports_are_caught(tmp_path):
    root = _tree(tmp_path, {
        "benchmark/core/a.py": "def f():\n    from benchmark import runner\n",  # in a function
        "benchmark/runner.py": "",
        "benchmark/spec.py": "",
        "editors/rome.py": "from ..benchmark import spec\nimport prune.p\n",
        "editors/lazy.py": 'import importlib\nM = importlib.import_module("benchmark.spec")\n',
        "prune/p.py": 'REG = {"x": "benchmark.spec:Spec"}\nfrom benchmark import SUITE\n',
    })
    problems = upward_imports(project_imports(root))
    text = "\n".join(problems)
    assert "benchmark.core.a:2 -> benchmark.runner (lazy)" in text
    assert "editors.rome:2 -> prune.p" in text
    assert "editors.lazy:2 -> benchmark.spec (lazy)" in text
    assert "prune.p:1 -> benchmark.spec (lazy)" in text
    assert "prune.p:2 -> benchmark " in text  # the top-level package itself
    assert len(problems) == 5  # the relative import beyond the top is not a project module


def test_selftest_relative_imports_resolve(tmp_path):
    root = _tree(tmp_path, {
        "benchmark/core/__init__.py": "from . import a\n",
        "benchmark/core/a.py": "from .b import X\nfrom .. import grid\n",
        "benchmark/core/b.py": "X = 1\n",
        "benchmark/grid.py": "",
    })
    pairs = {(i.source, i.target) for i in project_imports(root)}
    assert pairs == {("benchmark.core", "benchmark.core.a"), ("benchmark.core.a", "benchmark.core.b"),
                     ("benchmark.core.a", "benchmark.grid")}


def test_selftest_module_cycles_are_caught(tmp_path):
    root = _tree(tmp_path, {
        "benchmark/x.py": "from . import y\n",
        "benchmark/y.py": "def g():\n    import importlib\n    importlib.import_module('benchmark.z')\n",
        "benchmark/z.py": "from benchmark.x import thing\n",
        "benchmark/r.py": 'REG = {"s": "benchmark.s:S"}\n',
        "benchmark/s.py": "import benchmark.r\n",
        "benchmark/ok.py": "import benchmark.x\n",
    })
    problems = module_cycles(project_imports(root))
    assert len(problems) == 2, problems
    assert any("benchmark.r -> benchmark.s -> benchmark.r" in p for p in problems)
    three = next(p for p in problems if "benchmark.x" in p)
    assert "benchmark.x -> benchmark.y -> benchmark.z -> benchmark.x" in three
    assert "benchmark.y:3 -> benchmark.z (lazy)" in three


def test_selftest_package_cycles_are_caught(tmp_path):
    root = _tree(tmp_path, {
        "editors/a.py": "import prune.p\n",
        "prune/p.py": "def f():\n    from editors import b\n",
        "editors/b.py": "",
        "benchmark/core/c.py": "from benchmark import grid\n",
        "benchmark/grid.py": "from benchmark.core import c\n",
    })
    imports = project_imports(root)
    problems = package_problems(imports)
    text = "\n".join(problems)
    assert "package cycle editors -> prune -> editors" in text
    assert "benchmark (the rest of benchmark) imported by benchmark.core" in text
    assert "package cycle benchmark -> benchmark.core -> benchmark" in text
    # the module graph has no cycle between editors.a, prune.p and editors.b
    assert [p for p in module_cycles(imports) if "editors" in p] == []


def test_selftest_oversized_modules_are_caught(tmp_path):
    root = _tree(tmp_path, {
        "benchmark/big.py": "x = 1\n" * (LINE_LIMIT + 1),
        "benchmark/edge.py": "x = 1\n" * LINE_LIMIT,
        "tests/test_big.py": "\n" * (LINE_LIMIT + 5),
        "tests/data/records.jsonl": "{}\n" * (LINE_LIMIT + 5),  # data, not counted
        "noxfile.py": "x = 1\n" * (LINE_LIMIT + 2),
    })
    assert oversized(root) == [f"benchmark/big.py: {LINE_LIMIT + 1} lines (limit {LINE_LIMIT})",
                               f"tests/test_big.py: {LINE_LIMIT + 5} lines (limit {LINE_LIMIT})",
                               f"noxfile.py: {LINE_LIMIT + 2} lines (limit {LINE_LIMIT})"]
