"""ROME's consistency metric: TF-IDF cosine between generated text and reference snippets.

Needs three files under the data root (``seqedit data fetch rome-idf rome-tfidf-vocab
rome-attribute-snippets`` on a networked machine); without them the metric is skipped
with the note from :func:`unavailable_reason`. The TF-IDF vector of a text is raw term
counts (sklearn's default token pattern ``\\b\\w\\w+\\b``, lower-cased, terms in the
vocabulary only) times idf, and the score is the cosine of the vectors of
``" ".join(generations)`` and ``" ".join(reference snippets)`` (as ROME computes it).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
REQUIRED = ("rome-idf", "rome-tfidf-vocab", "rome-attribute-snippets")


@dataclass(frozen=True)
class TfidfModel:
    vocab: dict[str, int]
    idf: np.ndarray

    def vector(self, text: str) -> np.ndarray:
        v = np.zeros(len(self.idf), dtype=np.float64)
        for tok, c in Counter(_TOKEN.findall(text.lower())).items():
            j = self.vocab.get(tok)
            if j is not None:
                v[j] = c * self.idf[j]
        return v

    def cosine(self, a: str, b: str) -> float:
        va, vb = self.vector(a), self.vector(b)
        na, nb = np.linalg.norm(va), np.linalg.norm(vb)
        return float(va @ vb / (na * nb)) if na > 0 and nb > 0 else 0.0


def unavailable_reason(data_root=None) -> str | None:
    """None when the consistency files are present and verified, else why the metric is skipped."""
    from benchmark.core.errors import DataError
    from benchmark.data import get_manifest, verify

    for name in REQUIRED:
        try:
            verify(get_manifest(name), data_root)
        except DataError as exc:
            return (f"consistency skipped: {name} is not available ({exc}). Fetch "
                    f"{', '.join(REQUIRED)} on a networked machine to enable it.")
    return None


def load_tfidf(idf_path: Path, vocab_path: Path) -> TfidfModel:
    vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    idf = np.load(idf_path)
    return TfidfModel({str(k): int(v) for k, v in vocab.items()}, np.asarray(idf, dtype=np.float64))


def load_snippets(path: Path) -> dict[tuple[str, str], list[str]]:
    """ROME's attribute_snippets.json -> (relation_id, target_id) -> snippet texts."""
    out: dict[tuple[str, str], list[str]] = {}
    for entry in json.loads(Path(path).read_text(encoding="utf-8")):
        key = (str(entry["relation_id"]), str(entry["target_id"]))
        out.setdefault(key, []).extend(s["text"] for s in entry["samples"])
    return out


def consistency_scores(generations: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                       tfidf: TfidfModel) -> list[float]:
    """Per case: cosine of the joined generations and the joined reference snippets."""
    return [tfidf.cosine(" ".join(g), " ".join(r)) for g, r in zip(generations, references)]
