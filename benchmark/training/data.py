"""Training and validation examples for an editor network.

Each :class:`~editors.mend.hparams.DataFile` is loaded through the verified data loaders
(family + split) and must be the file the hyperparameters name (the network's cache key
hashes that file). An example is one edit request: the edit is made with its prompt and
new target, the edit loss is read on the prompt and its paraphrases, the locality loss on
its locality prompts (with their own answers). The training order is a permutation of all
training examples drawn from the seed (repeated with a new permutation per epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.core.requests import EditRequest
from benchmark.data import loaders, store
from editors.mend.hparams import DataFile


@dataclass(frozen=True)
class Example:
    request: EditRequest
    source: str  # "<dataset>:<split>"

    @property
    def edit_pair(self) -> tuple[str, str]:
        return self.request.prompt, self.request.target_new

    @property
    def outer_pairs(self) -> list[tuple[str, str]]:
        r = self.request
        return [(r.prompt, r.target_new)] + [(p, r.target_new) for p in r.rephrase_prompts]

    @property
    def locality_pairs(self) -> list[tuple[str, str]]:
        return list(self.request.locality)


def load_examples(data: DataFile, data_root: str | Path | None = None) -> list[Example]:
    """Every record of ``data`` (validated), checked to come from ``data.file``."""
    root = settings.data_root(data_root)
    splits = loaders.FAMILIES.get(data.dataset)
    if splits is None or data.split not in splits:
        raise DataError(data.file, f"unknown data set {data.dataset}:{data.split}", field="dataset")
    file = store.resolve(splits[data.split], data_root=root)
    if Path(file).resolve() != (root / data.file).resolve():
        raise DataError(data.file, f"{data.dataset}:{data.split} is stored at {file}, not at this "
                        "file; fix the 'file' of the MEND hyperparameters", field="file")
    requests = loaders.load_requests(data.dataset, data.split, data_root=root)
    bad = [r.case_id for r in requests if not r.locality]
    if bad:
        raise DataError(file, f"records without a locality prompt: {bad[:5]}", field="locality")
    return [Example(r, f"{data.dataset}:{data.split}") for r in requests]


def training_order(n: int, seed: int, steps: int) -> list[int]:
    """Indices of the first ``steps`` training examples: per epoch a fresh permutation of
    ``range(n)`` from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < steps:
        order.extend(int(i) for i in rng.permutation(n))
    return order[:steps]


def combined(files: Sequence[DataFile], data_root: str | Path | None = None) -> list[Example]:
    return [ex for f in files for ex in load_examples(f, data_root)]
