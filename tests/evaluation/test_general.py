"""General abilities through lm-eval: the numbers lm-eval reports for PRUNE's four tasks
are recomputed here from the logged samples with plain Python and the raw data files.

The recomputation below is independent of the suite: prompts are rebuilt from the files,
and SQuAD normalisation, span matching, the NLI rule and ROUGE (a plain n-gram / LCS
implementation) are written out directly. Tiny random models give garbage outputs (the
recomputation still has to match); one embedded test does the same on SmolLM2.
"""

from __future__ import annotations

import csv
import json
import math
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

N = 20
PRUNE_TASKS = ["prune_reasoning", "prune_summarization", "prune_qa", "prune_nli"]
# ---------------------------------------------------------------- raw data, read directly
def raw_reasoning(root: Path, n: int) -> list[tuple[str, str]]:
    """(expected prompt, gold number) of the first n GSM8K problems."""
    out = []
    with open(root / "general/prune_tasks/test-reasoning.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            rationale, gold = rec["answer"].split("#### ")
            prompt = (f"Q: {rec['question']} A:Let's think step by step. {rationale} "
                      "Therefore, the answer (arabic numerals) is:")
            out.append((prompt, gold))
            if len(out) == n:
                break
    return out


def raw_summarization(root: Path, n: int) -> list[tuple[str, str]]:
    recs = json.loads((root / "general/prune_tasks/test-summarization.json").read_text(encoding="utf-8"))
    return [(r["dialogue"] + "\nTL;DR:", r["summary"]) for r in recs[:n]]


def raw_qa(root: Path, n: int) -> list[tuple[str, list[str]]]:
    out = []
    with open(root / "general/prune_tasks/test-OpenDomainQA.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            prompt = ("Refer to the passage below and answer the following question. "
                      f"Passage: {rec['output'][0]} Question: {rec['question']}. Answer:")
            out.append((prompt, rec["answer"]))
            if len(out) == n:
                break
    return out


def raw_nli(root: Path, n: int) -> list[tuple[str, str]]:
    with open(root / "general/prune_tasks/test-NLI.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))[1: n + 1]
    return [(f"{s1} entails the {s2}. True or False? answer:", label) for _, s1, s2, label in rows]


# ---------------------------------------------------------------- rules
def squad_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def any_span_match(output: str, answers: list[str]) -> int:
    pred = squad_normalize(output.split("Answer:")[-1].replace("\n", " "))
    words = pred.split(" ")
    golds = [squad_normalize(a) for a in answers]
    spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    return int(any(g in spans for g in golds))


def nli_counts(outputs: list[str], labels: list[str]) -> tuple[int, int, int]:
    """(correct among answered, answered, total) under PRUNE's true/false substring rule."""
    correct = answered = 0
    for out, label in zip(outputs, labels):
        low = out.lower()
        said = "true" if "true" in low else "false" if "false" in low else None
        if said is None:
            continue
        answered += 1
        correct += int((said == "true") == (label == "entailment"))
    return correct, answered, len(outputs)


def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i: i + n]) for i in range(len(toks) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_triplet(prediction: str, reference: str) -> tuple[float, float, float]:
    """ROUGE-1, ROUGE-2, ROUGE-L F1 (lower-cased alphanumeric tokens); <=1 char scores 0."""
    if len(prediction) <= 1:
        return 0.0, 0.0, 0.0
    p, r = _tokens(prediction), _tokens(reference)
    out = []
    for n in (1, 2):
        gp, gr = _ngrams(p, n), _ngrams(r, n)
        out.append(_f1(sum((gp & gr).values()), sum(gp.values()), sum(gr.values())))
    out.append(_f1(_lcs(p, r), len(p), len(r)))
    return out[0], out[1], out[2]


def output_of(sample: dict) -> str:
    resp = sample["filtered_resps"]
    return resp[0] if isinstance(resp, list) else resp


# ---------------------------------------------------------------- the check itself
def check_prune_results(result, root: Path, n: int) -> dict:
    """Assert lm-eval's numbers equal the plain recomputation; return the recomputed values."""
    by_id = {t: sorted(result.samples[t], key=lambda s: int(s["doc_id"])) for t in PRUNE_TASKS}
    for t in PRUNE_TASKS:
        assert len(by_id[t]) == n, t

    # reasoning: gold number is a substring of the output
    raw = raw_reasoning(root, n)
    for s, (prompt, _) in zip(by_id["prune_reasoning"], raw):
        assert s["arguments"][0][0] == prompt
    hits = [int(gold in output_of(s)) for s, (_, gold) in zip(by_id["prune_reasoning"], raw)]
    acc = sum(hits) / n
    assert result["prune_reasoning"]["acc"].value == pytest.approx(acc, abs=1e-12)
    assert result["prune_reasoning"]["acc"].n == n

    # summarization: mean of per-item (R1 + R2 + RL) / 3, and each mean
    raw_s = raw_summarization(root, n)
    triplets = []
    for s, (prompt, ref) in zip(by_id["prune_summarization"], raw_s):
        assert s["arguments"][0][0] == prompt
        triplets.append(rouge_triplet(output_of(s).split("DR:")[-1], ref))
    means = [sum(t[i] for t in triplets) / n for i in range(3)]
    got = result["prune_summarization"]
    assert got["rouge1"].value == pytest.approx(means[0], abs=1e-9)
    assert got["rouge2"].value == pytest.approx(means[1], abs=1e-9)
    assert got["rougeL"].value == pytest.approx(means[2], abs=1e-9)
    assert got["rouge_mean"].value == pytest.approx(sum(means) / 3, abs=1e-9)

    # open-domain QA: any-span exact match
    raw_q = raw_qa(root, n)
    for s, (prompt, _) in zip(by_id["prune_qa"], raw_q):
        assert s["arguments"][0][0] == prompt
    em = sum(any_span_match(output_of(s), ans) for s, (_, ans) in zip(by_id["prune_qa"], raw_q)) / n
    assert result["prune_qa"]["em"].value == pytest.approx(em, abs=1e-12)

    # NLI: accuracy over answered items, and over all items
    raw_n = raw_nli(root, n)
    for s, (prompt, _) in zip(by_id["prune_nli"], raw_n):
        assert s["arguments"][0][0] == prompt
    correct, answered, total = nli_counts([output_of(s) for s in by_id["prune_nli"]],
                                          [label for _, label in raw_n])
    got = result["prune_nli"]
    assert got["acc_total"].value == pytest.approx(correct / total, abs=1e-12)
    assert got["answered"].value == pytest.approx(answered / total, abs=1e-12)
    assert got["acc"].n == answered
    if answered:
        assert got["acc"].value == pytest.approx(correct / answered, abs=1e-12)
    else:
        assert math.isnan(got["acc"].value)
    return {"reasoning": acc, "rouge": means, "qa": em, "nli": (correct, answered, total)}


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
    from benchmark.evaluation.general import TASKS

    with pytest.raises(UnknownName, match="prune_nli"):
        TASKS.get("prune_nl")


def test_headline_tasks_and_smoke_limits_are_registered():
    from benchmark.evaluation.general import HEADLINE_TASKS, SMOKE_LIMITS, TASKS

    assert HEADLINE_TASKS and set(HEADLINE_TASKS) == set(SMOKE_LIMITS)
    for t in HEADLINE_TASKS:
        TASKS.get(t)
        assert 1 <= SMOKE_LIMITS[t] <= 100


def test_every_registered_task_has_a_yaml_and_every_yaml_is_registered():
    from benchmark.evaluation.general import TASKS, TASKS_YAML_DIR

    yamls = {p.stem for p in TASKS_YAML_DIR.glob("*.yaml")}
    assert yamls == set(TASKS.names())


# ---------------------------------------------------------------- data of the tasks
def test_prune_first_n_defaults_match_upstream_reading(data_root):
    """PRUNE reads GSM8K until line 359 (358 items), SAMSum 149, NQ until 262 (261) and the
    first 300 csv rows of RTE including the header (299 items)."""
    from benchmark.evaluation import lm_tasks

    assert len(lm_tasks.load_prune_reasoning()["test"]) == 358
    assert len(lm_tasks.load_prune_summarization()["test"]) == 149
    assert len(lm_tasks.load_prune_qa()["test"]) == 261
    nli = lm_tasks.load_prune_nli()["test"]
    assert len(nli) == 299
    assert [d["prompt"] for d in nli] == [p for p, _ in raw_nli(data_root, 299)]


def test_wikitext_heldout_is_disjoint_from_the_statistics_half(data_root):
    from benchmark.evaluation import lm_tasks

    text = (data_root / "wikitext/wiki.test.raw").read_text(encoding="utf-8")
    first_half = text[: len(text) // 2]
    docs = [d["text"] for d in lm_tasks.load_wikitext_heldout()["test"]]
    assert len(docs) > 100
    for d in docs:
        assert d not in first_half
        assert text.index(d) >= len(text) // 2
        assert len(d.split()) >= 20


def test_known_facts_are_well_formed_and_not_counterfact_subjects(data_root):
    from benchmark.core.settings import TASKS_DIR

    facts = [json.loads(line) for line in
             (TASKS_DIR / "lm_eval/known_facts.jsonl").read_text().splitlines()]
    assert 50 <= len(facts) <= 100
    assert len({f["prompt"] for f in facts}) == len(facts)
    for f in facts:
        assert f["true"] and f["false"] and f["true"] != f["false"]
    subjects = set()
    for split in ("edit", "train", "val"):
        recs = json.loads((data_root / f"counterfact/easyedit_counterfact-{split}.json").read_text())
        subjects.update(r["subject"] for r in recs)
    for f in facts:
        words = f["prompt"].split()
        grams = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        assert not (grams & subjects), (f["prompt"], grams & subjects)


def test_mmlu_interleaves_subjects(data_root):
    from benchmark.evaluation import lm_tasks

    docs = lm_tasks.load_mmlu(first_n=114)["test"]
    subjects = [d["subject"] for d in docs]
    assert len(set(subjects[:57])) == 57 and subjects[:57] == subjects[57:114]
    with open(data_root / "general/mmlu/test/abstract_algebra_test.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert docs[0]["gold"] == int(first["answer"])
    assert first["question"].strip() in docs[0]["prompt"]


def test_piqa_labels_line_up(data_root):
    from benchmark.evaluation import lm_tasks

    docs = lm_tasks.load_piqa(first_n=30)["test"]
    labels = (data_root / "general/piqa/valid-labels.lst").read_text().split()[:30]
    recs = [json.loads(x) for x in (data_root / "general/piqa/valid.jsonl").read_text().splitlines()[:30]]
    for d, lab, r in zip(docs, labels, recs):
        assert d["gold"] == int(lab) and d["choices"] == [r["sol1"], r["sol2"]]


def test_malformed_record_names_file_record_and_field(tmp_path, monkeypatch):
    from benchmark.core.errors import DataError
    from benchmark.evaluation import lm_tasks

    bad = tmp_path / "reasoning.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    monkeypatch.setattr(lm_tasks, "data_path", lambda name: bad)
    with pytest.raises(DataError, match=r"record 0, field 'answer'"):
        lm_tasks.load_prune_reasoning()
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"reasoning.jsonl, record 0, field 'answer': missing"):
        lm_tasks.load_prune_reasoning()
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="invalid JSON"):
        lm_tasks.load_prune_reasoning()


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
