"""Python side of the suite's lm-eval tasks (tasks/lm_eval/*.yaml).

How data paths reach lm-eval: a task YAML cannot read the data root, so every task uses
``custom_dataset: !function utils.<loader>`` with ``dataset_kwargs`` naming the data set
(``data: prune-reasoning``) and the default number of leading records (``first_n``).
lm-eval calls the loader when it builds the task; the loader resolves the file through
:func:`benchmark.data.resolve` (the data root from ``$SEQEDIT_DATA``, sha256-verified
against ``tasks/datasets/<name>.yaml``), parses and validates it (a bad record raises
:class:`~benchmark.core.errors.DataError` naming file, record and field), builds each prompt in
Python and returns an in-memory ``datasets.Dataset`` (no hub, no datasets cache).
``tasks/lm_eval/utils.py`` only re-exports the functions below.

Every document carries ``prompt`` (the exact model input) and either ``choices``/``gold``
(multiple choice) or the fields its ``process_results`` needs.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmark.core import settings
from benchmark.core.errors import DataError
from benchmark.evaluation import text_metrics as tm

log = logging.getLogger(__name__)

#: The committed list of well-known facts (prompt, true object, false object).
KNOWN_FACTS_FILE = settings.TASKS_DIR / "lm_eval" / "known_facts.jsonl"


# --------------------------------------------------------------------------- data access
def data_path(name: str) -> Path:
    """Verified path of data set ``name`` under the data root (see benchmark.data)."""
    from benchmark.data import resolve

    return resolve(name)


def _dataset(docs: list[dict[str, Any]], source: object) -> dict[str, Any]:
    import datasets

    if not docs:
        raise DataError(source, "no records to evaluate")
    return {"test": datasets.Dataset.from_list(docs)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc}") from None


def _read_jsonl(path: Path, first_n: int | None = None) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if first_n is not None and len(out) >= first_n:
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc}", record=i) from None
            if not isinstance(rec, dict):
                raise DataError(path, "record is not a JSON object", record=i)
            out.append(rec)
    return out


def _field(path: object, rec: dict, i: int, name: str, kind: type | tuple[type, ...] = str,
           nonempty: bool = True) -> Any:
    if name not in rec:
        raise DataError(path, "missing field", record=i, field=name)
    value = rec[name]
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(path, f"expected {want}, got {type(value).__name__}", record=i, field=name)
    if nonempty and isinstance(value, (str, list)) and len(value) == 0:
        raise DataError(path, "empty value", record=i, field=name)
    return value


def _take(records: Sequence, first_n: int | None) -> Sequence:
    return records if first_n is None else records[: int(first_n)]


# --------------------------------------------------------------------------- PRUNE's four tasks
def load_prune_reasoning(data: str = "prune-reasoning", first_n: int | None = 358, **_: Any):
    """GSM8K with the gold rationale in the prompt (PRUNE/RECT ``Reasoning``)."""
    path = data_path(data)
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        question = _field(path, rec, i, "question")
        answer = _field(path, rec, i, "answer")
        if "#### " not in answer:
            raise DataError(path, "answer has no '#### ' final-answer marker", record=i, field="answer")
        hint = tm.gsm8k_rationale(answer)
        docs.append({
            "prompt": f"Q: {question} A:Let's think step by step. {hint} "
                      "Therefore, the answer (arabic numerals) is:",
            "gold": tm.gsm8k_gold_number(answer),
        })
    return _dataset(docs, path)


def load_prune_summarization(data: str = "prune-summarization", first_n: int | None = 149, **_: Any):
    """SAMSum dialogue + ``TL;DR:`` (PRUNE/RECT ``Summarization``)."""
    path = data_path(data)
    records = _read_json(path)
    if not isinstance(records, list):
        raise DataError(path, "expected a JSON list of records")
    docs = []
    for i, rec in enumerate(_take(records, first_n)):
        if not isinstance(rec, dict):
            raise DataError(path, "record is not a JSON object", record=i)
        dialogue = _field(path, rec, i, "dialogue")
        summary = _field(path, rec, i, "summary")
        docs.append({"prompt": f"{dialogue}\nTL;DR:", "reference": summary})
    return _dataset(docs, path)


def load_prune_qa(data: str = "prune-qa", first_n: int | None = 261, **_: Any):
    """NQ-open question with a supporting passage (PRUNE/RECT ``OpenDomainQA``)."""
    path = data_path(data)
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        question = _field(path, rec, i, "question")
        passages = _field(path, rec, i, "output", list)
        answers = _field(path, rec, i, "answer", list)
        if not isinstance(passages[0], str):
            raise DataError(path, "passage is not a string", record=i, field="output")
        docs.append({
            "prompt": "Refer to the passage below and answer the following question. "
                      f"Passage: {passages[0]} Question: {question}. Answer:",
            "answers": [str(a) for a in answers],
        })
    return _dataset(docs, path)


def load_prune_nli(data: str = "prune-nli", first_n: int | None = 299, **_: Any):
    """RTE pairs with ``{s1} entails the {s2}. True or False? answer:`` (PRUNE/RECT ``NLI``).

    Read with Python's csv reader (tab-delimited, default quoting), as upstream does: it
    strips the quotes around fields that begin with one. Upstream reads the first 300
    csv rows (header included) and evaluates rows 1..299, hence the default of 299.
    """
    path = data_path(data)
    docs = []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        header = next(rows, None)
        if header is None or header[:4] != ["index", "sentence1", "sentence2", "label"]:
            raise DataError(path, f"expected header index, sentence1, sentence2, label; got {header}")
        for i, row in enumerate(rows):
            if first_n is not None and len(docs) >= first_n:
                break
            if len(row) != 4:
                raise DataError(path, f"expected 4 tab-separated fields, got {len(row)}", record=i)
            _, s1, s2, label = row
            if label not in ("entailment", "not_entailment"):
                raise DataError(path, f"unknown label {label!r}", record=i, field="label")
            docs.append({
                "prompt": f"{s1} entails the {s2}. True or False? answer:",
                "label": label,
            })
    return _dataset(docs, path)


# --------------------------------------------------------------------------- standard variants
def load_gsm8k(data: str = "gsm8k-test", first_n: int | None = None, **_: Any):
    """GSM8K without the rationale: ``Question: ...\\nAnswer:`` (lm-eval's zero-shot format)."""
    path = data_path(data)
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        question = _field(path, rec, i, "question")
        answer = _field(path, rec, i, "answer")
        if "#### " not in answer:
            raise DataError(path, "answer has no '#### ' final-answer marker", record=i, field="answer")
        gold = tm.last_number(tm.gsm8k_gold_number(answer))
        docs.append({"prompt": f"Question: {question}\nAnswer:", "gold": gold or ""})
    return _dataset(docs, path)


def load_nq_closedbook(data: str = "nq-open-dev", first_n: int | None = None, **_: Any):
    """NQ-open without a passage: ``Q: {question}?\\nA:``."""
    path = data_path(data)
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        question = _field(path, rec, i, "question")
        answers = _field(path, rec, i, "answer", list)
        docs.append({"prompt": f"Q: {question}?\nA:", "answers": [str(a) for a in answers]})
    return _dataset(docs, path)


def load_boolq(data: str = "boolq-dev", first_n: int | None = None, **_: Any):
    """BoolQ (lm-eval's prompt): ``{passage}\\nQuestion: {question}?\\nAnswer:`` -> no / yes."""
    path = data_path(data)
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        passage = _field(path, rec, i, "passage")
        question = _field(path, rec, i, "question")
        answer = _field(path, rec, i, "answer", bool)
        docs.append({"prompt": f"{passage}\nQuestion: {question}?\nAnswer:",
                     "choices": ["no", "yes"], "gold": int(answer)})
    return _dataset(docs, path)


def load_piqa(data: str = "piqa-valid", labels: str = "piqa-valid-labels",
              first_n: int | None = None, **_: Any):
    """PIQA (lm-eval's prompt): ``Question: {goal}\\nAnswer:`` -> sol1 / sol2."""
    path = data_path(data)
    label_path = data_path(labels)
    records = _read_jsonl(path, first_n)
    label_lines = label_path.read_text(encoding="utf-8").split()
    if len(label_lines) < len(records):
        raise DataError(label_path, f"{len(label_lines)} labels for {len(records)} records")
    docs = []
    for i, rec in enumerate(records):
        goal = _field(path, rec, i, "goal")
        sol1 = _field(path, rec, i, "sol1", nonempty=False)
        sol2 = _field(path, rec, i, "sol2", nonempty=False)
        if label_lines[i] not in ("0", "1"):
            raise DataError(label_path, f"label must be 0 or 1, got {label_lines[i]!r}", record=i)
        docs.append({"prompt": f"Question: {goal}\nAnswer:", "choices": [sol1, sol2],
                     "gold": int(label_lines[i])})
    return _dataset(docs, path)


def load_mmlu(data: str = "mmlu", split: str = "test", first_n: int | None = None, **_: Any):
    """MMLU, zero-shot, lm-eval's prompt. Subjects are interleaved round-robin (subject order
    alphabetical, rows in file order), so the first N items cover many subjects."""
    root = data_path(data)
    files = sorted((root / split).glob(f"*_{split}.csv"))
    if not files:
        raise DataError(root / split, f"no *_{split}.csv files")
    per_subject: list[list[dict]] = []
    for f in files:
        subject = f.name[: -len(f"_{split}.csv")]
        rows = []
        with open(f, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for i, row in enumerate(reader):
                try:
                    choices = [row[f"choice{k}"] for k in range(4)]
                    question, answer = row["question"], int(row["answer"])
                except (KeyError, TypeError) as exc:
                    raise DataError(f, f"missing column {exc}", record=i) from None
                except ValueError:
                    raise DataError(f, "answer is not an integer", record=i, field="answer") from None
                if answer not in range(4):
                    raise DataError(f, f"answer {answer} not in 0..3", record=i, field="answer")
                topic = subject.replace("_", " ")
                letters = "".join(f"{L}. {c.strip()}\n" for L, c in zip("ABCD", choices))
                rows.append({
                    "prompt": f"The following are multiple choice questions (with answers) about "
                              f"{topic}.\n\n{question.strip()}\n{letters}Answer:",
                    "choices": ["A", "B", "C", "D"], "gold": answer, "subject": subject,
                })
        per_subject.append(rows)
    docs = [r for group in _round_robin(per_subject) for r in group]
    return _dataset(list(_take(docs, first_n)), root)


def _round_robin(groups: list[list[dict]]) -> Iterable[list[dict]]:
    longest = max(len(g) for g in groups)
    for k in range(longest):
        yield [g[k] for g in groups if k < len(g)]


# --------------------------------------------------------------------------- AlphaEdit GLUE sets
#: AlphaEdit glue_eval prompts (zero-shot), label words, and how a record's label maps to
#: the index of the correct label word. Scored by comparing the log-likelihood of
#: ``prompt + " " + word`` over the label words (AlphaEdit's "f1_new" path).
def _glue_binary(prompt: Callable[[dict], str], words: tuple[str, str],
                 gold: Callable[[dict], int]) -> dict:
    return {"prompt": prompt, "choices": list(words), "gold": gold}


def _label_int(rec: dict) -> int:
    return int(rec["label"])


GLUE_SPECS: dict[str, dict] = {
    # label 1 = positive
    "sst2": _glue_binary(lambda r: f"Review :{r['sentence']}\nSentiment :",
                         ("positive", "negative"), lambda r: 0 if _label_int(r) == 1 else 1),
    # label 1 = paraphrase
    "mrpc": _glue_binary(lambda r: "Are the sentences paraphrases of each other.\n"
                                   f"Sentence 1: {r['sentence1']}\nSentence 2: {r['sentence2']}\nAnswer:",
                         ("Yes", "No"), lambda r: 0 if _label_int(r) == 1 else 1),
    # label 1 = acceptable
    "cola": _glue_binary(lambda r: "Is this sentence linguistically acceptable?\n"
                                   f"Sentence: {r['sentence']}\nAnswer: ",
                         ("Yes", "No"), lambda r: 0 if _label_int(r) == 1 else 1),
    # GLUE RTE: label 0 = entailment. (AlphaEdit's script treats label 1 as True: inverted.)
    "rte": _glue_binary(lambda r: f"{r['sentence1']}\nquestion: {r['sentence2']} True or False?\nanswer:",
                        ("True", "False"), lambda r: 0 if _label_int(r) == 0 else 1),
    "nli": _glue_binary(lambda r: f"{r['sentence1']} entails the {r['sentence2']} True or False? Answer:",
                        ("True", "False"), lambda r: 0 if r["label"] == "entailment" else 1),
    # labels are the strings "1" / "0"; 1 = positive
    "sentiment_analysis": _glue_binary(
        lambda r: "For each snippet of text,label the sentiment of the text as positive or "
                  "negative.The answer should be exact 'positive' or 'negative'. text: "
                  f"{r['sentence']} answer:",
        ("positive", "negative"), lambda r: 0 if _label_int(r) == 1 else 1),
    "mmlu": {
        "prompt": lambda r: f"Question: {r['question']}\n"
                            + "".join(f"({L}) {c}\n" for L, c in zip("ABCD", r["choices"])) + "Answer:",
        "choices": ["A", "B", "C", "D"], "gold": lambda r: int(r["answer"]),
    },
    "dialogue": {
        "prompt": lambda r: f"Q: Given the following: {r['article']}\nWhich choice is correct?\n"
                            + "".join(f"({L}){o}\n" for L, o in zip("ABCD", r["options"])) + "Answer:",
        "choices": ["A", "B", "C", "D"], "gold": lambda r: "ABCD".index(r["answers"]),
    },
}


def load_glue(name: str, data: str | None = None, first_n: int | None = None, **_: Any):
    """One of AlphaEdit's small general-ability sets (``name`` a key of GLUE_SPECS)."""
    spec = GLUE_SPECS[name]
    path = data_path(data or f"glue-{name.replace('_', '-')}")
    records = _read_json(path)
    if not isinstance(records, list):
        raise DataError(path, "expected a JSON list of records")
    docs = []
    for i, rec in enumerate(_take(records, first_n)):
        if not isinstance(rec, dict):
            raise DataError(path, "record is not a JSON object", record=i)
        try:
            prompt, gold = spec["prompt"](rec), spec["gold"](rec)
        except KeyError as exc:
            raise DataError(path, "missing field", record=i, field=str(exc.args[0])) from None
        except (ValueError, TypeError, IndexError) as exc:
            raise DataError(path, f"bad label: {exc}", record=i) from None
        if gold not in range(len(spec["choices"])):
            raise DataError(path, f"label maps to {gold}", record=i)
        docs.append({"prompt": prompt, "choices": list(spec["choices"]), "gold": gold})
    return _dataset(docs, path)


def _glue_loader(name: str) -> Callable[..., dict]:
    def load(**kwargs: Any):
        return load_glue(name, **kwargs)

    load.__name__ = f"load_glue_{name}"
    return load


load_glue_sst2 = _glue_loader("sst2")
load_glue_mrpc = _glue_loader("mrpc")
load_glue_cola = _glue_loader("cola")
load_glue_rte = _glue_loader("rte")
load_glue_nli = _glue_loader("nli")
load_glue_sentiment_analysis = _glue_loader("sentiment_analysis")
load_glue_mmlu = _glue_loader("mmlu")
load_glue_dialogue = _glue_loader("dialogue")


# --------------------------------------------------------------------------- sensitive signals
def wikitext_heldout_text(text: str) -> str:
    """The held-out part of wiki.test.raw: from the first article heading (a line
    `` = Title = ``) at or after the middle character to the end. Layer statistics use
    text before the middle character only (METHODS.md §7), so the two never overlap."""
    mid = len(text) // 2
    pos = mid
    while True:
        nl = text.find("\n", pos)
        if nl < 0:
            raise DataError("wiki.test.raw", "no article heading in the second half")
        line = text[nl + 1: text.find("\n", nl + 1)].strip()
        if line.startswith("= ") and line.endswith(" =") and not line.startswith("= ="):
            return text[nl + 1:]
        pos = nl + 1


def load_wikitext_heldout(data: str = "wikitext2-test", first_n: int | None = None,
                          min_words: int = 20, **_: Any):
    """Paragraphs (non-heading lines of at least ``min_words`` words) of the held-out half
    of WikiText-2 test, in order, one document each; scored with loglikelihood_rolling."""
    path = data_path(data)
    held = wikitext_heldout_text(path.read_text(encoding="utf-8"))
    docs = []
    for line in held.splitlines():
        para = line.strip()
        if not para or para.startswith("= ") or len(para.split()) < min_words:
            continue
        docs.append({"text": para})
    return _dataset(list(_take(docs, first_n)), path)


def load_known_facts(file: str | None = None, first_n: int | None = None, **_: Any):
    """Well-known facts: ``prompt`` -> true object vs false object (committed in tasks/)."""
    path = Path(file) if file else KNOWN_FACTS_FILE
    docs = []
    for i, rec in enumerate(_read_jsonl(path, first_n)):
        prompt = _field(path, rec, i, "prompt")
        true, false = _field(path, rec, i, "true"), _field(path, rec, i, "false")
        docs.append({"prompt": prompt, "choices": [true, false], "gold": 0,
                     "topic": rec.get("topic", "")})
    return _dataset(docs, path)


# --------------------------------------------------------------------------- doc_to_* helpers
def doc_prompt(doc: dict) -> str:
    return doc["prompt"]


def doc_choices(doc: dict) -> list[str]:
    return list(doc["choices"])


def doc_gold(doc: dict) -> int:
    return int(doc["gold"])


def doc_text(doc: dict) -> str:
    return doc["text"]


def doc_empty(doc: dict) -> str:
    return ""


# --------------------------------------------------------------------------- process_results
def results_prune_reasoning(doc: dict, results: list[str]) -> dict:
    return {"acc": int(tm.substring_match(doc["gold"], results[0]))}


def results_prune_summarization(doc: dict, results: list[str]) -> dict:
    prediction = results[0].split("DR:")[-1]
    scores = tm.rouge_f(prediction, doc["reference"])
    return {**scores, "rouge_mean": (scores["rouge1"] + scores["rouge2"] + scores["rougeL"]) / 3}


def results_prune_qa(doc: dict, results: list[str]) -> dict:
    prediction = results[0].split("Answer:")[-1].replace("\n", " ")
    return {"em": int(tm.any_span_exact_match(prediction, doc["answers"]))}


def results_prune_nli(doc: dict, results: list[str]) -> dict:
    said = tm.says_true_false(results[0].split("answer:")[-1])
    truth = 1 if doc["label"] == "entailment" else 0
    answered = said is not None
    correct = int(answered and said == truth)
    return {"acc": (correct, int(answered)), "acc_total": correct, "answered": int(answered)}


def results_gsm8k(doc: dict, results: list[str]) -> dict:
    return {"exact_match": int(tm.last_number(results[0]) == doc["gold"])}


def results_nq_closedbook(doc: dict, results: list[str]) -> dict:
    pred = tm.normalize_answer(results[0])
    return {"exact_match": int(any(pred == tm.normalize_answer(a) for a in doc["answers"]))}


def _argmax(lls: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(lls):
        if v > lls[best]:
            best = i
    return best


def results_glue(doc: dict, results: list[tuple[float, bool]]) -> dict:
    lls = [r[0] for r in results]
    pred, gold = _argmax(lls), int(doc["gold"])
    return {"acc": int(pred == gold), "f1": (gold, pred), "mcc": (gold, pred)}


def results_known_facts(doc: dict, results: list[tuple[float, bool]]) -> dict:
    ll_true, ll_false = results[0][0], results[1][0]
    return {"acc": int(ll_true > ll_false), "margin": ll_true - ll_false}


# --------------------------------------------------------------------------- aggregations
def agg_ratio(items: list[tuple[int, int]]) -> float:
    """sum(numerators) / sum(denominators); NaN when the denominator is 0."""
    num = sum(a for a, _ in items)
    den = sum(b for _, b in items)
    return num / den if den else math.nan


def agg_f1_weighted(items: list[tuple[int, int]]) -> float:
    """Support-weighted F1 over classes (sklearn ``average='weighted'``, AlphaEdit's f1)."""
    from sklearn.metrics import f1_score

    gold, pred = zip(*items)
    return float(f1_score(gold, pred, average="weighted", zero_division=0))


def agg_mcc(items: list[tuple[int, int]]) -> float:
    from sklearn.metrics import matthews_corrcoef

    gold, pred = zip(*items)
    return float(matthews_corrcoef(gold, pred))


def doc_target(doc: dict) -> str:
    """A readable target for the logged samples (the metrics use the document fields)."""
    if "gold" in doc:
        return str(doc["gold"])
    if "reference" in doc:
        return doc["reference"]
    if "answers" in doc:
        return " | ".join(doc["answers"])
    return str(doc.get("label", ""))
