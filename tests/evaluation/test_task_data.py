"""Documents of the lm-eval tasks: sizes, selection rules and validation, checked against
the raw files read directly."""

from __future__ import annotations

import csv
import json

import pytest

from .recompute import raw_nli


def test_prune_first_n_defaults_match_upstream_reading(data_root):
    """PRUNE reads GSM8K until line 359 (358 items), SAMSum 149, NQ until 262 (261) and the
    first 300 csv rows of RTE including the header (299 items)."""
    from benchmark.evaluation import task_data

    assert len(task_data.load_task("prune_reasoning")["test"]) == 358
    assert len(task_data.load_task("prune_summarization")["test"]) == 149
    assert len(task_data.load_task("prune_qa")["test"]) == 261
    nli = task_data.load_task("prune_nli")["test"]
    assert len(nli) == 299
    assert [d["prompt"] for d in nli] == [p for p, _ in raw_nli(data_root, 299)]


def test_wikitext_heldout_is_disjoint_from_the_statistics_half(data_root):
    from benchmark.evaluation import task_data

    text = (data_root / "wikitext/wiki.test.raw").read_text(encoding="utf-8")
    first_half = text[: len(text) // 2]
    docs = [d["text"] for d in task_data.load_task("wikitext_heldout")["test"]]
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
    from benchmark.evaluation import task_data

    docs = task_data.load_task("mmlu", first_n=114)["test"]
    subjects = [d["subject"] for d in docs]
    assert len(set(subjects[:57])) == 57 and subjects[:57] == subjects[57:114]
    with open(data_root / "general/mmlu/test/abstract_algebra_test.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert docs[0]["gold"] == int(first["answer"])
    assert first["question"].strip() in docs[0]["prompt"]


def test_piqa_labels_line_up(data_root):
    from benchmark.evaluation import task_data

    docs = task_data.load_task("piqa", first_n=30)["test"]
    labels = (data_root / "general/piqa/valid-labels.lst").read_text().split()[:30]
    recs = [json.loads(x) for x in (data_root / "general/piqa/valid.jsonl").read_text().splitlines()[:30]]
    for d, lab, r in zip(docs, labels, recs):
        assert d["gold"] == int(lab) and d["choices"] == [r["sol1"], r["sol2"]]


def test_malformed_record_names_file_record_and_field(tmp_path, monkeypatch):
    from benchmark.core.errors import DataError
    from benchmark.evaluation import task_data

    bad = tmp_path / "reasoning.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    monkeypatch.setattr(task_data, "data_path", lambda name: bad)
    with pytest.raises(DataError, match=r"record 0, field 'answer'"):
        task_data.load_task("prune_reasoning")
    bad.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"reasoning.jsonl, record 0, field 'answer': missing"):
        task_data.load_task("prune_reasoning")
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="invalid JSON"):
        task_data.load_task("prune_reasoning")


# ---------------------------------------------------------------- prompts and documents
def _jsonl(path, n):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line, _ in zip(fh, range(n))]


def _expected_prompts(root, n: int = 3) -> dict[str, list[str]]:
    """The first n prompts of each task, written out by hand from the raw files."""
    out: dict[str, list[str]] = {}
    out["gsm8k_zeroshot"] = [f"Question: {r['question']}\nAnswer:"
                             for r in _jsonl(root / "general/gsm8k/test.jsonl", n)]
    out["nq_closedbook"] = [f"Q: {r['question']}?\nA:"
                            for r in _jsonl(root / "general/nq_open/NQ-open.dev.jsonl", n)]
    out["boolq"] = [f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"
                    for r in _jsonl(root / "general/boolq/dev.jsonl", n)]
    out["piqa"] = [f"Question: {r['goal']}\nAnswer:" for r in _jsonl(root / "general/piqa/valid.jsonl", n)]
    glue = {k: json.loads((root / f"general/alphaedit_glue/{k}.json").read_text(encoding="utf-8"))[:n]
            for k in ("sst2", "mrpc", "cola", "rte", "nli", "sentiment_analysis", "mmlu", "dialogue")}
    out["glue_sst2"] = [f"Review :{r['sentence']}\nSentiment :" for r in glue["sst2"]]
    out["glue_mrpc"] = [f"Are the sentences paraphrases of each other.\nSentence 1: {r['sentence1']}\n"
                        f"Sentence 2: {r['sentence2']}\nAnswer:" for r in glue["mrpc"]]
    out["glue_cola"] = [f"Is this sentence linguistically acceptable?\nSentence: {r['sentence']}\nAnswer: "
                        for r in glue["cola"]]
    out["glue_rte"] = [f"{r['sentence1']}\nquestion: {r['sentence2']} True or False?\nanswer:"
                       for r in glue["rte"]]
    out["glue_nli"] = [f"{r['sentence1']} entails the {r['sentence2']} True or False? Answer:"
                       for r in glue["nli"]]
    out["glue_sentiment_analysis"] = [
        "For each snippet of text,label the sentiment of the text as positive or negative.The answer "
        f"should be exact 'positive' or 'negative'. text: {r['sentence']} answer:"
        for r in glue["sentiment_analysis"]]
    out["glue_mmlu"] = [f"Question: {r['question']}\n(A) {r['choices'][0]}\n(B) {r['choices'][1]}\n"
                        f"(C) {r['choices'][2]}\n(D) {r['choices'][3]}\nAnswer:" for r in glue["mmlu"]]
    out["glue_dialogue"] = [f"Q: Given the following: {r['article']}\nWhich choice is correct?\n"
                            f"(A){r['options'][0]}\n(B){r['options'][1]}\n(C){r['options'][2]}\n"
                            f"(D){r['options'][3]}\nAnswer:" for r in glue["dialogue"]]
    with open(root / "general/mmlu/test/abstract_algebra_test.csv", newline="", encoding="utf-8") as fh:
        q = next(csv.DictReader(fh))
    out["mmlu"] = [
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        f"{q['question'].strip()}\nA. {q['choice0'].strip()}\nB. {q['choice1'].strip()}\n"
        f"C. {q['choice2'].strip()}\nD. {q['choice3'].strip()}\nAnswer:"]
    return out


#: the fields of each task's documents, in order (lm-eval hashes the documents as JSON)
DOC_FIELDS = {
    "prune_reasoning": ["prompt", "gold"], "prune_summarization": ["prompt", "reference"],
    "prune_qa": ["prompt", "answers"], "prune_nli": ["prompt", "label"],
    "gsm8k_zeroshot": ["prompt", "gold"], "nq_closedbook": ["prompt", "answers"],
    "boolq": ["prompt", "choices", "gold"], "piqa": ["prompt", "choices", "gold"],
    "mmlu": ["prompt", "choices", "gold", "subject"], "wikitext_heldout": ["text"],
    "known_facts": ["prompt", "choices", "gold", "topic"],
    **{f"glue_{k}": ["prompt", "choices", "gold"] for k in
       ("sst2", "mrpc", "cola", "rte", "nli", "sentiment_analysis", "mmlu", "dialogue")},
}


def test_prompts_and_document_fields_are_as_written_out(data_root):
    from benchmark.evaluation import task_data
    from benchmark.evaluation.task_catalog import TASKS

    assert set(DOC_FIELDS) == set(TASKS.names())
    expected = _expected_prompts(data_root)
    for task, fields in DOC_FIELDS.items():
        docs = list(task_data.load_task(task, first_n=3)["test"])
        assert all(list(d) == fields for d in docs), task
        if task in expected:
            assert [d["prompt"] for d in docs][: len(expected[task])] == expected[task], task
    nli = task_data.load_task("prune_nli", first_n=1)["test"][0]
    assert nli == {"prompt": "No Weapons of Mass Destruction Found in Iraq Yet. entails the Weapons "
                             "of Mass Destruction Found in Iraq.. True or False? answer:",
                   "label": "not_entailment"}
    sst2 = task_data.load_task("glue_sst2", first_n=1)["test"][0]
    assert sst2 == {"prompt": "Review :an exhilarating futuristic thriller-noir , minority report "
                              "twists the best of technology around a gripping story , delivering "
                              "a riveting , pulse intensifying escapist adventure of the first "
                              "order \nSentiment :",
                    "choices": ["positive", "negative"], "gold": 0}


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_published_task_hashes_are_reproduced(data_root, model):
    """The task hashes in results/baselines/<model>.json, recomputed from the built requests
    (no model needed): lm-eval hashes each document as JSON, the first request's context
    and the target, exactly as its evaluator logs them."""
    from lm_eval.utils import handle_non_serializable, hash_string

    from benchmark.core.settings import RESULTS_DIR
    from benchmark.evaluation.general import load_task, task_hash

    published = json.loads((RESULTS_DIR / f"baselines/{model}.json").read_text())["tasks"]
    for name, entry in published.items():
        task = load_task(name)
        task.build_all_requests(limit=entry["settings"]["limits"][name], rank=0, world_size=1)
        first: dict[int, object] = {}
        for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
            first.setdefault(inst.doc_id, inst)
        samples = [{"doc_id": doc_id,
                    "doc_hash": hash_string(json.dumps(inst.doc, indent=2, default=handle_non_serializable,
                                                       ensure_ascii=False)),
                    "prompt_hash": hash_string(inst.arguments[0]),
                    "target_hash": hash_string(str(task.doc_to_target(inst.doc)))}
                   for doc_id, inst in first.items()]
        assert task_hash(samples) == entry["task_hash"], (model, name)
