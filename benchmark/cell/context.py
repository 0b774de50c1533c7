"""How a cell runs: device, save frequency, resume, progress output, the baseline cache.

Nothing here changes a cell's records (those are fixed by its :class:`~benchmark.spec.CellSpec`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunContext:
    """How a cell runs (nothing here changes its records)."""

    grid: str
    device: str = "cpu"
    save_every: int = 10
    resume: bool = False
    progress: bool = True
    progress_log: Path | None = None
    baseline_dir: Path | None = None  # shared cache of unedited-model evaluations

    def event(self, cell: str, event: str, **fields: object) -> None:
        if self.progress_log is None:
            return
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "unix": round(time.time(), 3),
               "grid": self.grid, "cell": cell, "event": event, **fields}
        self.progress_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.progress_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for a run (data and cache roots, TQDM_DISABLE; spawned
    worker processes inherit them) and restore the previous values afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
