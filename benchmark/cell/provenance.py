"""The provenance of a completed cell (``provenance.json``): what produced its records.

The spec and its hash, the code (git as the session started, lock file, packages), the
model and data identities, the editor's hyperparameters and layer-statistics cache keys,
seeds, hardware, wall-clock seconds per phase, peak memory, the sessions (1 + resumes) with
the commit each ran, and the evaluation timing with the general tasks' item hashes.
"""

from __future__ import annotations

from benchmark import results as res
from benchmark.cell.state import CellRun


def write_provenance(run: CellRun) -> None:
    spec, ctx = run.spec, run.ctx
    prov = res.Provenance(
        cell=spec.short_hash, spec_hash=spec.spec_hash(), spec=spec.canonical(),
        git=run.git, lock_file=res.lock_file_info(), packages=res.package_versions(),
        model_identity=dict(run.loaded.identity or {}),
        data=run.comps.data_identity(spec.dataset),
        stats_cache_keys=list(run.bundle.stats_keys), hparams=run.bundle.hparams,
        hparams_hash=run.bundle.hparams_hash,
        seeds={"cell": spec.seed, "evaluation_base": spec.seed},
        hardware=res.hardware_info(ctx.device),
        wall_seconds={k: round(v, 3) for k, v in sorted(run.wall.items())},
        peak_memory_bytes=res.peak_memory(ctx.device), sessions=run.sessions,
        code_versions=run.session_code_versions(), device=ctx.device,
        evaluation={"timing": spec.evaluation.timing,
                    "task_hashes": dict(sorted(run.task_hashes.items())),
                    "baseline_cache": "unedited-model evaluations shared across cells (same key)"},
    )
    run.folder.write_provenance(prov.model_dump(mode="json"))
