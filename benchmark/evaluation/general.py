"""General abilities of an in-memory (possibly edited) model through lm-evaluation-harness.

``evaluate_tasks(loaded_model, ["prune_nli", "known_facts"], limit=20)`` wraps the model
object itself in lm-eval's ``HFLM`` (no reload, so edits made in place are what gets
evaluated), runs the suite's tasks from ``tasks/lm_eval/`` offline with a fixed batch size
and greedy decoding (lm-eval left-pads batched generation), keeps the logged samples, and
returns ``{task: {metric: MetricValue}}`` with the samples, task hashes and the recorded
settings attached.

Per-call overhead: the TaskManager (which indexes tasks/lm_eval only, never lm-eval's
built-in tasks) and each built Task (its parsed documents) are cached in-process, keyed by
the task YAML's sha256, the data root, each data file's (size, mtime) and the sha256 of
the repository files it reads; a grid that evaluates twenty checkpoints builds each task
once. lm-eval stores no request cache here. The tasks themselves are declared in
:mod:`benchmark.evaluation.task_catalog`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.data import resolve
from benchmark.evaluation import STATISTICS, Items, MetricValue
from benchmark.evaluation.task_catalog import TASKS, TASKS_YAML_DIR, TaskInfo

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class EvalSettings:
    """Everything about how tasks were run, recorded with every result."""

    batch_size: int
    apply_chat_template: bool
    limits: dict[str, int | None]
    max_length: int | None
    add_bos_token: bool
    device: str
    lm_eval_version: str
    decoding: str = "greedy"
    num_fewshot: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class GeneralResults(dict):
    """``{task: {metric: MetricValue}}`` plus the run's provenance.

    ``samples[task]``: lm-eval's logged samples (doc, arguments, resps, filtered_resps,
    per-sample metrics, doc/prompt/target hashes). ``task_hashes[task]``: sha256 over the
    (doc_hash, prompt_hash, target_hash) of the evaluated items, so two runs with the same
    hash evaluated the same prompts. ``settings``: :class:`EvalSettings`.
    """

    def __init__(self, metrics: Mapping[str, Mapping[str, MetricValue]], *,
                 samples: dict[str, list[dict]], task_hashes: dict[str, str],
                 settings: EvalSettings):
        super().__init__({k: dict(v) for k, v in metrics.items()})
        self.samples = samples
        self.task_hashes = task_hashes
        self.settings = settings

    def to_json(self) -> dict:
        """Metrics as plain values (``{task: {metric: {value, n, stderr}}}``) and provenance."""
        return {
            "metrics": {t: {m: mv.to_dict() for m, mv in ms.items()} for t, ms in self.items()},
            "task_hashes": dict(self.task_hashes),
            "settings": self.settings.to_dict(),
        }


# --------------------------------------------------------------------------- caching
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _task_manager(include_paths: tuple[str, ...], signature: tuple):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths), include_defaults=False)


def _yaml_dirs() -> list[Path]:
    """tasks/lm_eval, then the YAML folders of plugin tasks (``seqedit.tasks`` entry points)."""
    dirs = [TASKS_YAML_DIR]
    for name in TASKS.names():
        yaml_dir = TASKS.get(name).yaml_dir if TASKS.plugin_origin(name) else None
        if yaml_dir is not None and Path(yaml_dir) not in dirs:
            dirs.append(Path(yaml_dir))
    return dirs


def _yaml_signature(dirs: list[Path]) -> tuple:
    files = [f for d in dirs for f in sorted(d.glob("*.y*ml")) + [d / "utils.py"]]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())


def task_manager():
    """lm-eval TaskManager over tasks/lm_eval and plugin tasks' folders only (cached; rebuilt
    if a YAML changes)."""
    dirs = _yaml_dirs()
    return _task_manager(tuple(map(str, dirs)), _yaml_signature(dirs))


def _task_key(info: TaskInfo) -> tuple:
    parts: list[Any] = [info.name, hashlib.sha256(info.yaml_path.read_bytes()).hexdigest(),
                        str(settings.data_root())]
    for name in info.data:
        path = resolve(name)  # verifies existence + sha256 (cached by stat)
        st = path.stat()
        parts.append((name, str(path), st.st_size, st.st_mtime_ns))
    for file in info.files:
        parts.append(hashlib.sha256(file.read_bytes()).hexdigest())
    return tuple(parts)


_TASK_CACHE: dict[tuple, Any] = {}


def load_task(name: str):
    """The built lm-eval Task for ``name`` (cached in-process by all of its inputs)."""
    info = TASKS.get(name)
    key = _task_key(info)
    with _LOCK:
        task = _TASK_CACHE.get(key)
        if task is None:
            loaded = task_manager().load([name])
            task = loaded["tasks"][name]
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            for old in [k for k in _TASK_CACHE if k[0] == name]:
                del _TASK_CACHE[old]
            _TASK_CACHE[key] = task
    return task


def clear_cache() -> None:
    with _LOCK:
        _TASK_CACHE.clear()
    _task_manager.cache_clear()


# --------------------------------------------------------------------------- evaluation
def _resolve_limits(tasks: Sequence[str], limit: int | Mapping[str, int] | None) -> dict[str, int | None]:
    if limit is None or isinstance(limit, int):
        if isinstance(limit, int) and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return {t: limit for t in tasks}
    unknown = set(limit) - set(tasks)
    if unknown:
        raise ValueError(f"limits given for tasks not evaluated: {sorted(unknown)}")
    return {t: limit.get(t) for t in tasks}


def task_limits(tasks: Sequence[str], limit: int | Mapping[str, int] | None,
                loaded: Mapping[str, Any] | None = None) -> dict[str, int]:
    """How many leading documents of each task to evaluate: ``limit`` (one number for every
    task, a per-task mapping, or None for all of them). A limit beyond a task's documents is
    a DataError naming the task, its size and its data sets, never a silent cut. ``loaded``:
    tasks the caller has already built (by name), so they are not looked up again."""
    limits = _resolve_limits(tasks, limit)
    out = {}
    for name in tasks:
        task = loaded[name] if loaded is not None else load_task(name)
        n_docs = len(task.eval_docs)
        lim = limits[name]
        if lim is not None and lim > n_docs:
            data = ", ".join(TASKS.get(name).data) or "its repository files"
            raise DataError(f"task {name}", f"limit {lim} is more than its {n_docs} documents "
                            f"(data: {data})", field="limit")
        out[name] = n_docs if lim is None else lim
    return out


def progress_disabled() -> bool:
    """``TQDM_DISABLE`` set to a true value (``seqedit grid --no-progress`` sets it)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


#: Left-padded prompt tokens per generation batch (default path): each batch also pays one
#: decoding step per new token, so generation batches are larger than scoring ones.
GENERATION_TOKENS_PER_BATCH = 1024


def make_lm(loaded_model, *, batch_size: int, max_length: int | None = None, reference: bool = False):
    """lm-eval HFLM around the in-memory model and tokenizer (device: the model's).

    lm-eval passes ``disable=`` explicitly to its request progress bars, so tqdm's own
    ``TQDM_DISABLE`` cannot reach them; this subclass forwards it (read at call time).
    Unless ``reference`` (lm-eval's own batching, kept for comparison), log-likelihoods are
    scored by :func:`benchmark.core.scoring.score_continuations` (no padding, the head on
    continuation positions only) and generation runs in batches of similar prompt lengths
    (little left padding): equal within float tolerance (docs/performance.md, checkpoint evaluation)."""
    from lm_eval.models.huggingface import HFLM
    from tqdm import tqdm

    from benchmark.core.scoring import length_batches, score_continuations

    class _HFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm or progress_disabled())

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(
                requests, disable_tqdm=disable_tqdm or progress_disabled())

        def generate_until(self, requests, disable_tqdm: bool = False):
            disable = disable_tqdm or progress_disabled()
            if reference:
                return super().generate_until(requests, disable_tqdm=disable)
            # batches of similar prompt lengths (little left padding), each lm-eval's own call
            lengths = [len(self.tok_encode(r.args[0])) for r in requests]
            out: list[str | None] = [None] * len(requests)
            batch = self.batch_size_per_gpu
            try:
                for group in length_batches(lengths, batch, GENERATION_TOKENS_PER_BATCH):
                    self.batch_size_per_gpu = len(group)
                    texts = super().generate_until([requests[i] for i in group], disable_tqdm=disable)
                    for i, text in zip(group, texts):
                        out[i] = text
            finally:
                self.batch_size_per_gpu = batch
            return out

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
            if reference:  # loglikelihood_rolling calls this with disable_tqdm=False hard-coded
                return super()._loglikelihood_tokens(
                    requests, disable_tqdm=disable_tqdm or progress_disabled(), **kwargs)
            # lm-eval's window: the last max_length + 1 tokens of context + continuation
            seqs = [(ctx + cont)[-(self.max_length + 1):] for _, ctx, cont in requests]
            with tqdm(total=len(requests), disable=disable_tqdm or progress_disabled(),
                      desc="Running loglikelihood requests") as bar:
                scores = score_continuations(self.model, seqs, [len(s) - len(cont) for s, (_, _, cont)
                                                                in zip(seqs, requests)], self.batch_size)
                bar.update(len(requests))
            out = []
            for (key, _, _), lp, hits in zip(requests, scores.logprob_sum, scores.token_correct):
                answer = (float(lp), bool(hits.all()))
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
                out.append(answer)
            return out

    return _HFLM(pretrained=loaded_model.model, tokenizer=loaded_model.tokenizer,
                 batch_size=batch_size, max_length=max_length,
                 add_bos_token=loaded_model.arch.adds_bos, backend="causal",
                 device=str(loaded_model.device))


def evaluate_tasks(loaded_model, tasks: Iterable[str], limit: int | Mapping[str, int] | None = None,
                   batch_size: int = 8, apply_chat_template: bool = False,
                   log_samples: bool = True, max_length: int | None = None,
                   reference: bool = False) -> GeneralResults:
    """Evaluate ``loaded_model`` (a :class:`benchmark.core.arch.LoadedModel`) on suite tasks.

    ``limit``: the first N documents of every task, or a per-task mapping (missing tasks:
    all documents); see :func:`task_limits`. ``apply_chat_template`` wraps each prompt in the
    tokenizer's chat template (instruct models); it is recorded in ``result.settings``.
    Samples are always collected internally (the metrics' standard errors and task hashes
    come from them);
    ``log_samples=False`` only drops them from the returned object. ``reference``: lm-eval's
    own request batching (see :func:`make_lm`).
    """
    import lm_eval
    from lm_eval.evaluator import evaluate

    settings.apply_offline_env()
    names = list(dict.fromkeys(tasks))
    if not names:
        raise ValueError("no tasks given")
    infos = {n: TASKS.get(n) for n in names}  # UnknownName with did-you-mean
    task_objs = {n: load_task(n) for n in names}
    counts = task_limits(names, limit, task_objs)
    samples_arg = {n: list(range(counts[n])) for n in names}
    lm = make_lm(loaded_model, batch_size=batch_size, max_length=max_length, reference=reference)
    for n, task in task_objs.items():
        gen = task.get_config("generation_kwargs") or {}
        if task.get_config("output_type") == "generate_until" and \
                int(gen.get("max_gen_toks", 0)) >= lm.max_length:
            raise ValueError(
                f"task {n!r} generates up to {gen['max_gen_toks']} tokens, but the model's "
                f"maximum length is {lm.max_length}; pass a larger max_length or drop the task")
    raw = evaluate(
        lm=lm,
        task_dict={"tasks": task_objs, "groups": {}, "group_map": {}},
        samples=samples_arg,
        bootstrap_iters=0,
        log_samples=True,
        apply_chat_template=apply_chat_template,
    )
    metrics: dict[str, dict[str, MetricValue]] = {}
    hashes: dict[str, str] = {}
    samples: dict[str, list[dict]] = {}
    for n in names:
        task_samples = raw["samples"][n]
        metrics[n] = _metric_values(raw["results"][n], task_samples, infos[n])
        hashes[n] = task_hash(task_samples)
        if log_samples:
            samples[n] = task_samples
    run_settings = EvalSettings(
        batch_size=batch_size, apply_chat_template=bool(apply_chat_template),
        limits={n: len(samples_arg[n]) for n in names}, max_length=lm.max_length,
        add_bos_token=bool(loaded_model.arch.adds_bos), device=str(loaded_model.device),
        lm_eval_version=getattr(lm_eval, "__version__", "unknown"),
    )
    return GeneralResults(metrics, samples=samples, task_hashes=hashes, settings=run_settings)


def _metric_values(task_results: Mapping[str, Any], task_samples: list[dict],
                   info: TaskInfo) -> dict[str, MetricValue]:
    """lm-eval's aggregated values, with n, (for per-item means) the standard error, and
    the per-item outputs wherever the aggregate is a statistic of them (:func:`_items`)."""
    out: dict[str, MetricValue] = {}
    for key, value in task_results.items():
        if "," not in key or "_stderr" in key or key == "alias":
            continue
        metric = key.split(",")[0]
        per_item = [s.get(metric) for s in task_samples]
        stderr = None
        if per_item and all(isinstance(v, (int, float)) for v in per_item):
            mv = MetricValue.mean_of([float(v) for v in per_item])
            if math.isclose(mv.value, float(value), rel_tol=1e-9, abs_tol=1e-12):
                stderr = mv.stderr  # the aggregate is the per-item mean
        out[metric] = MetricValue(float(value), info.metric_n(metric, task_samples), stderr,
                                  _items(metric, float(value), task_samples))
    return out


def _items(metric: str, value: float, task_samples: list[dict]) -> Items | None:
    """Per-document outputs of ``metric`` (ids: lm-eval's doc ids) when lm-eval's aggregate
    is a statistic of them: the mean of numeric per-document scores, or for the perplexity
    metrics the (log-likelihood, words or bytes) pairs lm-eval aggregates. None for
    corpus-level aggregates (F1 over the pooled predictions, a mean over a subset)."""
    if not task_samples:
        return None
    ids = tuple(str(s["doc_id"]) for s in task_samples)
    per_item = [s.get(metric) for s in task_samples]
    if all(isinstance(v, (int, float)) for v in per_item):  # bool is an int
        items = Items(ids, tuple(float(v) for v in per_item))
    elif metric in STATISTICS and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in per_item):
        items = Items(ids, tuple(float(v[0]) for v in per_item),
                      tuple(float(v[1]) for v in per_item), statistic=metric)
    else:
        return None
    if not math.isclose(items.value(), value, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return items


def task_hash(task_samples: list[dict]) -> str:
    """sha256 over the evaluated items' (doc_hash, prompt_hash, target_hash), in doc order."""
    rows = sorted((s["doc_id"], s.get("doc_hash"), s.get("prompt_hash"), s.get("target_hash"))
                  for s in task_samples)
    blob = json.dumps(rows, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()

