"""Layer second-moment statistics C0 = E[k kᵀ] (uncentred) of down-projection inputs,
cached on disk, plus a generic cache for artefacts derived from them (AlphaEdit's P).

One pass over the corpus collects every requested layer at once (the forward stops after
the deepest requested layer). Keys come from every real token position (BOS included
where the tokenizer adds one) of ``n_samples`` chunks of at most ``context_cap`` tokens.

Cache layout: ``<cache_root>/stats/<model>/<kind>-L<layer>-<sha16>.safetensors`` and a
``.json`` manifest beside it holding the full key, the sha256 of the safetensors file
and the sample/token counts. The key is the sha256 of every input: model identity
(``LoadedModel.identity``), layer, which matrix, corpus id + sha256 of its file (or
dataset revision), sample count, context cap, accumulation dtype and the chunking
version. A missing manifest or a file whose sha256 differs (truncated, corrupt) is
rebuilt.

Public API (stable):

- ``CORPORA``: registry of corpus id -> :class:`FileCorpus` | :class:`HubCorpus`
- ``second_moments(lm, layers, spec, *, data_root=None, cache_root=None, progress=True)``
  -> ``{layer: Tensor (d_ffn, d_ffn)}`` in the accumulation dtype
- ``second_moment(lm, layer, spec, ...)`` -> one Tensor
- ``stats_key(lm, layer, spec, data_root=None) -> dict`` (the cache-key inputs)
- ``derived_layer_artifact(lm, layer, spec, name, params, build, ...)`` -> Tensor:
  ``build(C0) -> Tensor`` cached under the C0 key + ``name`` + ``params``
- ``derived_layer_artifacts(lm, layers, spec, name, params, build, ...)`` -> ``{layer: Tensor}``:
  the same for several layers, the missing C0s in one corpus pass
- ``cached_tensors(key, build, *, cache_root=None, group="misc", label="artifact")``
  -> ``dict[str, Tensor]`` generic keyed safetensors cache
- ``COMPUTE_COUNT``: ``collections.Counter`` of computations done ("second_moment",
  "derived:<name>", "cached:<label>") -- tests count recomputations with it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from benchmark.core import io, settings
from benchmark.core.arch import LoadedModel, get_module
from benchmark.core.errors import DataError
from benchmark.core.registry import Registry
from editors.hparams import StatsSpec

log = logging.getLogger(__name__)

#: Bump when the way text becomes samples changes (it is part of every key).
CHUNKING_VERSION = 1
COMPUTE_COUNT: Counter[str] = Counter()
LOCK_POLL_S = 2.0  # how often a cell waiting on another's corpus pass looks for its layers


# --------------------------------------------------------------------------- corpora
@dataclass(frozen=True)
class FileCorpus:
    """A text file under the data root, split into articles at WikiText ``= Title =`` lines."""

    relpath: str

    def describe(self, data_root: str | Path | None) -> dict[str, Any]:
        path = self.path(data_root)
        return {"file": self.relpath, "sha256": io.sha256_file(path)}

    def path(self, data_root: str | Path | None) -> Path:
        path = settings.data_root(data_root) / self.relpath
        if not path.is_file():
            raise DataError(path, "statistics corpus file is missing under the data root")
        return path

    def documents(self, data_root: str | Path | None) -> list[str]:
        text = self.path(data_root).read_text(encoding="utf-8")
        docs, cur = [], []
        for line in text.splitlines():
            if re.match(r"^ = [^=].* = $", line) and cur:
                docs.append("\n".join(cur).strip())
                cur = []
            cur.append(line)
        if cur:
            docs.append("\n".join(cur).strip())
        return [d for d in docs if d]


@dataclass(frozen=True)
class HubCorpus:
    """A Hugging Face dataset at a pinned revision (needs the network)."""

    dataset: str
    config: str
    revision: str
    split: str = "train"
    text_field: str = "text"

    def describe(self, data_root: str | Path | None) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": self.config, "revision": self.revision,
                "split": self.split}

    def documents(self, data_root: str | Path | None, limit: int | None = None):
        settings.require_network(f"statistics corpus {self.dataset}/{self.config}")
        import datasets  # noqa: PLC0415 (optional, networked runs only)

        ds = datasets.load_dataset(self.dataset, self.config, revision=self.revision,
                                   split=self.split, streaming=True)
        for i, rec in enumerate(ds):
            if limit is not None and i >= limit:
                return
            yield rec[self.text_field]


Corpus = FileCorpus | HubCorpus
CORPORA: Registry[Corpus] = Registry("statistics corpus")
CORPORA.register("wikitext", FileCorpus("wikitext/wiki.test.raw"))
# The papers' corpus (ROME/MEMIT: Wikipedia articles). The dump date in the config pins the
# content; the Hub commit of the mirror is not verified from this offline machine yet
# (TODO on a networked machine: replace "main" by the commit sha and bump the entry).
CORPORA.register("wikipedia", HubCorpus("wikimedia/wikipedia", "20231101.en", revision="main"))


def chunk_documents(tokenizer, docs, n_samples: int, context_cap: int, adds_bos: bool) -> list[list[int]]:
    """The first ``n_samples`` chunks: each document's tokens cut into pieces of at most
    ``context_cap`` tokens (a BOS first where the tokenizer adds one; pieces under 8
    tokens are dropped)."""
    bos = [tokenizer.bos_token_id] if adds_bos and tokenizer.bos_token_id is not None else []
    room = context_cap - len(bos)
    out: list[list[int]] = []
    for doc in docs:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for s in range(0, len(ids), room):
            piece = ids[s:s + room]
            if len(piece) >= 8:
                out.append(bos + list(piece))
                if len(out) >= n_samples:
                    return out
    return out


# --------------------------------------------------------------------------- cache
def _stats_dir(cache_root: str | Path | None, group: str) -> Path:
    return settings.cache_root(cache_root) / "stats" / re.sub(r"[^A-Za-z0-9_.-]", "_", group)


def _try_load(tensor_path: Path, manifest_path: Path, key_sha: str) -> dict[str, torch.Tensor] | None:
    if not (tensor_path.is_file() and manifest_path.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key_sha256") != key_sha:
            raise ValueError("manifest key differs")
        blob = tensor_path.read_bytes()
        if _sha_bytes(blob) != manifest.get("file_sha256"):
            raise ValueError("file sha256 differs from manifest (truncated or corrupt)")
        return st_load(blob)
    except (ValueError, KeyError, OSError, json.JSONDecodeError, RuntimeError) as exc:
        log.warning("cache entry %s is unusable (%s); rebuilding", tensor_path.name, exc)
        return None


def _sha_bytes(blob: bytes) -> str:
    import hashlib

    return hashlib.sha256(blob).hexdigest()


def _save(tensor_path: Path, manifest_path: Path, key: dict, key_sha: str,
          tensors: dict[str, torch.Tensor], extra: dict) -> None:
    blob = st_save({k: v.contiguous() for k, v in tensors.items()})
    io.write_bytes(tensor_path, blob)
    io.write_json(manifest_path, {"key": key, "key_sha256": key_sha, "file_sha256": _sha_bytes(blob),
                                  "file": tensor_path.name, **extra})


def _paths(cache_root, group: str, label: str, key_sha: str) -> tuple[Path, Path]:
    d = _stats_dir(cache_root, group)
    stem = f"{label}-{key_sha[:16]}"
    return d / f"{stem}.safetensors", d / f"{stem}.json"


def cached_tensors(key: dict[str, Any], build: Callable[[], dict[str, torch.Tensor]], *,
                   cache_root: str | Path | None = None, group: str = "misc",
                   label: str = "artifact") -> dict[str, torch.Tensor]:
    """Load the tensors stored under ``key`` (any JSON-able dict naming every input), or
    ``build()`` them, store them atomically and return them."""
    key_sha = io.sha256_json(key)
    tpath, mpath = _paths(cache_root, group, label, key_sha)
    got = _try_load(tpath, mpath, key_sha)
    if got is not None:
        return got
    with io.file_lock(tpath.with_suffix(".lock")):  # parallel cells: one builds, others wait
        got = _try_load(tpath, mpath, key_sha)
        if got is not None:
            return got
        COMPUTE_COUNT[f"cached:{label}"] += 1
        tensors = build()
        _save(tpath, mpath, key, key_sha, tensors, {})
        return tensors


# --------------------------------------------------------------------------- second moments
def _context_cap(lm: LoadedModel, spec: StatsSpec) -> int:
    return spec.context_cap or lm.arch.stats_context_cap


def stats_key(lm: LoadedModel, layer: int, spec: StatsSpec, data_root: str | Path | None = None,
              *, _corpus_desc: dict | None = None) -> dict[str, Any]:
    """Every input of the C0 of ``layer``: the cache key."""
    corpus = CORPORA.get(spec.corpus)
    return {
        "kind": "second_moment",
        "matrix": f"input of {lm.arch.down_template}",
        "model": lm.identity,
        "layer": int(layer),
        "corpus": spec.corpus,
        "corpus_source": _corpus_desc if _corpus_desc is not None else corpus.describe(data_root),
        "n_samples": spec.n_samples,
        "context_cap": _context_cap(lm, spec),
        "dtype": spec.dtype,
        "chunking": CHUNKING_VERSION,
    }


def second_moments(lm: LoadedModel, layers: Sequence[int], spec: StatsSpec, *,
                   data_root: str | Path | None = None, cache_root: str | Path | None = None,
                   progress: bool = True) -> dict[int, torch.Tensor]:
    """C0 for every layer in ``layers``; missing ones are computed in one pass."""
    corpus = CORPORA.get(spec.corpus)
    desc = corpus.describe(data_root)
    group = lm.entry.name
    out: dict[int, torch.Tensor] = {}
    keys = {layer: stats_key(lm, layer, spec, data_root, _corpus_desc=desc)
            for layer in sorted(set(layers))}

    def load_cached() -> dict[int, tuple[dict, str]]:
        missing = {}
        for layer, key in keys.items():
            if layer in out:
                continue
            key_sha = io.sha256_json(key)
            got = _try_load(*_paths(cache_root, group, f"mom2-L{layer}", key_sha), key_sha)
            if got is not None:
                out[layer] = got["mom2"]
            else:
                missing[layer] = (key, key_sha)
        return missing

    if load_cached():
        # parallel cells of one model: one computes, the others wait and then read what it
        # stored (they compute only the layers still missing); a waiting cell goes on as
        # soon as its own layers are stored, not after the other layers of the pass
        with io.file_lock_unless(_stats_dir(cache_root, group) / "mom2.lock",
                                 lambda: not load_cached(), poll_s=LOCK_POLL_S) as held:
            missing = load_cached() if held else {}
            if missing:
                results, n_tokens, n_chunks = _compute(lm, sorted(missing), spec, corpus,
                                                       data_root, progress)
                for layer, (key, key_sha) in missing.items():
                    COMPUTE_COUNT["second_moment"] += 1
                    tpath, mpath = _paths(cache_root, group, f"mom2-L{layer}", key_sha)
                    _save(tpath, mpath, key, key_sha, {"mom2": results[layer]},
                          {"n_tokens": n_tokens, "n_samples_used": n_chunks})
                    out[layer] = results[layer]
    return {layer: out[layer] for layer in layers}


def second_moment(lm: LoadedModel, layer: int, spec: StatsSpec, **kwargs) -> torch.Tensor:
    return second_moments(lm, [layer], spec, **kwargs)[layer]


class _Stop(Exception):
    pass


@torch.no_grad()
def _compute(lm: LoadedModel, layers: list[int], spec: StatsSpec, corpus: Corpus,
             data_root, progress: bool) -> tuple[dict[int, torch.Tensor], int, int]:
    from tqdm.auto import tqdm

    COMPUTE_COUNT["second_moment_pass"] += 1
    cap = _context_cap(lm, spec)
    if isinstance(corpus, HubCorpus):
        docs = corpus.documents(data_root, limit=spec.n_samples)
    else:
        docs = corpus.documents(data_root)
    chunks = chunk_documents(lm.tokenizer, docs, spec.n_samples, cap, lm.arch.adds_bos)
    if len(chunks) < spec.n_samples:
        log.warning("corpus %s gave only %d of %d requested samples", spec.corpus, len(chunks),
                    spec.n_samples)
    dtype = getattr(torch, spec.dtype)
    d = lm.arch.d_ffn
    acc = {layer: torch.zeros(d, d, dtype=dtype) for layer in layers}
    n_tokens = 0
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    got: dict[int, torch.Tensor] = {}
    handles = []
    for layer in layers:
        def pre(module, args, layer=layer):
            got[layer] = args[0]
            if len(got) == len(layers):
                raise _Stop
        handles.append(get_module(lm.model, lm.arch.down_name(layer)).register_forward_pre_hook(pre))
    batches: list[list[list[int]]] = []
    cur: list[list[int]] = []
    for c in chunks:
        width = max([len(x) for x in cur] + [len(c)])
        if cur and width * (len(cur) + 1) > spec.batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(c)
    if cur:
        batches.append(cur)
    bar = tqdm(total=len(chunks), desc=f"second moments {lm.entry.name} L{layers}",
               disable=not progress, unit="sample")
    try:
        for b in batches:
            width = max(len(x) for x in b)
            ids = torch.full((len(b), width), pad, dtype=torch.long)
            mask = torch.zeros((len(b), width), dtype=torch.bool)
            for i, x in enumerate(b):
                ids[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = True
            got.clear()
            try:
                lm.model(input_ids=ids.to(lm.device), attention_mask=mask.long().to(lm.device))
            except _Stop:
                pass
            for layer in layers:
                k = got[layer][mask.to(got[layer].device)].to("cpu", dtype)
                acc[layer] += k.T @ k
            n_tokens += int(mask.sum())
            bar.update(len(b))
    finally:
        bar.close()
        for h in handles:
            h.remove()
    if n_tokens == 0:
        raise DataError(spec.corpus, "no tokens collected for second-moment statistics")
    return {layer: a / n_tokens for layer, a in acc.items()}, n_tokens, len(chunks)


# --------------------------------------------------------------------------- derived
def derived_layer_artifact(lm: LoadedModel, layer: int, spec: StatsSpec, name: str,
                           params: dict[str, Any], build: Callable[[torch.Tensor], torch.Tensor], *,
                           data_root: str | Path | None = None, cache_root: str | Path | None = None,
                           progress: bool = True) -> torch.Tensor:
    """An artefact computed from the C0 of ``layer`` (e.g. AlphaEdit's null-space projection),
    cached under the C0 key extended by ``name`` and ``params``."""
    key = _derived_key(lm, layer, spec, name, params, data_root)

    def _build() -> dict[str, torch.Tensor]:
        COMPUTE_COUNT[f"derived:{name}"] += 1
        c0 = second_moment(lm, layer, spec, data_root=data_root, cache_root=cache_root,
                           progress=progress)
        return {"value": build(c0)}

    return cached_tensors(key, _build, cache_root=cache_root, group=lm.entry.name,
                          label=f"{name}-L{layer}")["value"]


def _derived_key(lm: LoadedModel, layer: int, spec: StatsSpec, name: str, params: dict[str, Any],
                 data_root: str | Path | None) -> dict[str, Any]:
    return {"derived": name, "params": params, "from": stats_key(lm, layer, spec, data_root)}


def derived_layer_artifacts(lm: LoadedModel, layers: Sequence[int], spec: StatsSpec, name: str,
                            params: dict[str, Any], build: Callable[[torch.Tensor], torch.Tensor], *,
                            data_root: str | Path | None = None, cache_root: str | Path | None = None,
                            progress: bool = True) -> dict[int, torch.Tensor]:
    """:func:`derived_layer_artifact` of every layer in ``layers``. The C0s the missing
    artefacts need are computed first, in one corpus pass (one pass per layer otherwise);
    each layer's C0 is the same either way: the forward up to a layer does not depend on
    which other layers are read."""
    group = lm.entry.name
    missing = []
    for layer in layers:
        key_sha = io.sha256_json(_derived_key(lm, layer, spec, name, params, data_root))
        if not _paths(cache_root, group, f"{name}-L{layer}", key_sha)[1].is_file():
            missing.append(layer)
    if len(missing) > 1:
        second_moments(lm, missing, spec, data_root=data_root, cache_root=cache_root,
                       progress=progress)
    return {layer: derived_layer_artifact(lm, layer, spec, name, params, build, data_root=data_root,
                                          cache_root=cache_root, progress=progress)
            for layer in layers}
