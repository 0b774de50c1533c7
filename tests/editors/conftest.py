"""Fixtures for editor tests: tiny random models, a small synthetic statistics corpus,
per-test cache folders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from benchmark import models

_WORDS = ("the of and a in to was is for on as by with he at from his an were are which "
          "city river king music album song film war army team season game school church "
          "north south early late first second new old great small red blue green").split()


def write_corpus(root: Path, seed: int = 0, n_articles: int = 6, words: int = 300) -> Path:
    """A WikiText-shaped file under ``root/wikitext/wiki.test.raw``."""
    rng = random.Random(seed)
    lines = []
    for a in range(n_articles):
        lines += ["", f" = Article {a} = ", ""]
        for _ in range(3):
            lines.append(" " + " ".join(rng.choice(_WORDS) for _ in range(words // 3)) + " .")
    path = root / "wikitext" / "wiki.test.raw"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP spinning makes tiny forwards
    100x slower with 2 threads. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def corpus_root(tmp_path) -> Path:
    root = tmp_path / "data"
    write_corpus(root)
    return root


@pytest.fixture
def stats_cache(tmp_path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    """Both weight layouts: GPT-2 Conv1D (in x out) and LLaMA Linear (out x in, BOS)."""
    return models.load(request.param)
