"""One edit step of a trajectory: the editor's Delta, restrained and applied.

For each edited matrix the trajectory restraint masks the update against the weight just
before it (RECT), the accumulated update ΔW is extended (PRUNE online restrains it), and
the weight set to W_prev + update (or to W0 + ΔW under PRUNE online). ΔW is kept as
concatenated low-rank factors while every update is factored, dense after RECT or once
the rank passes half the short side of the matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from benchmark.cell.state import CellRun
from benchmark.core.arch import from_out_in, to_out_in
from benchmark.core.requests import EditRequest
from editors.base import Delta
from prune.linalg import Update, to_dense


class NonFiniteWeights(RuntimeError):
    """An edit produced NaN or inf weights; the cell fails with this reason."""


def densify_if_wide(update: Update) -> Update:
    """Keep factors while their rank is below half the short side; dense beyond."""
    if isinstance(update, tuple):
        a, b = update
        if a.shape[1] > min(a.shape[0], b.shape[0]) // 2:
            return to_dense(update)
    return update


def compute(run: CellRun, batch: Sequence[EditRequest]) -> Delta:
    """The editor's Delta for ``batch`` on the current model (the model is not changed)."""
    if run.hooks.on_compute is not None:
        run.hooks.on_compute(run.spec.short_hash, batch)
    with run.phase("edits"):
        return run.editor.compute(run.loaded, batch, run.editor_state)


@torch.no_grad()
def apply(run: CellRun, delta: Delta) -> None:
    """Restrain ``delta`` (the trajectory restraint), apply it and extend the accumulated
    update; :class:`NonFiniteWeights` if a weight becomes NaN or inf."""
    with run.phase("edits"):
        for name, md in delta.matrices.items():
            param = run.weight(name)
            if name not in run.w0:
                run.w0[name] = param.detach().clone()
                run.layouts[name] = md.layout
            dev, dt = param.device, param.dtype
            upd: Update = ((md.A.to(dev, dt), md.B.to(dev, dt)) if md.is_factored
                           else md.dense.to(dev, dt))
            layout = run.layouts[name]
            upd = run.traj.mask_edit(to_out_in(param, layout), upd)
            acc = run.traj.after_edit(run.w0_out_in(name), run.acc.get(name), upd, name)
            if run.traj.sets_weight_from_accumulated:
                param.copy_(from_out_in(run.w0_out_in(name) + to_dense(acc).to(dt), layout))
            else:
                param.add_(from_out_in(to_dense(upd).to(dt), layout))
            run.acc[name] = densify_if_wide(acc)
            if not torch.isfinite(param).all():
                raise NonFiniteWeights(f"non-finite weights in {name} after {run.cursor} edits "
                                       f"+ this batch")
