"""Resume with the real batch editors (explicit state: accumulated keys, NSE's rewound
targets) on a tiny model: a run killed mid-trajectory and resumed gives the records of an
uninterrupted run. Fake evaluators keep it fast; they read the edited weights."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmark.components import EditorBundle, default_load_requests
from benchmark.components import Hooks as _Hooks
from benchmark.grid import parse_grid
from benchmark.publish import collect_records
from benchmark.results import records_to_jsonl
from benchmark.runner import grid_workdir, run_grid
from tests.runner.conftest import FAKE_NAMES, make_components

GRID = """\
schema_version: 1
name: real
models: [tiny-llama]
editors: [{editor}]
datasets: [{{name: counterfact, split: edit}}]
n_edits: 6
batch_size: 2
checkpoints: [0, 2, 4, 6]
trajectories: [none]
variants: [none, prune]
evaluation: {{editing_metrics: [efficacy], tasks: [{{name: fake_task, limit: 3}}]}}
run: {{save_every: 2}}
"""

EXTRA = {
    "memit-seq": {"mom2_update_weight": 100.0},
    "alphaedit": {"nullspace_threshold": 0.05, "nullspace_threshold_kind": "relative", "L2": 1.0},
    "nse": {"alpha": 0.01, "upper_bound": 1000.0, "mom2_update_weight": 100.0},
}


class Kill(BaseException):
    pass


def _components(method):
    import editors
    from editors.hparams import parse_hparams

    hp = parse_hparams(method, {
        "source": "test", "layers": [1, 2], "templates": {"lengths": [[3, 2]]},
        "target": {"v_num_grad_steps": 4, "v_lr": 0.5, "clamp_norm_factor": 4.0},
        "stats": {"n_samples": 6, "context_cap": 64}, **EXTRA[method]})

    def create(m, loaded, overrides, progress=False):
        return EditorBundle(editors.create_editor(m, loaded, hp, progress=False), {}, None)

    comps, _ = make_components()
    return replace(comps, create_editor=create, load_requests=default_load_requests)


@pytest.mark.parametrize("method", ["memit-seq", "alphaedit", "nse"])
def test_real_editor_resume(tmp_path, method):
    text = GRID.format(editor=method)
    path = tmp_path / "real.yaml"
    path.write_text(text)
    names = replace(FAKE_NAMES, editors=lambda: [method])
    grid = parse_grid(path, text, names)
    comps = _components(method)
    run_grid(grid, workdir=tmp_path / "a", components=comps, progress=False, publish_results=False)
    ref = records_to_jsonl(collect_records(grid, grid_workdir(grid, tmp_path / "a")))
    assert ref

    def kill(cursor):
        if cursor == 4:
            raise Kill

    with pytest.raises(Kill):
        run_grid(grid, workdir=tmp_path / "b", components=comps, hooks=_Hooks(after_edit=kill),
                 progress=False, publish_results=False)
    run_grid(grid, workdir=tmp_path / "b", components=comps, resume=True, progress=False,
             publish_results=False)
    assert records_to_jsonl(collect_records(grid, grid_workdir(grid, tmp_path / "b"))) == ref
