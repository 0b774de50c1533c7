"""Layer second moments: value against a direct computation, one pass for many layers,
and the on-disk cache (reuse, every key input, truncated file)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from editors import stats
from editors.hparams import StatsSpec
from tests.editors.conftest import write_corpus

SPEC = StatsSpec(n_samples=6, dtype="float64", context_cap=64, batch_tokens=200)


def _direct_c0(lm, layer, data_root, spec):
    """Mean of k kᵀ over every position, sequence by sequence (no batching, no padding)."""
    docs = stats.CORPORA.get("wikitext").documents(data_root)
    chunks = stats.chunk_documents(lm.tokenizer, docs, spec.n_samples, spec.context_cap,
                                   lm.arch.adds_bos)
    rows = []
    mod = core_arch.get_module(lm.model, lm.arch.down_name(layer))
    h = mod.register_forward_pre_hook(lambda m, a: rows.append(a[0][0].double().numpy()))
    try:
        with torch.no_grad():
            for c in chunks:
                lm.model(input_ids=torch.tensor([c]))
    finally:
        h.remove()
    K = np.concatenate(rows)
    return K.T @ K / len(K), len(K)


def test_chunks_cover_documents_in_order(tiny, corpus_root):
    docs = stats.CORPORA.get("wikitext").documents(corpus_root)
    assert len(docs) == 6 and docs[0].startswith("= Article 0 =")
    chunks = stats.chunk_documents(tiny.tokenizer, docs[:1], 1000, 50, tiny.arch.adds_bos)
    bos = [tiny.tokenizer.bos_token_id] if tiny.arch.adds_bos else []
    assert all(len(c) <= 50 and c[: len(bos)] == bos for c in chunks)
    flat = [t for c in chunks for t in c[len(bos):]]
    ids = tiny.tokenizer(docs[0], add_special_tokens=False)["input_ids"]
    assert flat == ids[: len(flat)] and len(ids) - len(flat) < 8


def test_second_moment_matches_direct_computation_one_pass(tiny, corpus_root, stats_cache):
    before = stats.COMPUTE_COUNT.copy()
    got = stats.second_moments(tiny, [2, 1], SPEC, data_root=corpus_root, cache_root=stats_cache,
                               progress=False)
    assert stats.COMPUTE_COUNT["second_moment_pass"] - before["second_moment_pass"] == 1
    assert stats.COMPUTE_COUNT["second_moment"] - before["second_moment"] == 2
    for layer in (1, 2):
        expected, n = _direct_c0(tiny, layer, corpus_root, SPEC)
        assert got[layer].dtype == torch.float64 and got[layer].shape == (tiny.arch.d_ffn,) * 2
        np.testing.assert_allclose(got[layer].numpy(), expected, rtol=1e-5, atol=1e-8)


def test_cache_reuse_and_every_key_input(corpus_root, stats_cache, tmp_path):
    lm = models.load("tiny-gpt2")
    kw = {"data_root": corpus_root, "cache_root": stats_cache, "progress": False}

    def count(fn):
        before = stats.COMPUTE_COUNT["second_moment"]
        value = fn()
        return stats.COMPUTE_COUNT["second_moment"] - before, value

    n, first = count(lambda: stats.second_moment(lm, 1, SPEC, **kw))
    assert n == 1
    n, again = count(lambda: stats.second_moment(lm, 1, SPEC, **kw))
    assert n == 0 and torch.equal(first, again)
    # any changed key input recomputes
    for spec in (SPEC.model_copy(update={"n_samples": 5}), SPEC.model_copy(update={"dtype": "float32"}),
                 SPEC.model_copy(update={"context_cap": 48})):
        assert count(lambda spec=spec: stats.second_moment(lm, 1, spec, **kw))[0] == 1
    assert count(lambda: stats.second_moment(lm, 2, SPEC, **kw))[0] == 1  # layer
    other = dataclasses.replace(lm, identity={**lm.identity, "seed": 99})  # model identity
    assert count(lambda: stats.second_moment(other, 1, SPEC, **kw))[0] == 1
    root2 = tmp_path / "data2"
    write_corpus(root2, seed=7)  # corpus content (sha256)
    assert count(lambda: stats.second_moment(lm, 1, SPEC, data_root=root2, cache_root=stats_cache,
                                             progress=False))[0] == 1
    # batch size is not a key input: same cache entry
    assert count(lambda: stats.second_moment(lm, 1, SPEC.model_copy(update={"batch_tokens": 64}),
                                             **kw))[0] == 0
    # and all of them still load without recomputation
    assert count(lambda: stats.second_moment(lm, 1, SPEC.model_copy(update={"n_samples": 5}), **kw))[0] == 0


@pytest.mark.parametrize("damage", ["truncate", "manifest", "delete_manifest"])
def test_damaged_cache_is_rebuilt(corpus_root, stats_cache, damage):
    lm = models.load("tiny-llama")
    kw = {"data_root": corpus_root, "cache_root": stats_cache, "progress": False}
    first = stats.second_moment(lm, 1, SPEC, **kw)
    (tensor_file,) = (stats_cache / "stats" / "tiny-llama").glob("mom2-L1-*.safetensors")
    manifest = tensor_file.with_suffix(".json")
    if damage == "truncate":
        tensor_file.write_bytes(tensor_file.read_bytes()[:-100])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        manifest.unlink()
    before = stats.COMPUTE_COUNT["second_moment"]
    rebuilt = stats.second_moment(lm, 1, SPEC, **kw)
    assert stats.COMPUTE_COUNT["second_moment"] - before == 1
    assert torch.equal(first, rebuilt)
    assert stats.COMPUTE_COUNT["second_moment"] - before == 1
    stats.second_moment(lm, 1, SPEC, **kw)
    assert stats.COMPUTE_COUNT["second_moment"] - before == 1  # healthy again


def test_derived_artifact_cached_under_extended_key(corpus_root, stats_cache):
    lm = models.load("tiny-gpt2")
    kw = {"data_root": corpus_root, "cache_root": stats_cache, "progress": False}
    calls = []

    def build(c0):
        calls.append(1)
        return c0 * 2

    a = stats.derived_layer_artifact(lm, 1, SPEC, "double", {"f": 2}, build, **kw)
    b = stats.derived_layer_artifact(lm, 1, SPEC, "double", {"f": 2}, build, **kw)
    assert len(calls) == 1 and torch.equal(a, b)
    torch.testing.assert_close(a, 2 * stats.second_moment(lm, 1, SPEC, **kw))
    stats.derived_layer_artifact(lm, 1, SPEC, "double", {"f": 3}, build, **kw)
    stats.derived_layer_artifact(lm, 1, SPEC.model_copy(update={"n_samples": 4}), "double", {"f": 2},
                                 build, **kw)
    assert len(calls) == 3


def test_derived_artifacts_of_several_layers_take_one_corpus_pass(tiny, corpus_root, stats_cache):
    kw = {"data_root": corpus_root, "cache_root": stats_cache, "progress": False}
    before = stats.COMPUTE_COUNT.copy()
    got = stats.derived_layer_artifacts(tiny, [1, 2], SPEC, "neg", {}, lambda c0: -c0, **kw)
    assert stats.COMPUTE_COUNT["second_moment_pass"] - before["second_moment_pass"] == 1
    for layer in (1, 2):
        expected, _ = _direct_c0(tiny, layer, corpus_root, SPEC)
        np.testing.assert_allclose(got[layer].numpy(), -expected, rtol=1e-5, atol=1e-8)
    # cached: no pass, no build
    again = stats.derived_layer_artifacts(tiny, [2, 1], SPEC, "neg", {}, lambda c0: 1 / 0, **kw)
    assert stats.COMPUTE_COUNT["second_moment_pass"] - before["second_moment_pass"] == 1
    assert all(torch.equal(again[layer], got[layer]) for layer in (1, 2))


def test_missing_corpus_is_a_data_error(tmp_path, stats_cache):
    from benchmark.core.errors import DataError

    lm = models.load("tiny-gpt2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="wiki.test.raw"):
        stats.second_moment(lm, 1, SPEC, data_root=tmp_path / "empty", cache_root=stats_cache)


def test_concurrent_callers_compute_a_shared_layer_once(corpus_root, tmp_path, monkeypatch):
    """Two cells of one model asking for overlapping layers at the same time (ROME layer 6
    and MEMIT layers 4-8 in the smoke grid): the shared layer is computed once, the other
    caller waits and reads it, then computes only what is still missing."""
    import threading
    import time

    lm_a, lm_b = models.load("tiny-llama"), models.load("tiny-llama")
    real = stats._compute
    passes: list[list[int]] = []

    def slow_compute(lm, layers, *args, **kwargs):
        passes.append(list(layers))
        time.sleep(0.5)  # hold the work long enough for the other caller to arrive
        return real(lm, layers, *args, **kwargs)

    monkeypatch.setattr(stats, "_compute", slow_compute)
    kw = {"data_root": corpus_root, "cache_root": tmp_path, "progress": False}
    got: dict[str, dict] = {}
    a = threading.Thread(target=lambda: got.__setitem__("a", stats.second_moments(lm_a, [1], SPEC, **kw)))
    b = threading.Thread(target=lambda: got.__setitem__("b", stats.second_moments(lm_b, [1, 2], SPEC, **kw)))
    a.start()
    time.sleep(0.1)
    b.start()
    a.join()
    b.join()
    assert passes == [[1], [2]]
    assert torch.equal(got["a"][1], got["b"][1])
    expected, _ = _direct_c0(lm_b, 2, corpus_root, SPEC)
    np.testing.assert_allclose(got["b"][2].numpy(), expected, rtol=1e-5, atol=1e-8)


def test_a_waiting_caller_goes_on_once_its_own_layer_is_stored(corpus_root, tmp_path, monkeypatch):
    """While another process holds the statistics lock for a pass over other layers too, a
    caller whose layer that process has already stored reads it and returns, without
    waiting for the lock and without a pass of its own."""
    import shutil
    import threading

    from benchmark.core import io

    lm = models.load("tiny-llama")
    kw = {"data_root": corpus_root, "progress": False}
    stored = stats.second_moments(lm, [1], SPEC, cache_root=tmp_path / "src", **kw)[1]
    passes: list[list[int]] = []
    monkeypatch.setattr(stats, "_compute", lambda lm, layers, *a, **k: passes.append(layers))
    monkeypatch.setattr(stats, "LOCK_POLL_S", 0.05)
    src, dst = (stats._stats_dir(tmp_path / side, lm.entry.name) for side in ("src", "dst"))
    got: dict[int, torch.Tensor] = {}
    waiter = threading.Thread(target=lambda: got.update(
        stats.second_moments(lm, [1], SPEC, cache_root=tmp_path / "dst", **kw)))
    with io.file_lock(dst / "mom2.lock"):  # another cell's pass, still running
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # layer 1 is not stored yet: it waits
        for f in src.glob("mom2-L1-*"):  # the other cell stores layer 1
            shutil.copy(f, dst / f.name)
        waiter.join(timeout=60)
        done_under_lock = not waiter.is_alive()
    waiter.join()
    assert done_under_lock and passes == []
    assert torch.equal(got[1], stored)
