"""General abilities through lm-eval: the numbers lm-eval reports for PRUNE's four tasks
are recomputed here from the logged samples with plain Python and the raw data files
(tests/evaluation/recompute.py, independent of the suite). Tiny random models give garbage
outputs (the recomputation still has to match); one embedded test does the same on SmolLM2.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from .recompute import PRUNE_TASKS, N, check_prune_results


@pytest.fixture(scope="module")
def tiny_llama(cache_root):
    from benchmark import models

    return models.load("tiny-llama")


@pytest.fixture(scope="module")
def tiny_prune(tiny_llama):
    from benchmark.evaluation.general import evaluate_tasks

    return evaluate_tasks(tiny_llama, PRUNE_TASKS, limit=N, batch_size=8)


def test_prune_tasks_recomputed_tiny(tiny_prune, data_root):
    check_prune_results(tiny_prune, data_root, N)


def test_settings_and_hashes_are_recorded(tiny_prune, tiny_llama):
    st = tiny_prune.settings
    assert st.batch_size == 8 and st.apply_chat_template is False
    assert st.limits == {t: N for t in PRUNE_TASKS}
    assert st.add_bos_token is tiny_llama.arch.adds_bos
    for t in PRUNE_TASKS:
        rows = sorted((int(s["doc_id"]), s["doc_hash"], s["prompt_hash"], s["target_hash"])
                      for s in tiny_prune.samples[t])
        import hashlib

        want = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
        assert tiny_prune.task_hashes[t] == want


def test_stderr_is_standard_error_of_the_mean(tiny_llama):
    from benchmark.evaluation.general import evaluate_tasks

    res = evaluate_tasks(tiny_llama, ["known_facts"], limit=12, batch_size=4)
    margins = [float(s["margin"]) for s in res.samples["known_facts"]]
    mean = sum(margins) / len(margins)
    sd = math.sqrt(sum((m - mean) ** 2 for m in margins) / (len(margins) - 1))
    mv = res["known_facts"]["margin"]
    assert mv.value == pytest.approx(mean, rel=1e-9)
    assert mv.stderr == pytest.approx(sd / math.sqrt(len(margins)), rel=1e-9)
    assert mv.n == 12


def test_glue_weighted_f1_and_accuracy_recomputed(tiny_llama, data_root):
    from benchmark.evaluation.general import evaluate_tasks

    res = evaluate_tasks(tiny_llama, ["glue_sst2", "glue_dialogue"], limit=N, batch_size=8)
    raw_sst2 = json.loads((data_root / "general/alphaedit_glue/sst2.json").read_text())[:N]
    raw_dlg = json.loads((data_root / "general/alphaedit_glue/dialogue.json").read_text())[:N]
    golds = {"glue_sst2": [0 if r["label"] == 1 else 1 for r in raw_sst2],  # 0 = " positive"
             "glue_dialogue": ["ABCD".index(r["answers"]) for r in raw_dlg]}
    for task in ("glue_sst2", "glue_dialogue"):
        samples = sorted(res.samples[task], key=lambda s: int(s["doc_id"]))
        preds = []
        for s in samples:
            lls = [float(r[0]) for r in s["filtered_resps"]]
            preds.append(max(range(len(lls)), key=lambda i: (lls[i], -i)))
        gold = golds[task]
        acc = sum(p == g for p, g in zip(preds, gold)) / N
        f1w = 0.0
        for c in set(gold):
            tp = sum(p == c and g == c for p, g in zip(preds, gold))
            fp = sum(p == c and g != c for p, g in zip(preds, gold))
            fn = sum(p != c and g == c for p, g in zip(preds, gold))
            f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            f1w += f1 * gold.count(c) / N
        assert res[task]["acc"].value == pytest.approx(acc, abs=1e-12)
        assert res[task]["f1"].value == pytest.approx(f1w, abs=1e-9)


def test_the_in_memory_model_is_evaluated(tiny_llama):
    """An in-place weight change (as an editor makes) is what gets evaluated: with the
    output head zeroed every next-byte distribution is uniform over the 260 ids, so each
    fact's margin is (bytes of " false" - bytes of " true") * log 260."""
    import torch

    from benchmark.core.settings import TASKS_DIR
    from benchmark.evaluation.general import evaluate_tasks

    facts = [json.loads(line) for line in
             (TASKS_DIR / "lm_eval/known_facts.jsonl").read_text().splitlines()[:6]]
    head = tiny_llama.model.lm_head.weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head.zero_()
        res = evaluate_tasks(tiny_llama, ["known_facts"], limit=6, batch_size=6)
    finally:
        with torch.no_grad():
            head.copy_(saved)
    margins = [(len((" " + f["false"]).encode()) - len((" " + f["true"]).encode())) * math.log(260)
               for f in facts]
    assert res["known_facts"]["margin"].value == pytest.approx(sum(margins) / 6, rel=1e-4)
    assert res["known_facts"]["acc"].value == pytest.approx(sum(m > 0 for m in margins) / 6)
    again = evaluate_tasks(tiny_llama, ["known_facts"], limit=6, batch_size=6)
    assert again["known_facts"]["margin"].value != pytest.approx(res["known_facts"]["margin"].value)


def test_task_objects_are_cached_between_calls():
    from benchmark.evaluation.general import load_task

    assert load_task("known_facts") is load_task("known_facts")


def test_unknown_task_suggests_the_close_name():
    from benchmark.core.registry import UnknownName
    from benchmark.evaluation.task_catalog import TASKS

    with pytest.raises(UnknownName, match="prune_nli"):
        TASKS.get("prune_nl")


def test_headline_tasks_and_smoke_limits_are_registered():
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, SMOKE_LIMITS, TASKS

    assert HEADLINE_TASKS and set(HEADLINE_TASKS) == set(SMOKE_LIMITS)
    for t in HEADLINE_TASKS:
        TASKS.get(t)
        assert 1 <= SMOKE_LIMITS[t] <= 100


def test_every_registered_task_has_a_yaml_and_every_yaml_is_registered():
    from benchmark.evaluation.task_catalog import TASKS, TASKS_YAML_DIR

    yamls = {p.stem for p in TASKS_YAML_DIR.glob("*.yaml")}
    assert yamls == set(TASKS.names())


# ---------------------------------------------------------------- CLI
def _seqedit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_cli_eval_json(cache_root):
    proc = _seqedit("eval", "--model", "tiny-gpt2", "--tasks", "known_facts,prune_nli",
                    "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert set(out) == {"known_facts", "prune_nli"}
    assert out["known_facts"]["acc"]["n"] == 3
    assert 0.0 <= out["known_facts"]["acc"]["value"] <= 1.0


def test_cli_eval_unknown_task_and_bad_limit_fail_clearly():
    proc = _seqedit("eval", "--model", "tiny-gpt2", "--tasks", "known_fact", "--json")
    assert proc.returncode != 0 and "Did you mean 'known_facts'" in proc.stderr
    proc = _seqedit("eval", "--model", "tiny-gpt2", "--tasks", "known_facts", "--limit", "0")
    assert proc.returncode != 0 and "--limit must be at least 1" in proc.stderr


# ---------------------------------------------------------------- embedded model
@pytest.mark.embedded
@pytest.mark.slow
def test_prune_tasks_recomputed_smollm2(smollm2, data_root):
    from benchmark.evaluation.general import evaluate_tasks

    res = evaluate_tasks(smollm2, PRUNE_TASKS, limit=N, batch_size=8)
    got = check_prune_results(res, data_root, N)
    # not garbage: SmolLM2 copies some final answers out of the rationale
    assert got["reasoning"] > 0


@pytest.mark.embedded
def test_chat_template_is_applied_and_recorded(smollm2):
    from benchmark.evaluation.general import evaluate_tasks

    res = evaluate_tasks(smollm2, ["known_facts"], limit=2, batch_size=2, apply_chat_template=True)
    assert res.settings.apply_chat_template is True
    for s in res.samples["known_facts"]:
        context = s["arguments"][0][0]
        assert context.startswith("<|im_start|>") and s["doc"]["prompt"] in context


@pytest.mark.parametrize("disabled", [True, False])
def test_tqdm_disable_reaches_lm_evals_request_bars(tiny_llama, capsys, monkeypatch, disabled):
    """lm-eval passes disable= explicitly (and hard-codes it inside loglikelihood_rolling);
    TQDM_DISABLE (set by `seqedit grid --no-progress`) still silences its request bars,
    and the results do not depend on it."""
    from benchmark.evaluation.general import evaluate_tasks

    if disabled:
        monkeypatch.setenv("TQDM_DISABLE", "1")
    else:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    res = evaluate_tasks(tiny_llama, ["known_facts", "wikitext_heldout"],
                         limit={"known_facts": 4, "wikitext_heldout": 2}, batch_size=4)
    err = capsys.readouterr().err
    assert ("Running loglikelihood requests" in err) is (not disabled)
    assert res["known_facts"]["acc"].n == 4
