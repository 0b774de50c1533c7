"""A fake installed distribution (a dist-info folder with entry points on sys.path), and
the suite's registries reset around each test so they read it afresh."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_MODULE = textwrap.dedent('''
    """Plugins of every kind, as a package outside the suite would declare them."""
    from pathlib import Path

    from benchmark.core.requests import EditRequest
    from benchmark.evaluation.task_catalog import TaskInfo


    class Shrink:
        """An evaluation variant: the accumulated update times ``factor``."""

        def __init__(self, factor: float = 0.5):
            self.factor = factor

        def for_evaluation(self, w0, acc, name):
            from prune.linalg import to_dense

            return to_dense(acc) * self.factor


    class HalveEach:
        """A trajectory restraint: each edit's update halved."""

        def mask_edit(self, w_prev, delta):
            from prune.linalg import to_dense

            return to_dense(delta) / 2


    def parse_triples(file, records, **options):
        """Records [subject, relation prompt with {}, new object, true object]."""
        return [EditRequest(f"t{i}", prompt.format(subject), subject, " " + new, " " + true)
                for i, (subject, prompt, new, true) in enumerate(records)]


    TASK = TaskInfo("fake_task", "standard", "perplexity", "word_perplexity", "a plugin task",
                    yaml_dir=Path(__file__).parent / "fake_tasks")
''')


def write_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]],
                       module: str | None = None, module_name: str = "fakeplug") -> Path:
    """``root/<name>-0.1.dist-info`` with METADATA and entry_points.txt (and the module)."""
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module is not None:
        (root / f"{module_name}.py").write_text(module)
    return root


def _registries():
    import editors
    from benchmark.components import RESTRAINTS
    from benchmark.data.loaders import PARSERS
    from benchmark.evaluation.task_catalog import TASKS
    from editors.hparams import PLUGIN_EDITORS

    return [editors.EDITORS, PLUGIN_EDITORS, RESTRAINTS, PARSERS, TASKS]


@pytest.fixture
def fresh_registries(monkeypatch):
    """Each registry reads entry points again, and forgets what it read, after the test."""
    for reg in _registries():
        monkeypatch.setattr(reg, "_entries", {k: v for k, v in reg._entries.items()
                                              if k not in reg._origin})
        monkeypatch.setattr(reg, "_origin", {})
        monkeypatch.setattr(reg, "_plugins_read", False)
    yield
    for reg in _registries():
        reg._plugins_read = True


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch, fresh_registries):
    root = write_distribution(tmp_path / "site", "fakeplug", {
        "seqedit.restraints": {"shrink": "fakeplug:Shrink", "halve-each": "fakeplug:HalveEach"},
        "seqedit.dataset_formats": {"triples": "fakeplug:parse_triples"},
        "seqedit.tasks": {"fake_task": "fakeplug:TASK"},
    }, PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("fakeplug", None)
