"""Documents of the suite's lm-eval tasks (tasks/lm_eval/*.yaml), built from verified files.

How data reaches lm-eval: a task YAML cannot read the data root, so every task uses
``custom_dataset: !function utils.load_task`` with ``dataset_kwargs: {task: <name>}``.
lm-eval calls :func:`load_task` when it builds the task; the task's data sets and default
size come from :mod:`benchmark.evaluation.task_catalog`. Each file is resolved through
:func:`benchmark.data.resolve` (the data root from ``$SEQEDIT_DATA``, sha256-verified against
``tasks/datasets/<name>.yaml``), read and validated by :mod:`benchmark.data.records` (a bad
record raises :class:`~benchmark.core.errors.DataError` naming file, record and field), and
each prompt is built by :mod:`benchmark.evaluation.prompts`; the result is an in-memory
``datasets.Dataset`` (no hub, no datasets cache).

Every document carries ``prompt`` (the exact model input) and either ``choices``/``gold``
(multiple choice) or the fields its ``process_results`` needs. The documents are hashed
into the recorded task hash, so their fields and field order are part of the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmark.core.errors import DataError
from benchmark.data import resolve
from benchmark.data.records import (
    Record,
    read_csv_records,
    read_json_records,
    read_jsonl_records,
    take,
)
from benchmark.evaluation import prompts
from benchmark.evaluation import text_metrics as tm
from benchmark.evaluation.task_catalog import TASKS, TaskInfo

Docs = list[dict[str, Any]]
_BUILDERS: dict[str, Callable[[TaskInfo, int | None], tuple[Docs, object]]] = {}


def data_path(name: str) -> Path:
    """Verified path of data set ``name`` under the data root (see benchmark.data)."""
    return resolve(name)


def load_task(task: str, first_n: int | None = None, **_: Any) -> dict[str, Any]:
    """lm-eval's ``custom_dataset``: ``{"test": Dataset}`` of the first ``first_n`` documents
    of ``task`` (default: the catalog's ``default_n``; None there: every record)."""
    import datasets

    info = TASKS.get(task)
    docs, source = _BUILDERS[task](info, info.default_n if first_n is None else first_n)
    if not docs:
        raise DataError(source, "no records to evaluate")
    return {"test": datasets.Dataset.from_list(docs)}


def _builds(*tasks: str):
    def register(fn: Callable[[TaskInfo, int | None], tuple[Docs, object]]):
        for t in tasks:
            _BUILDERS[t] = fn
        return fn

    return register


def _gsm8k_answer(rec: Record) -> str:
    answer = rec.text("answer")
    if "#### " not in answer:
        rec.fail("answer has no '#### ' final-answer marker", "answer")
    return answer


# --------------------------------------------------------------------------- PRUNE's four tasks

def _jsonl(path: Path, first_n: int | None) -> Iterator[Record]:
    """The first ``first_n`` records of a JSON Lines file, each naming file and index."""
    for i, raw in enumerate(read_jsonl_records(path, first_n)):
        yield Record(path, i, raw)

@_builds("prune_reasoning")
def _prune_reasoning(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """GSM8K with the gold rationale in the prompt (PRUNE/RECT ``Reasoning``)."""
    path = data_path(info.data[0])
    docs = []
    for rec in _jsonl(path, first_n):
        question, answer = rec.text("question"), _gsm8k_answer(rec)
        docs.append({"prompt": prompts.prune_reasoning(question, tm.gsm8k_rationale(answer)),
                     "gold": tm.gsm8k_gold_number(answer)})
    return docs, path


@_builds("prune_summarization")
def _prune_summarization(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """SAMSum dialogue + ``TL;DR:`` (PRUNE/RECT ``Summarization``)."""
    path = data_path(info.data[0])
    docs = []
    for i, raw in enumerate(take(read_json_records(path), first_n)):
        rec = Record(path, i, raw)
        dialogue, summary = rec.text("dialogue"), rec.text("summary")
        docs.append({"prompt": prompts.prune_summarization(dialogue), "reference": summary})
    return docs, path


@_builds("prune_qa")
def _prune_qa(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """NQ-open question with a supporting passage (PRUNE/RECT ``OpenDomainQA``)."""
    path = data_path(info.data[0])
    docs = []
    for rec in _jsonl(path, first_n):
        question = rec.text("question")
        passages, answers = rec.values("output", min_len=1), rec.values("answer", min_len=1)
        if not isinstance(passages[0], str):
            rec.fail("passage is not a string", "output")
        docs.append({"prompt": prompts.prune_qa(passages[0], question),
                     "answers": [str(a) for a in answers]})
    return docs, path


@_builds("prune_nli")
def _prune_nli(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """RTE pairs (PRUNE/RECT ``NLI``), read with Python's csv reader (tab-delimited, default
    quoting) as upstream does: it strips the quotes around fields that begin with one.
    Upstream reads the first 300 csv rows (header included) and evaluates rows 1..299."""
    path = data_path(info.data[0])
    docs = []
    rows = read_csv_records(path, columns=("index", "sentence1", "sentence2", "label"),
                            delimiter="\t", first_n=first_n)
    for i, row in enumerate(rows):
        label = row["label"]
        if label not in ("entailment", "not_entailment"):
            raise DataError(path, f"unknown label {label!r}", record=i, field="label")
        docs.append({"prompt": prompts.prune_nli(row["sentence1"], row["sentence2"]), "label": label})
    return docs, path


# --------------------------------------------------------------------------- standard variants
@_builds("gsm8k_zeroshot")
def _gsm8k(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """GSM8K without the rationale (lm-eval's zero-shot format); gold: the final number."""
    path = data_path(info.data[0])
    docs = []
    for rec in _jsonl(path, first_n):
        question, answer = rec.text("question"), _gsm8k_answer(rec)
        gold = tm.last_number(tm.gsm8k_gold_number(answer))
        docs.append({"prompt": prompts.gsm8k(question), "gold": gold or ""})
    return docs, path


@_builds("nq_closedbook")
def _nq_closedbook(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """NQ-open without a passage."""
    path = data_path(info.data[0])
    docs = []
    for rec in _jsonl(path, first_n):
        question, answers = rec.text("question"), rec.values("answer", min_len=1)
        docs.append({"prompt": prompts.nq_closedbook(question), "answers": [str(a) for a in answers]})
    return docs, path


@_builds("boolq")
def _boolq(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """BoolQ (lm-eval's prompt) -> no / yes."""
    path = data_path(info.data[0])
    docs = []
    for rec in _jsonl(path, first_n):
        passage, question, answer = rec.text("passage"), rec.text("question"), rec.boolean("answer")
        docs.append({"prompt": prompts.boolq(passage, question),
                     "choices": ["no", "yes"], "gold": int(answer)})
    return docs, path


@_builds("piqa")
def _piqa(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """PIQA (lm-eval's prompt) -> sol1 / sol2; labels from a separate file, one a line."""
    path, label_path = data_path(info.data[0]), data_path(info.data[1])
    records = read_jsonl_records(path, first_n)
    labels = label_path.read_text(encoding="utf-8").split()
    if len(labels) < len(records):
        raise DataError(label_path, f"{len(labels)} labels for {len(records)} records")
    docs = []
    for i, raw in enumerate(records):
        rec = Record(path, i, raw)
        goal = rec.text("goal")
        sol1, sol2 = rec.text("sol1", nonempty=False), rec.text("sol2", nonempty=False)
        if labels[i] not in ("0", "1"):
            raise DataError(label_path, f"label must be 0 or 1, got {labels[i]!r}", record=i)
        docs.append({"prompt": prompts.piqa(goal), "choices": [sol1, sol2], "gold": int(labels[i])})
    return docs, path


@_builds("mmlu")
def _mmlu(info: TaskInfo, first_n: int | None, split: str = "test") -> tuple[Docs, object]:
    """MMLU, zero-shot, lm-eval's prompt. Subjects are interleaved round-robin (subject order
    alphabetical, rows in file order), so the first N items cover many subjects."""
    root = data_path(info.data[0])
    files = sorted((root / split).glob(f"*_{split}.csv"))
    if not files:
        raise DataError(root / split, f"no *_{split}.csv files")
    per_subject: list[Docs] = []
    for f in files:
        subject = f.name[: -len(f"_{split}.csv")]
        rows = []
        for i, row in enumerate(read_csv_records(f)):
            rec = Record(f, i, row)
            choices = [rec.text(f"choice{k}", nonempty=False) for k in range(4)]
            question = rec.text("question", nonempty=False)
            try:
                answer = int(rec.text("answer"))
            except ValueError:
                rec.fail("answer is not an integer", "answer")
            if answer not in range(4):
                rec.fail(f"answer {answer} not in 0..3", "answer")
            rows.append({"prompt": prompts.mmlu(subject.replace("_", " "), question, choices),
                         "choices": ["A", "B", "C", "D"], "gold": answer, "subject": subject})
        per_subject.append(rows)
    docs = [r for group in _round_robin(per_subject) for r in group]
    return list(take(docs, first_n)), root


def _round_robin(groups: list[Docs]) -> Iterable[Docs]:
    longest = max(len(g) for g in groups)
    for k in range(longest):
        yield [g[k] for g in groups if k < len(g)]


# --------------------------------------------------------------------------- AlphaEdit GLUE sets
def _label_int(rec: dict) -> int:
    return int(rec["label"])


def _yes_if_label_1(r: dict) -> int:
    return 0 if _label_int(r) == 1 else 1


#: AlphaEdit glue_eval sets: prompt, label words, and how a record's label maps to the index
#: of the correct label word. Scored by comparing the log-likelihood of ``prompt + " " + word``
#: over the label words (AlphaEdit's "f1_new" path).
GLUE_SPECS: dict[str, tuple[Callable[[dict], str], tuple[str, ...], Callable[[dict], int]]] = {
    # label 1 = positive
    "glue_sst2": (prompts.glue_sst2, ("positive", "negative"), _yes_if_label_1),
    # label 1 = paraphrase
    "glue_mrpc": (prompts.glue_mrpc, ("Yes", "No"), _yes_if_label_1),
    # label 1 = acceptable
    "glue_cola": (prompts.glue_cola, ("Yes", "No"), _yes_if_label_1),
    # GLUE RTE: label 0 = entailment. (AlphaEdit's script treats label 1 as True: inverted.)
    "glue_rte": (prompts.glue_rte, ("True", "False"), lambda r: 0 if _label_int(r) == 0 else 1),
    "glue_nli": (prompts.glue_nli, ("True", "False"),
                 lambda r: 0 if r["label"] == "entailment" else 1),
    # labels are the strings "1" / "0"; 1 = positive
    "glue_sentiment_analysis": (prompts.glue_sentiment_analysis, ("positive", "negative"),
                                _yes_if_label_1),
    "glue_mmlu": (prompts.glue_mmlu, ("A", "B", "C", "D"), lambda r: int(r["answer"])),
    "glue_dialogue": (prompts.glue_dialogue, ("A", "B", "C", "D"),
                      lambda r: "ABCD".index(r["answers"])),
}


@_builds(*GLUE_SPECS)
def _glue(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """One of AlphaEdit's small general-ability sets."""
    prompt_of, words, gold_of = GLUE_SPECS[info.name]
    path = data_path(info.data[0])
    docs = []
    for i, raw in enumerate(take(read_json_records(path), first_n)):
        rec = Record(path, i, raw)
        try:
            prompt, gold = prompt_of(rec.raw), gold_of(rec.raw)
        except KeyError as exc:
            rec.fail("missing field", str(exc.args[0]))
        except (ValueError, TypeError, IndexError) as exc:
            raise DataError(path, f"bad label: {exc}", record=i) from None
        if gold not in range(len(words)):
            raise DataError(path, f"label maps to {gold}", record=i)
        docs.append({"prompt": prompt, "choices": list(words), "gold": gold})
    return docs, path


# --------------------------------------------------------------------------- sensitive signals
def wikitext_heldout_text(text: str) -> str:
    """The held-out part of wiki.test.raw: from the first article heading (a line
    `` = Title = ``) at or after the middle character to the end. Layer statistics use
    text before the middle character only (docs/methods.md, editors: shared machinery),
    so the two never overlap."""
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


@_builds("wikitext_heldout")
def _wikitext_heldout(info: TaskInfo, first_n: int | None, min_words: int = 20) -> tuple[Docs, object]:
    """Paragraphs (non-heading lines of at least ``min_words`` words) of the held-out half
    of WikiText-2 test, in order, one document each; scored with loglikelihood_rolling."""
    path = data_path(info.data[0])
    held = wikitext_heldout_text(path.read_text(encoding="utf-8"))
    docs = []
    for line in held.splitlines():
        para = line.strip()
        if not para or para.startswith("= ") or len(para.split()) < min_words:
            continue
        docs.append({"text": para})
    return list(take(docs, first_n)), path


@_builds("known_facts")
def _known_facts(info: TaskInfo, first_n: int | None) -> tuple[Docs, object]:
    """Well-known facts: ``prompt`` -> true object vs false object (committed in tasks/)."""
    path = info.files[0]
    docs = []
    for rec in _jsonl(path, first_n):
        prompt, true, false = rec.text("prompt"), rec.text("true"), rec.text("false")
        docs.append({"prompt": prompt, "choices": [true, false], "gold": 0,
                     "topic": rec.raw.get("topic", "")})
    return docs, path
