"""Expansion of one validated grid block into its cells, in a fixed order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from benchmark.grid_schema import Axes, GridError, field_path
from benchmark.spec import CellSpec, EvalSpec, _restraint_shorthand


def expand_cells(path: Path, axes: Axes, prefix: str) -> Iterator[tuple[CellSpec, str]]:
    """(cell, where) for the product models × editors × datasets × trajectories × seeds;
    ``where`` names the block and the cell's index in it."""
    ev = axes.evaluation or EvalSpec()
    trajectories = axes.trajectories or [_restraint_shorthand("none")]
    variants = axes.variants or ["none"]
    product = itertools.product(axes.models, axes.editors, axes.datasets, trajectories,
                                axes.seeds or [0])
    for idx, (model, editor, dataset, traj, seed) in enumerate(product):
        try:
            cell = CellSpec(
                model=model, editor=editor, hparams=(axes.hparams or {}).get(editor) or {},
                dataset=dataset, n_edits=axes.n_edits, batch_size=axes.batch_size or 1,
                checkpoints=tuple(axes.checkpoints), trajectory=traj, variants=tuple(variants),
                evaluation=ev, seed=seed, dtype=axes.dtype or "float32",
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                field = str(err["loc"][0])
            else:  # model-level check: its message starts with the field name
                field, _, rest = msg.partition(": ")
                msg = rest or msg
            field = {"trajectory": "trajectories", "seed": "seeds"}.get(field, field)
            raise GridError(path, f"{msg} (cell {model}/{editor}/{dataset.name})",
                            field=field_path((field,), prefix) if field else (prefix or None)
                            ) from None
        yield cell, f"{prefix or 'grid'} cell {idx}"
