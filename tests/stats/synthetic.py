"""A small synthetic result folder (records + per-item samples) for the stats and table tests.

Two editors (rome, memit), trajectories none and rect-0.4, variants none and prune-e,
checkpoints 0, 10, 20 under first-n timing. Scores come from a seeded generator; each
record's value is its items' statistic. memit's prune-e equals none at every checkpoint (the
restraint never acts); rome degrades with edits and prune-e holds part of it back.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from benchmark.evaluation import statistic_value
from benchmark.results import Record, SampleRow, write_records, write_samples

CHECKPOINTS = (0, 10, 20)
N_FACTS = 20
N_KNOWN = 40
N_DOCS = 8
EDITORS = ("rome", "memit")
TRAJECTORIES = ("none", "rect-0.4")
VARIANTS = ("none", "prune-e")
DATASET = "cf:edit"
TASK = "cf"


def _harm(editor: str, trajectory: str, variant: str, n: int) -> float:
    """How far the state has drifted: grows with edits; rome more, restraints less."""
    scale = {"rome": 1.0, "memit": 0.4}[editor] * (0.5 if trajectory != "none" else 1.0)
    if variant == "prune-e" and editor == "rome":
        scale *= 0.3
    return scale * n / max(CHECKPOINTS)


def _state_scores(editor: str, trajectory: str, variant: str, n: int) -> dict:
    """Per-item scores of one state; seeded by the state, except that memit's prune-e is
    memit's none (identity) and every state at n = 0 is the unedited model."""
    if n == 0:
        editor, trajectory, variant = "base", "none", "none"
    if editor == "memit" and variant == "prune-e":
        variant = "none"
    seed = sum(ord(c) for c in f"{editor}/{trajectory}/{variant}") * 1000 + n
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(1)
    harm = 0.0 if editor == "base" else _harm(editor, trajectory, variant, n)
    facts = N_FACTS if n == 0 else n
    eff_p = 0.2 if n == 0 else max(0.05, 0.97 - 0.9 * harm * (n / 20))
    known_p = base.uniform(0.7, 1.0, N_KNOWN) - 0.35 * harm
    words = base.integers(80, 200, N_DOCS).astype(float)
    nll = base.uniform(3.9, 4.3, N_DOCS) + 0.25 * harm + rng.normal(0, 0.01, N_DOCS)
    return {
        ("editing", TASK, "efficacy", "teacher-forced"): (100.0 * (rng.random(facts) < eff_p), None),
        ("editing", TASK, "gen_efficacy", "greedy"): (100.0 * (rng.random(facts) < eff_p * 0.6), None),
        ("editing", TASK, "locality", "teacher-forced"): (rng.integers(0, 11, facts) * 10.0, None),
        ("general", "known_facts", "acc", "lm-eval"): (1.0 * (rng.random(N_KNOWN) < known_p), None),
        ("general", "wikitext_heldout", "word_perplexity", "lm-eval"): (-nll * words, words),
    }


def _statistic(metric: str) -> str:
    return metric if metric == "word_perplexity" else "mean"


def build() -> tuple[list[Record], list[SampleRow]]:
    records, samples = [], []
    for editor, trajectory in itertools.product(EDITORS, TRAJECTORIES):
        cell = f"{editor}-{trajectory}"
        for n, variant in itertools.product(CHECKPOINTS, VARIANTS):
            for (kind, task, metric, scorer), (scores, weights) in _state_scores(
                    editor, trajectory, variant, n).items():
                first = N_FACTS if n == 0 else n
                ids = ([f"case{i}" for i in range(first)] if kind == "editing"
                       else [f"{task}/{i}" for i in range(len(scores))])
                stat = _statistic(metric)
                value = statistic_value(stat, list(scores), None if weights is None else list(weights))
                records.append(Record(grid="syn", cell=cell, model="m", editor=editor,
                                      dataset=DATASET, trajectory=trajectory, batch_size=1, seed=0,
                                      timing="first-n", n_edits=n, variant=variant, kind=kind,
                                      task=task, metric=metric, value=value, n=len(scores),
                                      stderr=None, scorer=scorer, protocol="p1"))
                samples.append(SampleRow(cell=cell, n_edits=n, variant=variant, kind=kind, task=task,
                                         metric=metric, statistic=stat, ids=tuple(ids),
                                         scores=tuple(float(s) for s in scores),
                                         weights=None if weights is None
                                         else tuple(float(w) for w in weights)))
            kappa = 20.0 + (0 if n == 0 else 40 * _harm(editor, trajectory, variant, n))
            if editor == "memit" and variant == "prune-e":
                kappa = 20.0 + (0 if n == 0 else 40 * _harm(editor, trajectory, "none", n))
            records.append(Record(grid="syn", cell=cell, model="m", editor=editor, dataset=DATASET,
                                  trajectory=trajectory, batch_size=1, seed=0, timing="first-n",
                                  n_edits=n, variant=variant, kind="spectrum", task="layer.1",
                                  metric="kappa_w", value=kappa, n=1, scorer="svd", protocol="p1"))
    return records, samples


def write_folder(directory: Path) -> tuple[list[Record], list[SampleRow]]:
    records, samples = build()
    write_records(directory / "records.jsonl", records)
    write_samples(directory / "samples.jsonl", samples)
    return records, samples


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
