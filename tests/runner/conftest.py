"""Fakes for runner tests: a counting rank-1 editor on tiny-llama and cheap evaluators.

The fake editor draws its update from the global torch RNG (so resume must restore RNG
states to reproduce it) and keeps a call counter in its explicit state. The fake
evaluators read the model's weights, so any weight that is not restored after an
evaluation variant, or differs after a resume, changes their values.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from benchmark.components import Components, EditorBundle
from benchmark.core.requests import EditRequest
from benchmark.evaluation import MetricValue
from benchmark.grid import parse_grid
from benchmark.grid_checks import NameCheckers
from editors.base import Delta, MatrixDelta

FAKE_NAMES = NameCheckers(
    models=lambda: ["tiny-llama", "tiny-gpt2", "tiny-gemma", "smollm2-135m"],
    editors=lambda: ["rome", "memit", "fake"],
    datasets=lambda: ["counterfact", "zsre", "synthetic"],
    tasks=lambda: ["fake_task", "known_facts", "wikitext_heldout"],
    editing_metrics=lambda: ["efficacy", "generalization", "locality", "fluency"],
    dataset_size=lambda name, split: 20 if name == "zsre" else None,
    check_hparams=False,
)


@dataclass
class FakeState:
    calls: int = 0

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])


@dataclass
class FakeEditor:
    """Rank-1 random updates of ``down_proj`` at ``layer`` (and ``layer + 1`` if two)."""

    name: str = "fake"
    layers: tuple[int, ...] = (1,)
    scale: float = 0.5
    counter: Counter = field(default_factory=Counter)
    nan_at: int | None = None  # produce NaN on this call number (1-based)

    def init_state(self, model) -> FakeState:
        return FakeState()

    def prepare(self, model, requests, state) -> None:
        return None

    def compute(self, model, requests, state: FakeState) -> Delta:
        state.calls += 1
        self.counter["calls"] += 1
        mats = {}
        for layer in self.layers:
            name = model.arch.down_name(layer)
            w = model.model.get_submodule(name).weight
            out, inn = (w.shape if model.arch.layout == "linear" else w.shape[::-1])
            a = torch.randn(out, 1) * self.scale
            b = torch.randn(inn, 1)
            if self.nan_at is not None and state.calls == self.nan_at:
                a = a * float("nan")
            mats[name] = MatrixDelta(name=name, layout=model.arch.layout, A=a, B=b)
        return Delta(mats, {"calls": state.calls})


def _weights_signal(model) -> float:
    total = 0.0
    for name, p in model.model.named_parameters():
        if "mlp" in name:
            total += float(p.detach().double().sum())
    return total


def fake_evaluate_editing(loaded, requests, metrics, batch_size, generation=None, fluency=None):
    sig = _weights_signal(loaded)
    noise = float(torch.rand(()))  # drawn under the evaluation's own seeded RNG
    out = {}
    for i, m in enumerate(metrics):
        # x100 like benchmark.evaluation.editing
        vals = [50 + 50 * math.tanh(sig * 1e-2 + 0.1 * j + i + noise) for j in range(len(requests))]
        out[m] = MetricValue.mean_of(vals)
    return out


def fake_evaluate_tasks(loaded, tasks, batch_size, chat_template=False):
    sig = _weights_signal(loaded)
    return {t.name: {"score": MetricValue(sig, t.limit or 10, 0.01),
                     "acc": MetricValue(0.5 + 0.1 * math.tanh(sig), t.limit or 10, 0.02)}
            for t in tasks}


def fake_requests(dataset, n):
    return [EditRequest(case_id=str(dataset.offset + i), prompt=f"Entity {i} lives in",
                        subject=f"Entity {i}", target_new="Paris", target_true="Rome")
            for i in range(dataset.offset, dataset.offset + n)]


def make_components(editor: FakeEditor | None = None, **kw) -> tuple[Components, FakeEditor]:
    from benchmark import models

    editor = editor or FakeEditor()
    cache: dict = {}

    def load_model(name, device, dtype):
        # cached per test: cells get a fresh copy of the same random weights
        if name not in cache:
            cache[name] = models.load(name)
        import copy

        return copy.deepcopy(cache[name])

    def create_editor(method, loaded, overrides, progress=True):
        return EditorBundle(editor, {"method": method, **overrides}, "fakehash")

    comps = Components(load_model=load_model, load_requests=fake_requests,
                       data_identity=lambda d: {"dataset": d.name, "sha256": None},
                       create_editor=create_editor, evaluate_editing=fake_evaluate_editing,
                       evaluate_tasks=fake_evaluate_tasks, **kw)
    return comps, editor


GRID_TEMPLATE = """\
schema_version: 1
name: {name}
description: test grid
run: {{save_every: {save_every}}}
models: [tiny-llama]
editors: [fake]
datasets: [{{name: synthetic}}]
n_edits: {n_edits}
batch_size: {batch_size}
checkpoints: {checkpoints}
trajectories: {trajectories}
variants: {variants}
evaluation:
  timing: {timing}
  editing_metrics: [efficacy, locality]
  tasks: [{{name: fake_task, limit: 5}}]
"""


def make_grid(tmp_path: Path, name: str = "tgrid", *, n_edits=6, batch_size=1, checkpoints="[0, 2, 4, 6]",
              trajectories="[none, {kind: rect, keep: 0.5}]", variants="[none, {kind: prune, alpha: e}]",
              timing="first-n", save_every=3):
    text = GRID_TEMPLATE.format(name=name, n_edits=n_edits, batch_size=batch_size,
                                checkpoints=checkpoints, trajectories=trajectories,
                                variants=variants, timing=timing, save_every=save_every)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return parse_grid(path, text, FAKE_NAMES)


@pytest.fixture
def grid_factory(tmp_path):
    def factory(**kw):
        return make_grid(tmp_path, **kw)

    return factory


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one thread avoids OpenMP oversubscription on a shared 2-core machine
    (an SVD of 160x64 takes ms on one thread, up to a second with contended threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
