"""The cell folder and its one owner: paths, lock, markers, records, failures, status.

A cell's folder (``<workdir>/<slug>-<spec hash>/``) holds ``spec.json``, ``state.pt``
(saved state of an unfinished trajectory), ``records/ckpt-<n>.jsonl`` (the records of
checkpoint n, written atomically: the checkpoint's completion marker), ``provenance.json``,
and one of the markers ``done.json`` (completed) or ``failed.json`` (reason and traceback).
A lock file beside the folder (``.<folder>.lock``) keeps two processes off one cell.
Everything else (the runner, publishing) asks :class:`CellFolder`; nothing reads these
files directly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.core import io
from benchmark.results import CellStatus, Record, read_records, write_records
from benchmark.spec import CellSpec


class CellBusy(RuntimeError):
    """Another process is running this cell (its lock is held); nothing was touched."""


def status_row(spec: CellSpec, status: str, reason: str | None = None) -> CellStatus:
    """The ``cells.jsonl`` row of ``spec`` with ``status`` (completed, failed, pending)."""
    return CellStatus(cell=spec.short_hash, folder=spec.folder, status=status, reason=reason,
                      spec=spec.canonical())


@dataclass(frozen=True)
class CellFolder:
    root: Path

    @classmethod
    def of(cls, workdir: Path, spec: CellSpec) -> CellFolder:
        return cls(Path(workdir) / spec.folder)

    # ------------------------------------------------------------------ paths
    @property
    def name(self) -> str:
        return self.root.name

    @property
    def state(self) -> Path:
        return self.root / "state.pt"

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def checkpoint_records(self, n: int) -> Path:
        return self.records_dir / f"ckpt-{n:07d}.jsonl"

    @property
    def done(self) -> Path:
        return self.root / "done.json"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f".{self.root.name}.lock"

    # ------------------------------------------------------------------ running
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the cell's lock; :class:`CellBusy` when another process holds it."""
        try:
            with io.file_lock(self.lock_file, blocking=False):
                yield
        except io.LockBusy:
            raise CellBusy(f"cell {self.name} is being run by another seqedit process "
                           f"(it holds {self.lock_file}); wait for it to finish or stop it, "
                           "then --resume") from None

    def start(self, spec: CellSpec, resume: bool) -> None:
        """Make the folder ready to run ``spec``: emptied unless ``resume``, no failure marker,
        the spec written."""
        if not resume and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if self.failed.exists():
            self.failed.unlink()
        io.write_json(self.spec, spec.canonical())

    def has_checkpoint(self, n: int) -> bool:
        return self.checkpoint_records(n).is_file()

    def write_checkpoint(self, n: int, records: Sequence[Record]) -> None:
        write_records(self.checkpoint_records(n), list(records))

    def records(self, checkpoints: Sequence[int]) -> list[Record]:
        """The records of ``checkpoints`` in that order (every one must have been written)."""
        out: list[Record] = []
        for n in checkpoints:
            out += read_records(self.checkpoint_records(n))
        return out

    def write_provenance(self, provenance: dict) -> None:
        io.write_json(self.provenance, provenance)

    def provenance_text(self) -> str | None:
        return self.provenance.read_text() if self.provenance.is_file() else None

    def complete(self, records: Sequence[Record], git_sha: str | None) -> None:
        """Write ``done.json`` and drop the saved state (a completed cell's records are final)."""
        io.write_json(self.done, {"status": "completed", "records": len(records),
                                  "git_sha": git_sha,
                                  "records_sha256": io.sha256_json([r.model_dump(mode="json")
                                                                    for r in records])})
        if self.state.is_file():
            self.state.unlink()

    def record_failure(self, exc: BaseException) -> str:
        """Write ``failed.json`` (reason and traceback); returns the one-line reason."""
        reason = f"{type(exc).__name__}: {exc}".strip()
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            reason = f"out of memory: {reason}"
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
        io.write_json(self.failed, {"status": "failed", "reason": reason, "traceback": tb})
        return reason

    # ------------------------------------------------------------------ status
    @property
    def is_complete(self) -> bool:
        return self.done.is_file()

    def completed_at_git(self) -> str | None:
        """The git sha of the code that completed the cell (from ``done.json``)."""
        return json.loads(self.done.read_text()).get("git_sha")

    def status(self, spec: CellSpec) -> CellStatus:
        if self.is_complete:
            return status_row(spec, "completed")
        if self.failed.is_file():
            return status_row(spec, "failed", json.loads(self.failed.read_text()).get("reason"))
        return status_row(spec, "pending")
