"""The state of a running cell, and its save/restore (``state-<k>/`` in the cell folder).

At each checkpoint (and every ``save_every`` edits) the state is saved as a snapshot
(:mod:`benchmark.cell.snapshot`: safetensors and JSON with a manifest of hashes; loading
runs no code): the accumulated updates, the current edited weights, the editor state, the
cursor, the RNG states, the per-batch scores of ``each`` timing and the wall-clock accounts. Resume: a
fresh process loads the unedited model, the requests and the editor, runs ``init_state``
and ``prepare`` on the unedited model (as a fresh run does), then restores the saved
editor state, edited weights and RNG states and continues from the cursor. A snapshot
that fails its hash checks is named in a warning and the previous one is used.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmark.cell import snapshot
from benchmark.cell.context import RunContext
from benchmark.cell.folder import CellFolder, settings_changed
from benchmark.cell.rng import rng_state, set_rng_state
from benchmark.components import Components, EditorBundle, Hooks, Restrainer
from benchmark.core.arch import Layout, LoadedModel, get_module, to_out_in
from benchmark.core.lower_layers import LowerLayerMemo
from benchmark.core.requests import EditRequest
from benchmark.evaluation import MetricValue
from benchmark.spec import CellSpec
from editors.base import Editor, EditorState
from prune.linalg import Update

log = logging.getLogger(__name__)

STATE_FORMAT = 1


@contextlib.contextmanager
def timed(wall: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall-clock seconds to ``wall[name]``."""
    t0 = _clock()
    try:
        yield
    finally:
        wall[name] = wall.get(name, 0.0) + _clock() - t0


_clock = time.perf_counter  # module attribute: tests replace it with a counting clock


@dataclass
class CellRun:
    """Everything a running cell holds: its inputs (spec, how it runs, components, folder),
    what was loaded (model, requests, editor, restraint) and the trajectory's progress."""

    spec: CellSpec
    ctx: RunContext
    comps: Components
    hooks: Hooks
    folder: CellFolder
    loaded: LoadedModel
    requests: list[EditRequest]
    bundle: EditorBundle
    editor_state: EditorState
    traj: Restrainer
    git: dict[str, Any]  # git_info() when this session started: the code that runs it
    wall: dict[str, float]
    w0: dict[str, torch.Tensor] = field(default_factory=dict)  # stored layout
    layouts: dict[str, Layout] = field(default_factory=dict)
    acc: dict[str, Update] = field(default_factory=dict)  # out x in
    cursor: int = 0
    each: list[dict[str, MetricValue]] = field(default_factory=list)
    sessions: int = 1
    earlier_code_versions: list[str | None] = field(default_factory=list)  # earlier sessions' git
    task_hashes: dict[str, str] = field(default_factory=dict)  # general task -> items hash
    lower: LowerLayerMemo | None = None  # the unedited lower layers' outputs (evaluate.py)

    def phase(self, name: str) -> contextlib.AbstractContextManager[None]:
        return timed(self.wall, name)

    @property
    def editor(self) -> Editor:
        return self.bundle.editor

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    def weight(self, name: str) -> torch.nn.Parameter:
        return get_module(self.model, name).weight

    @property
    def git_sha(self) -> str | None:
        return self.git.get("sha")

    def session_code_versions(self) -> list[str | None]:
        """The git commit of each process that ran this cell, oldest first (one entry per
        session; a resumed cell whose sessions ran different code lists each)."""
        return [*self.earlier_code_versions, self.git_sha]

    def w0_out_in(self, name: str) -> torch.Tensor:
        return to_out_in(self.w0[name], self.layouts[name])


def save_state(run: CellRun) -> None:
    """Save the state as the folder's next snapshot; the previous one is removed only
    once this one is complete (a kill mid-save leaves the previous one to resume from)."""
    with run.phase("save"):
        blob = {
            "format": STATE_FORMAT,
            "spec_hash": run.spec.spec_hash(),
            "hparams_hash": run.bundle.hparams_hash,
            "cursor": run.cursor,
            "editor_state": run.editor_state.state_dict(),
            "acc": dict(run.acc),
            "weights": {k: run.weight(k).detach() for k in run.w0},
            "layouts": dict(run.layouts),
            "rng": rng_state(),
            "each": [{k: v.to_dict() for k, v in d.items()} for d in run.each],
            "wall": dict(run.wall),
            "sessions": run.sessions,
            "torch_threads": torch.get_num_threads(),
            "git_sha": run.git_sha,
            "code_versions": run.session_code_versions(),
        }
        target = run.folder.next_state_dir()
        snapshot.write(target, blob)
        run.folder.drop_states(keep=target)
    run.ctx.event(run.spec.short_hash, "state_saved", cursor=run.cursor)


def _newest_good_state(run: CellRun) -> dict | None:
    """The newest snapshot that passes its hash checks; each bad one is named in a warning
    (and removed by the next save)."""
    for directory in run.folder.state_dirs():
        try:
            return snapshot.read(directory)
        except snapshot.CorruptSnapshot as exc:
            log.warning("saved state unusable, trying an older one: %s", exc)
            run.ctx.event(run.spec.short_hash, "state_corrupt", reason=str(exc))
    return None


def load_state(run: CellRun) -> bool:
    """Restore the newest good saved state; False when there is none (the cell then starts
    from its first edit, keeping the checkpoint records already written)."""
    blob = _newest_good_state(run)
    if blob is None:
        if run.folder.state_dirs():
            log.warning("%s: no usable saved state; the cell restarts from its first edit "
                        "(checkpoints already written are kept)", run.folder.root)
        return False
    path = run.folder.root
    if blob.get("format") != STATE_FORMAT or blob.get("spec_hash") != run.spec.spec_hash():
        raise RuntimeError(f"{path}: saved state belongs to another spec or format; "
                           "delete the cell folder or run without --resume")
    if why := settings_changed("saved state made", blob.get("hparams_hash"), run.bundle.hparams_hash):
        raise RuntimeError(f"{path}: {why}; run the cell without --resume to recompute it")
    if blob.get("git_sha") != run.git_sha:
        log.warning("%s: state saved by code at git %s, resuming with %s: the records may mix "
                    "two code versions", path, blob.get("git_sha"), run.git_sha)
    threads = blob.get("torch_threads")
    if threads is not None and threads != torch.get_num_threads():
        log.warning("%s: state saved with %d torch threads, resuming with %d: float results "
                    "may differ from an uninterrupted run (pass --threads %d)", path,
                    threads, torch.get_num_threads(), threads)
    run.editor_state.load_state_dict(blob["editor_state"])
    run.layouts = dict(blob["layouts"])
    with torch.no_grad():
        for name, w in blob["weights"].items():
            param = run.weight(name)
            run.w0[name] = param.detach().clone()  # the freshly loaded model is unedited
            param.copy_(w.to(param.device))
    device = run.loaded.device
    run.acc = {k: (tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device))
               for k, v in blob["acc"].items()}
    run.cursor = int(blob["cursor"])
    run.each = [{k: MetricValue.from_dict(v) for k, v in d.items()} for d in blob["each"]]
    # the saved sessions' seconds plus this session's so far (its load and statistics)
    session, run.wall = run.wall, {k: float(v) for k, v in blob["wall"].items()}
    for phase, seconds in session.items():
        run.wall[phase] = run.wall.get(phase, 0.0) + seconds
    run.sessions = int(blob["sessions"]) + 1
    # a state saved before the list existed knows only its last session's commit (None:
    # unknown)
    earlier = (blob.get("code_versions")
               or [None] * (int(blob["sessions"]) - 1) + [blob.get("git_sha")])
    run.earlier_code_versions = list(earlier)
    set_rng_state(blob["rng"])
    return True
