"""The cell folder and its one owner: paths, lock, markers, records, failures, status.

A cell's folder (``<workdir>/<slug>-<spec hash>/``) holds ``spec.json``, ``state-<k>/``
(the k-th saved state of an unfinished trajectory, :mod:`benchmark.cell.snapshot`; the
previous one is removed only once the next is complete), ``records/ckpt-<n>.jsonl`` (the
records of checkpoint n, written atomically: the checkpoint's completion marker),
``provenance.json``, and one of the markers ``done.json`` (completed: the number and sha256
of the cell's records) or ``failed.json`` (reason and traceback). A ``done.json`` that does
not parse or does not match the records is no completion: the cell is failed with that
reason (and recomputed by ``--resume``). A lock file beside the folder (``.<folder>.lock``)
keeps two processes off one cell. Everything else (the runner, publishing) asks
:class:`CellFolder`; nothing reads these files directly.
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
from benchmark.core.errors import DataError
from benchmark.results import (
    CellStatus,
    Record,
    SampleRow,
    read_records,
    read_samples,
    write_records,
    write_samples,
)
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

    def state_dir(self, k: int) -> Path:
        return self.root / f"state-{k:06d}"

    def state_dirs(self) -> list[Path]:
        """Saved states, newest first."""
        found = [p for p in self.root.glob("state-*") if p.name[6:].isdigit() and p.is_dir()]
        return sorted(found, key=lambda p: int(p.name[6:]), reverse=True)

    def next_state_dir(self) -> Path:
        """Where the next state goes: numbered after the newest saved one."""
        saved = self.state_dirs()
        return self.state_dir(int(saved[0].name[6:]) + 1 if saved else 0)

    def drop_states(self, keep: Path | None = None) -> None:
        """Remove every saved state but ``keep``."""
        for p in self.state_dirs():
            if p != keep:
                shutil.rmtree(p)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def checkpoint_records(self, n: int) -> Path:
        return self.records_dir / f"ckpt-{n:07d}.jsonl"

    def checkpoint_samples(self, n: int) -> Path:
        return self.records_dir / f"ckpt-{n:07d}.samples.jsonl"

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

    def write_checkpoint(self, n: int, records: Sequence[Record],
                         samples: Sequence[SampleRow] = ()) -> None:
        """Write checkpoint ``n``: its per-item samples, then its records (the records file
        is the checkpoint's completion marker, so it is written last)."""
        write_samples(self.checkpoint_samples(n), list(samples))
        write_records(self.checkpoint_records(n), list(records))

    def samples(self, checkpoints: Sequence[int]) -> list[SampleRow]:
        """The per-item samples of ``checkpoints`` in that order."""
        out: list[SampleRow] = []
        for n in checkpoints:
            out += read_samples(self.checkpoint_samples(n))
        return out

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

    def recorded_hparams_hash(self) -> str | None:
        """The editor settings' hash in the cell's provenance (None when absent)."""
        try:
            return json.loads(self.provenance_text() or "{}").get("hparams_hash")
        except (ValueError, AttributeError):
            return None

    def complete(self, records: Sequence[Record], samples: Sequence[SampleRow],
                 git_sha: str | None) -> None:
        """Write ``done.json`` and drop the saved states (a completed cell's records are final)."""
        io.write_json(self.done, {"status": "completed", "records": len(records),
                                  "git_sha": git_sha, "records_sha256": _records_sha(records),
                                  "samples_sha256": _records_sha(samples)})
        self.drop_states()

    def record_failure(self, exc: BaseException) -> str:
        """Write ``failed.json`` (reason and traceback); returns the one-line reason."""
        reason = f"{type(exc).__name__}: {exc}".strip()
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            reason = f"out of memory: {reason}"
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
        io.write_json(self.failed, {"status": "failed", "reason": reason, "traceback": tb})
        return reason

    # ------------------------------------------------------------------ status
    def completion(self, checkpoints: Sequence[int]) -> tuple[dict | None, str | None]:
        """``(done.json, None)`` for a completed cell whose records match its marker;
        ``(None, reason)`` when ``done.json`` is present but corrupt or does not match the
        records; ``(None, None)`` when there is none."""
        if not self.done.is_file():
            return None, None
        try:
            done = json.loads(self.done.read_text(encoding="utf-8"))
            records = self.records(checkpoints)
            ok = (isinstance(done, dict) and done.get("status") == "completed"
                  and done.get("records") == len(records)
                  and done.get("records_sha256") == _records_sha(records)
                  and done.get("samples_sha256") == _records_sha(self.samples(checkpoints)))
        except (OSError, ValueError, DataError) as exc:
            return None, f"{self.done}: corrupt completion marker ({exc})"
        if not ok:
            return None, (f"{self.done}: completion marker does not match the cell's records "
                          "(count or records_sha256)")
        return done, None

    def status(self, spec: CellSpec) -> CellStatus:
        done, corrupt = self.completion(spec.checkpoints)
        if done is not None:
            return status_row(spec, "completed")
        if corrupt is not None:
            return status_row(spec, "failed", f"{corrupt}; rerun the cell (--resume recomputes it)")
        if self.failed.is_file():
            try:
                reason = json.loads(self.failed.read_text(encoding="utf-8")).get("reason")
            except (OSError, ValueError, AttributeError) as exc:
                reason = f"{self.failed}: failure marker does not parse ({exc})"
            return status_row(spec, "failed", reason)
        return status_row(spec, "pending")


def settings_changed(what: str, recorded: str | None, now: str | None) -> str | None:
    """Why a cell's ``what`` (its completed records, a saved state) cannot be reused: it was
    made with other editor settings than ``now`` (hparams sha256). The spec names the hparams
    file, not its content, so an edited file keeps the cell's hash. None when they agree or
    either side is unknown."""
    if recorded and now and recorded != now:
        return (f"{what} with other editor settings (hparams sha256 {recorded[:12]}, the "
                f"settings now hash to {now[:12]})")
    return None


def _records_sha(rows: Sequence[Record] | Sequence[SampleRow]) -> str:
    return io.sha256_json([r.model_dump(mode="json") for r in rows])
