"""Evaluation of every variant at a checkpoint, without re-editing.

For each evaluation variant the model's weights are set (``none``: the trajectory's own
model; PRUNE posthoc: W0 + F(ΔW_n)), the model is evaluated, and the trajectory's weights
are restored. A variant whose restraint is the identity at this checkpoint (and every
variant at checkpoint 0) shares the records of ``none`` under its own label.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from benchmark.cell.evaluate import Evaluated, evaluate_model
from benchmark.cell.state import CellRun
from benchmark.core.arch import from_out_in
from benchmark.spec import NoRestraint, PruneSpec
from prune.linalg import to_dense


def _evaluate_restrained(run: CellRun, n: int, variant: PruneSpec, base: Evaluated,
                         current: dict[str, torch.Tensor]) -> Evaluated:
    restrainer = run.comps.restrainer(variant)
    with torch.no_grad():
        deltas = {name: restrainer.for_evaluation(run.w0_out_in(name), run.acc[name], name)
                  for name in run.w0 if name in run.acc}
    if base.records and all(deltas[name] is run.acc[name] for name in deltas):
        # The restraint is the identity here (PRUNE: no singular value of the
        # accumulated update reaches sigma_max(W0)), so this variant's model is the
        # unrestrained one: its records are those of "none", not a re-evaluation.
        run.ctx.event(run.spec.short_hash, "variant_identity", n_edits=n, variant=variant.label)
        return base.relabelled(variant.label)
    try:
        with torch.no_grad():
            for name, r in deltas.items():
                param = run.weight(name)
                param.copy_(from_out_in(run.w0_out_in(name) + to_dense(r).to(param.dtype),
                                        run.layouts[name]))
        return evaluate_model(run, n, variant.label, deltas)
    finally:
        with torch.no_grad():
            for name, w in current.items():
                run.weight(name).copy_(w)


def evaluate_checkpoint(run: CellRun, n: int) -> Evaluated:
    """The records (and per-item samples) of checkpoint ``n``: every variant of the spec, in order."""
    current = {name: run.weight(name).detach().clone() for name in run.w0}
    records = Evaluated()
    bar = tqdm(run.spec.variants, desc=f"eval n={n}", unit="variant",
               disable=not run.ctx.progress, leave=False)
    try:
        base = Evaluated()
        for variant in bar:
            if isinstance(variant, NoRestraint):
                base = evaluate_model(run, n, "none", dict(run.acc))
                records += base
            elif n == 0:  # no update yet: every restraint is the identity, same model
                records += base.relabelled(variant.label)
            else:
                records += _evaluate_restrained(run, n, variant, base, current)
    finally:
        bar.close()
    return records
