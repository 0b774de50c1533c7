"""Rough cost of a grid before running it: the dry-run plan of ``seqedit grid --dry-run``."""

from __future__ import annotations

import math
from typing import Any

from benchmark.grid import Grid
from benchmark.spec import CellSpec

#: Cost model of the dry-run plan, calibrated on SmolLM2-135M (1.2e8 non-embedding
#: parameters) on one CPU core of this suite's 2-core machine: about 8 s per one-fact
#: ROME/MEMIT edit, 30 s for the smoke limits of the headline tasks (136 items), 8 s for
#: three CounterFact metrics on 50 facts. Costs scale with the parameter count; a GPU is
#: assumed 100x faster. An order-of-magnitude guide for planning, not a promise.
_S_PER_PARAM_EDIT = 8.0 / 1.2e8
_S_PER_PARAM_TASK_ITEM = 30.0 / (136 * 1.2e8)
_S_PER_PARAM_FACT_METRIC = 8.0 / (50 * 3 * 1.2e8)
_GPU_SPEEDUP = 100.0
_DEFAULT_TASK_ITEMS = 300  # a task evaluated without a limit


def model_params(name: str) -> int:
    """Rough parameter count from the architecture facts (embedding excluded)."""
    from benchmark.models import get_entry

    a = get_entry(name).arch
    return a.n_layers * (4 * a.d_model * a.d_model + 3 * a.d_model * a.d_ffn)


def estimate_cell(spec: CellSpec, device: str = "cpu") -> dict[str, float]:
    """Rough cost of one cell in seconds (see the constants above)."""
    p = model_params(spec.model)
    speed = _GPU_SPEEDUP if device.startswith("cuda") else 1.0
    # batch editors solve once per batch but optimise one target per fact
    edits = spec.n_edits * _S_PER_PARAM_EDIT * p
    ev = spec.evaluation
    edited = [n for n in spec.checkpoints if n > 0]
    n_evals = len(edited) * len(spec.variants) + (1 if 0 in spec.checkpoints else 0)
    if ev.timing == "final":
        facts = spec.n_edits * (len(spec.variants) + (1 if 0 in spec.checkpoints else 0))
    elif ev.timing == "each":
        facts = 2 * spec.n_edits
    else:
        facts = sum(edited) * len(spec.variants) + (spec.n_edits if 0 in spec.checkpoints else 0)
    editing = facts * max(1, len(ev.editing_metrics)) * _S_PER_PARAM_FACT_METRIC * p
    items = sum(t.limit or _DEFAULT_TASK_ITEMS for t in ev.tasks)
    general = n_evals * items * _S_PER_PARAM_TASK_ITEM * p
    return {"edits_s": edits / speed, "evaluation_s": (editing + general) / speed,
            "total_s": (edits + editing + general) / speed}


def plan(grid: Grid, device: str | None = None) -> list[dict[str, Any]]:
    device = device or grid.run.device
    rows = []
    for spec in grid.cells:
        est = estimate_cell(spec, device)
        rows.append({"cell": spec.short_hash, "folder": spec.folder, "model": spec.model,
                     "editor": spec.editor, "dataset": f"{spec.dataset.name}:{spec.dataset.split}",
                     "trajectory": spec.trajectory.label, "n_edits": spec.n_edits,
                     "batch_size": spec.batch_size, "checkpoints": len(spec.checkpoints),
                     "variants": ",".join(v.label for v in spec.variants),
                     "editor_calls": math.ceil(spec.n_edits / spec.batch_size), **est})
    return rows


def format_plan(grid: Grid, rows: list[dict[str, Any]], device: str) -> str:
    lines = [f"grid {grid.name}: {len(rows)} cells (requires network={grid.requires.network}, "
             f"gpu={grid.requires.gpu}); rough cost on {device}:"]
    lines.append(f"{'cell':12}  {'model':18} {'editor':10} {'dataset':18} {'trajectory':16} "
                 f"{'edits':>5} {'batch':>5} {'ckpts':>5} {'calls':>6} {'hours':>8}  variants")
    for r in rows:
        lines.append(f"{r['cell']:12}  {r['model']:18} {r['editor']:10} {r['dataset']:18} "
                     f"{r['trajectory']:16} {r['n_edits']:5} {r['batch_size']:5} "
                     f"{r['checkpoints']:5} {r['editor_calls']:6} {r['total_s'] / 3600:8.2f}  "
                     f"{r['variants']}")
    total = sum(r["total_s"] for r in rows)
    calls = sum(r["editor_calls"] for r in rows)
    lines.append(f"total: {calls} editor calls, about {total / 3600:.1f} hours on {device} "
                 "(order of magnitude, calibrated on SmolLM2 on one CPU core; see "
                 "benchmark/cost.py)")
    return "\n".join(lines)
