"""Comparable groups: rows are ranked only against rows that share every key here.

A group is fixed by the model (its name and the identity of its weights: hub revision,
GGUF sha256 or random-config hash), the edit data set and split, the number of edits,
the batch size, the evaluation timing, the scorer of the editing metrics and the
evaluation protocol (the records' ``protocol``: edit requests' offset and file, task limits
and prompt format; a short hash of them, empty for schema-1 records). Rows of
different groups measure different things; ranking across them is how orderings flip.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

#: keys of ``Provenance.model_identity`` that pin the weights, in order of preference
WEIGHT_KEYS = ("revision", "gguf_sha256", "weights_sha256", "config_sha256")
#: the scorer named for schema-1 records, which do not record theirs
UNRECORDED_SCORER = "unrecorded"


class GroupKey(NamedTuple):
    model: str
    weights: str
    dataset: str
    n_edits: int
    batch_size: int
    timing: str
    scorer: str
    protocol: str = ""

    def label(self) -> str:
        """A short readable name of the group (shown on the page)."""
        label = (f"{self.model}@{self.weights[:12]} · {self.dataset} · {self.n_edits} edits · "
                 f"batch {self.batch_size} · {self.timing} · {self.scorer}")
        return label + (f" · protocol {self.protocol}" if self.protocol else "")

    def slug(self) -> str:
        """A readable id, unique per group (a hash of every key ends it)."""
        digest = hashlib.sha256(json.dumps(list(self)).encode()).hexdigest()[:10]
        slug = f"{self.model}-{self.dataset}-n{self.n_edits}-b{self.batch_size}-{self.timing}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", slug) + f"-{digest}"


def weights_identity(model_identity: Mapping[str, Any]) -> str | None:
    """The value that pins a model's weights in a provenance ``model_identity`` (None if
    absent): a hub revision, the GGUF's sha256, a hash of the per-file weight hashes, or a
    random model's config hash with its seed."""
    for key in WEIGHT_KEYS:
        value = model_identity.get(key)
        if not value:
            continue
        if isinstance(value, Mapping):  # per-file hashes
            value = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
        value = str(value)
        if key == "config_sha256" and model_identity.get("seed") is not None:
            value += f"-seed{model_identity['seed']}"  # random weights: config and seed
        return value
    return None


def editing_scorer(scorers: Iterable[str | None]) -> str:
    """The group's scorer from the scorers of a cell's editing records ('+'-joined)."""
    named = sorted({s for s in scorers if s})
    return "+".join(named) if named else UNRECORDED_SCORER


def protocol_hash(protocols: Iterable[tuple[str, str, str]]) -> str:
    """Short hash of the (kind, task, protocol) of a cell's editing and general records
    (empty when none records a protocol)."""
    named = sorted({p for p in protocols if p[2]})
    if not named:
        return ""
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()[:8]


def group_key(spec: Mapping[str, Any], model_identity: Mapping[str, Any],
              scorers: Iterable[str | None],
              protocols: Iterable[tuple[str, str, str]] = ()) -> GroupKey:
    """The group of a cell from its spec (as in ``cells.jsonl``), its provenance's model
    identity, the scorers of its editing records and the (kind, task, protocol) of its
    editing and general records. Raises KeyError naming a missing key."""
    weights = weights_identity(model_identity)
    if weights is None:
        raise KeyError(f"model_identity has none of {', '.join(WEIGHT_KEYS)}")
    dataset = spec["dataset"]
    return GroupKey(model=str(spec["model"]), weights=weights,
                    dataset=f"{dataset['name']}:{dataset['split']}",
                    n_edits=int(spec["n_edits"]), batch_size=int(spec["batch_size"]),
                    timing=str(spec["evaluation"]["timing"]), scorer=editing_scorer(scorers),
                    protocol=protocol_hash(protocols))
