"""Editing metrics (docs/methods.md, editing metrics), batched through
:func:`benchmark.core.scoring.score_targets`.

All teacher-forced scoring goes through ``score_targets``: the prompt is encoded with the
tokenizer's special tokens (a BOS-adding tokenizer gets its BOS), the target with none, so
a BOS is never scored as part of a target. ``P(target)`` below is ``exp(-mean token NLL)``
of the target's tokens (``TargetScores.prob``).

Rates and magnitudes are reported x100 (percent / percentage points); each metric is a
:class:`~benchmark.evaluation.MetricValue` (value, n, standard error of the mean) over cases.

CounterFact (``EditRequest`` from the EasyEdit or ROME format):
- ``efficacy``: share of cases with P(new | prompt) > P(true | prompt);
  ``efficacy_magnitude``: mean of P(new) - P(true).
- ``generalization``: the same on the rephrase/paraphrase prompts (per case: the mean over
  its prompts, then the mean over cases); ``generalization_magnitude`` likewise.
- ``locality``: on each locality prompt, its OWN answer must still beat the edit's new
  target: P(answer | loc prompt) > P(target_new | loc prompt). In the EasyEdit format the
  answer is ``locality_ground_truth``; in ROME's format it is the case's true target (the
  neighbourhood prompts share the subject's relation and object). ``locality_magnitude``:
  mean of P(answer) - P(new).
- ``fluency``: mean over cases of the 2-/3-gram entropy (weights 2/3, 4/3) of a 100-token
  top-k=5 sample from each generation prompt (ROME format) or the edit prompt (EasyEdit),
  seeded (see :mod:`benchmark.evaluation.fluency`).
- ``consistency``: ROME's TF-IDF cosine between the generations and the reference snippets
  of (relation, new target) -- ROME-format requests and the ROME TF-IDF files only; else
  skipped with the note of :func:`benchmark.evaluation.consistency.unavailable_reason`.

zsRE (MEND format; docs/methods.md: teacher-forced token-level top-1 accuracy):
- ``zsre_efficacy``: per case, the share of the new answer's tokens that are the argmax
  given ``src`` and the preceding answer tokens; mean over cases.
- ``zsre_generalization``: the same on ``rephrase``.
- ``zsre_locality``: the same for ``loc_ans`` given ``loc`` ("nq question: ...") on the
  evaluated model. This is the absolute form docs/methods.md names (``loc_ans`` given
  ``loc``); EasyEdit's variant compares with the unedited model's own predictions instead.

MQuAKE (``mquake_multihop``, cases from ``load_mquake_cases``): a multi-hop question
counts as answered with the new fact when the best P over ``new_answer`` and its aliases
beats the best P over the old ``answer`` and its aliases, each scored after
``MQUAKE_TEMPLATE``; a case is correct if ANY of its questions succeeds (MQuAKE's
convention of counting a case when one of its three paraphrased questions is answered).

Generation-based success (``gen_*``, ``zsre_gen_*``): :mod:`benchmark.evaluation.generation`.

Evaluation timing is a runner setting recorded with the results: :data:`benchmark.spec.EvalTiming`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from benchmark.core.scoring import TargetScores, score_targets
from benchmark.evaluation import MetricValue
from benchmark.evaluation.generation import GENERATION_METRICS, GenerationRule, generation_metrics

log = logging.getLogger(__name__)

#: Prompt for multi-hop questions (the answer follows after a space).
MQUAKE_TEMPLATE = "Q: {question} A:"


COUNTERFACT_METRICS = ("efficacy", "efficacy_magnitude", "generalization", "generalization_magnitude",
                       "locality", "locality_magnitude")
ZSRE_METRICS = ("zsre_efficacy", "zsre_generalization", "zsre_locality")
ALL_METRICS = COUNTERFACT_METRICS + ZSRE_METRICS + ("fluency", "consistency", "mquake_multihop") + GENERATION_METRICS


def _scaled(xs: Sequence[float], ids: Sequence[object] | None = None) -> MetricValue:
    """x100 mean over cases, each case's score kept under its id (its case id)."""
    return MetricValue.mean_of([100.0 * x for x in xs], ids=ids)


def _case_ids(requests: Sequence) -> list[str]:
    return [str(getattr(r, "case_id", i)) for i, r in enumerate(requests)]


def _score(lm, prompts: Sequence[str], targets: Sequence[str], batch_size: int,
           reference: bool = False) -> TargetScores:
    return score_targets(lm.model, lm.tokenizer, list(prompts), list(targets), batch_size=batch_size,
                         reference=reference)


def _probs(lm, pairs: Sequence[tuple[str, str]], batch_size: int) -> dict[tuple[str, str], float]:
    """P(target | prompt) of every distinct (prompt, target) pair, scored in one batched pass."""
    unique = list(dict.fromkeys(pairs))
    probs = _score(lm, [p for p, _ in unique], [t for _, t in unique], batch_size).prob.tolist()
    return dict(zip(unique, probs))


def _per_case_mean(values: Sequence[float], owners: Sequence[int],
                   requests: Sequence) -> MetricValue:
    """x100 mean over cases of each case's mean over its prompts (cases without prompts
    are left out), each case under its case id."""
    n_cases = len(requests)
    sums, counts = [0.0] * n_cases, [0] * n_cases
    for v, o in zip(values, owners):
        sums[o] += v
        counts[o] += 1
    ids = _case_ids(requests)
    kept = [i for i in range(n_cases) if counts[i] > 0]
    return _scaled([sums[i] / counts[i] for i in kept], [ids[i] for i in kept])


def _contest_reference(lm, prompts: Sequence[str], winners: Sequence[str], losers: Sequence[str],
                       batch_size: int) -> tuple[list[float], list[float]]:
    """Per prompt: 1.0 if P(winner) > P(loser) else 0.0, and P(winner) - P(loser), scored
    as the original path did (winners, then losers, each on the padded reference path)."""
    if not prompts:
        return [], []
    pw = _score(lm, prompts, winners, batch_size, reference=True).prob
    pl = _score(lm, prompts, losers, batch_size, reference=True).prob
    return (pw > pl).double().tolist(), (pw - pl).tolist()


def _counterfact_pairs(requests: Sequence, kind: str) -> tuple[list[str], list[str], list[str], list[int]]:
    """(prompts, winners, losers, owning case index) for efficacy/generalization/locality."""
    prompts, win, lose, owner = [], [], [], []
    for i, r in enumerate(requests):
        if kind == "efficacy":
            items = [(r.prompt, r.target_new, r.target_true)]
        elif kind == "generalization":
            items = [(p, r.target_new, r.target_true) for p in r.rephrase_prompts]
        elif kind == "locality":
            items = [(p, ans, r.target_new) for p, ans in r.locality]
        else:
            raise ValueError(kind)
        for p, w, lo in items:
            prompts.append(p)
            win.append(w)
            lose.append(lo)
            owner.append(i)
    return prompts, win, lose, owner


def _counterfact(lm, requests: Sequence, kind: str, batch_size: int, *,
                 probs: dict[tuple[str, str], float] | None = None,
                 reference: bool = False) -> tuple[MetricValue, MetricValue]:
    """(rate, magnitude) of ``kind``. ``probs``: the pairs' probabilities scored beforehand
    (:func:`_probs`, one pass for every kind), else scored here; ``reference``: the
    original path (two padded passes per kind)."""
    prompts, win, lose, owner = _counterfact_pairs(requests, kind)
    if reference:
        success, diff = _contest_reference(lm, prompts, win, lose, batch_size)
    else:
        if probs is None:
            probs = _probs(lm, list(zip(prompts, win)) + list(zip(prompts, lose)), batch_size)
        pw = [probs[(p, w)] for p, w in zip(prompts, win)]
        pl = [probs[(p, lo)] for p, lo in zip(prompts, lose)]
        success = [float(a > b) for a, b in zip(pw, pl)]
        diff = [a - b for a, b in zip(pw, pl)]
    return _per_case_mean(success, owner, requests), _per_case_mean(diff, owner, requests)


def counterfact_efficacy(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 share of cases with P(new | prompt) > P(true | prompt)."""
    return _counterfact(lm, requests, "efficacy", batch_size)[0]


def counterfact_efficacy_magnitude(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 mean of P(new | prompt) - P(true | prompt)."""
    return _counterfact(lm, requests, "efficacy", batch_size)[1]


def counterfact_generalization(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    return _counterfact(lm, requests, "generalization", batch_size)[0]


def counterfact_generalization_magnitude(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    return _counterfact(lm, requests, "generalization", batch_size)[1]


def counterfact_locality(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 share of locality prompts whose own answer still beats the new target."""
    return _counterfact(lm, requests, "locality", batch_size)[0]


def counterfact_locality_magnitude(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    return _counterfact(lm, requests, "locality", batch_size)[1]


# --------------------------------------------------------------------------- zsRE
def _token_accuracy(lm, prompts: Sequence[str], targets: Sequence[str], batch_size: int,
                    reference: bool = False) -> list[float]:
    if not prompts:
        return []
    scores = _score(lm, prompts, targets, batch_size, reference)
    return [float(c.double().mean()) for c in scores.token_correct]


def _zsre(lm, requests: Sequence, kind: str, batch_size: int, reference: bool = False) -> MetricValue:
    prompts, targets, owner = [], [], []
    for i, r in enumerate(requests):
        if kind == "efficacy":
            items = [(r.prompt, r.target_new)]
        elif kind == "generalization":
            items = [(p, r.target_new) for p in r.rephrase_prompts]
        else:
            items = list(r.locality)
        for p, t in items:
            prompts.append(p)
            targets.append(t)
            owner.append(i)
    acc = _token_accuracy(lm, prompts, targets, batch_size, reference)
    return _per_case_mean(acc, owner, requests)


def zsre_efficacy(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 teacher-forced top-1 token accuracy of the new answer given ``src``."""
    return _zsre(lm, requests, "efficacy", batch_size)


def zsre_generalization(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 teacher-forced top-1 token accuracy of the new answer given ``rephrase``."""
    return _zsre(lm, requests, "generalization", batch_size)


def zsre_locality(lm, requests: Sequence, batch_size: int = 32) -> MetricValue:
    """x100 teacher-forced top-1 token accuracy of ``loc_ans`` given ``loc``."""
    return _zsre(lm, requests, "locality", batch_size)


# --------------------------------------------------------------------------- MQuAKE
def mquake_question_success(lm, cases: Sequence, *, use_aliases: bool = True,
                            batch_size: int = 32) -> list[list[bool]]:
    """Per case, per question: does the best new answer (or alias) beat the best old one?"""
    prompts, targets, keys = [], [], []  # key: (case, question, is_new)
    for ci, c in enumerate(cases):
        new = [c.new_answer] + (list(c.new_answer_alias) if use_aliases else [])
        old = [c.answer] + (list(c.answer_alias) if use_aliases else [])
        for qi, q in enumerate(c.questions):
            p = MQUAKE_TEMPLATE.format(question=q)
            for is_new, answers in ((True, new), (False, old)):
                for a in answers:
                    prompts.append(p)
                    targets.append(a)
                    keys.append((ci, qi, is_new))
    probs = _score(lm, prompts, targets, batch_size).prob.tolist() if prompts else []
    best: dict[tuple[int, int, bool], float] = {}
    for k, pr in zip(keys, probs):
        best[k] = max(best.get(k, float("-inf")), pr)
    return [[best[(ci, qi, True)] > best[(ci, qi, False)] for qi in range(len(c.questions))]
            for ci, c in enumerate(cases)]


def mquake_multihop(lm, cases: Sequence, *, use_aliases: bool = True, batch_size: int = 32) -> MetricValue:
    """x100 share of cases where at least one multi-hop question prefers the new answer."""
    per_q = mquake_question_success(lm, cases, use_aliases=use_aliases, batch_size=batch_size)
    return _scaled([float(any(qs)) for qs in per_q], _case_ids(cases))


# --------------------------------------------------------------------------- generation
def generation_prompts(request) -> tuple[str, ...]:
    """ROME's generation prompts when the request carries them, else the edit prompt."""
    extra = dict(request.extra)
    return tuple(extra.get("generation_prompts") or ()) or (request.prompt,)


def _generate(lm, requests: Sequence, *, seed: int, batch_size: int, max_new_tokens: int,
              top_k: int) -> list[list[str]]:
    from benchmark.evaluation.fluency import sample_texts

    prompts, owner = [], []
    for i, r in enumerate(requests):
        for p in generation_prompts(r):
            prompts.append(p)
            owner.append(i)
    texts = sample_texts(lm.model, lm.tokenizer, prompts, max_new_tokens=max_new_tokens, top_k=top_k,
                         seed=seed, batch_size=batch_size)
    grouped: list[list[str]] = [[] for _ in requests]
    for t, o in zip(texts, owner):
        grouped[o].append(t)
    return grouped


def fluency(lm, requests: Sequence, *, seed: int = 0, batch_size: int = 8, max_new_tokens: int = 100,
            top_k: int = 5, generations: list[list[str]] | None = None,
            scored: str = "prompt+continuation", lowercase: bool = False) -> MetricValue:
    """Mean over cases of the mean n-gram entropy of the case's generations (not x100), each
    scored as :func:`~benchmark.evaluation.fluency.generation_fluency` (default: ROME's form)."""
    from benchmark.evaluation.fluency import generation_fluency

    gens = generations if generations is not None else _generate(
        lm, requests, seed=seed, batch_size=batch_size, max_new_tokens=max_new_tokens, top_k=top_k)
    ids = _case_ids(requests)
    per_case = {i: [generation_fluency(p, g, scored=scored, lowercase=lowercase)
                    for p, g in zip(generation_prompts(requests[i]), gens[i])]
                for i in range(len(gens)) if gens[i]}
    return MetricValue.mean_of([sum(v) / len(v) for v in per_case.values()],
                               ids=[ids[i] for i in per_case])


def consistency(lm, requests: Sequence, *, data_root=None, seed: int = 0, batch_size: int = 8,
                max_new_tokens: int = 100, top_k: int = 5,
                generations: list[list[str]] | None = None) -> MetricValue | None:
    """x100 TF-IDF cosine of generations vs. reference snippets; None (logged) when unavailable."""
    from benchmark.data import resolve
    from benchmark.evaluation.consistency import (
        consistency_scores,
        load_snippets,
        load_tfidf,
        unavailable_reason,
    )

    reason = unavailable_reason(data_root)
    if reason is None and not all("relation_id" in dict(r.extra) and dict(r.extra).get("target_new_id")
                                  for r in requests):
        reason = ("consistency skipped: needs ROME-format requests (relation_id, target_new id); "
                  "the EasyEdit format has no reference snippets")
    if reason is not None:
        log.warning(reason)
        return None
    tfidf = load_tfidf(resolve("rome-idf", data_root=data_root), resolve("rome-tfidf-vocab", data_root=data_root))
    snippets = load_snippets(resolve("rome-attribute-snippets", data_root=data_root))
    gens = generations if generations is not None else _generate(
        lm, requests, seed=seed, batch_size=batch_size, max_new_tokens=max_new_tokens, top_k=top_k)
    refs = [snippets.get((str(dict(r.extra)["relation_id"]), str(dict(r.extra)["target_new_id"])), [])
            for r in requests]
    return _scaled(consistency_scores(gens, refs, tfidf), _case_ids(requests))


# --------------------------------------------------------------------------- runner entry
def evaluate_editing(loaded_model, requests: Sequence, metrics: Iterable[str] = COUNTERFACT_METRICS, *,
                     batch_size: int = 32, cases: Sequence | None = None, seed: int = 0,
                     gen_batch_size: int = 8, data_root=None, reference: bool = False,
                     generation: GenerationRule | None = None,
                     fluency_form: dict | None = None) -> dict[str, MetricValue]:
    """Compute ``metrics`` on ``loaded_model`` (a benchmark.core.arch.LoadedModel).

    ``requests`` are the edited facts to evaluate (chosen by the cell's
    :data:`benchmark.spec.EvalTiming`); ``cases`` the MQuAKE cases for ``mquake_multihop`` (default: rebuilt from MQuAKE
    ``requests``, keeping the cases all of whose edits are among them). Each metric is computed
    once per call (a rate and its magnitude share one scoring pass); one that cannot be computed
    here (consistency without its files) is left out, with a logged note.

    The CounterFact metrics of every kind are scored in one pass over the distinct (prompt,
    target) pairs (:func:`benchmark.core.scoring.score_continuations`); ``reference=True``
    scores them as the original implementation did (two padded passes per kind, equal within
    float tolerance; kept for the benchmark and the equality tests). ``generation``: the rule of
    the generation-based metrics (None: the default); ``fluency_form``: :func:`fluency`'s
    ``scored`` and ``lowercase`` (None: ROME's form).
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown editing metric(s) {unknown}; known: {', '.join(ALL_METRICS)}")
    out: dict[str, MetricValue] = {}
    was_training = loaded_model.model.training
    loaded_model.model.eval()
    try:
        kinds = [k for k in ("efficacy", "generalization", "locality")
                 if k in metrics or f"{k}_magnitude" in metrics]
        probs = None
        if kinds and not reference:
            pairs = []
            for kind in kinds:
                prompts, win, lose, _ = _counterfact_pairs(requests, kind)
                pairs += list(zip(prompts, win)) + list(zip(prompts, lose))
            probs = _probs(loaded_model, pairs, batch_size)
        for kind in kinds:
            rate, mag = _counterfact(loaded_model, requests, kind, batch_size, probs=probs,
                                     reference=reference)
            if kind in metrics:
                out[kind] = rate
            if f"{kind}_magnitude" in metrics:
                out[f"{kind}_magnitude"] = mag
        for name in ZSRE_METRICS:
            if name in metrics:
                out[name] = _zsre(loaded_model, requests, name.removeprefix("zsre_"), batch_size,
                                  reference=reference)
        out.update(generation_metrics(loaded_model, requests, [m for m in metrics if m in GENERATION_METRICS],
                                      generation, batch_size))
        gens = None
        if "fluency" in metrics or "consistency" in metrics:
            gens = _generate(loaded_model, requests, seed=seed, batch_size=gen_batch_size,
                             max_new_tokens=100, top_k=5)
        if "fluency" in metrics:
            out["fluency"] = fluency(loaded_model, requests, generations=gens, **(fluency_form or {}))
        if "consistency" in metrics:
            value = consistency(loaded_model, requests, data_root=data_root, generations=gens)
            if value is not None:
                out["consistency"] = value
        if "mquake_multihop" in metrics:
            if cases is None:  # rebuilt from the requests: only cases with all their edits
                from benchmark.data.loaders import cases_from_requests

                cases = cases_from_requests(requests)
            out["mquake_multihop"] = mquake_multihop(loaded_model, cases, batch_size=batch_size)
    finally:
        loaded_model.model.train(was_training)
    return out


__all__ = [
    "ALL_METRICS", "COUNTERFACT_METRICS", "MQUAKE_TEMPLATE", "ZSRE_METRICS", "consistency",
    "counterfact_efficacy", "counterfact_efficacy_magnitude", "counterfact_generalization",
    "counterfact_generalization_magnitude", "counterfact_locality", "counterfact_locality_magnitude",
    "evaluate_editing", "fluency", "generation_prompts", "mquake_multihop",
    "mquake_question_success", "zsre_efficacy", "zsre_generalization", "zsre_locality"]

