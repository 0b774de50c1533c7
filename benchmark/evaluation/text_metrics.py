"""Plain-Python answer-matching rules of the general-ability tasks (no downloads).

Each rule is stated as PRUNE's (RECT's) released evaluation script states it, with the
upstream quirks named where the suite deliberately departs from them:

- GSM8K "reasoning": the gold number (text after ``#### ``) is a substring of the output.
- Open-domain QA: SQuAD normalisation, then exact match of ANY contiguous span of the
  normalised output words against any gold answer. Upstream counts the same item more than
  once when several spans match and keeps a ``flag`` that is never reset between items, so
  after the first multi-word match later items only look at spans starting at word 0; the
  suite implements the intended rule (an item scores 1 if any span matches, else 0).
- Summarisation: mean of ROUGE-1/2/L F1 per item, an output of at most one character
  scores 0. Upstream used the ``rouge`` package; the suite uses Google's ``rouge-score``
  (no stemming, its default tokenizer), which is offline and maintained.
- NLI: the (1-token) output says "true" or "false" (case-insensitive substring); accuracy
  over items that answered, and over all items.
"""

from __future__ import annotations

import functools
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def any_span_exact_match(prediction: str, answers: list[str]) -> bool:
    """True when some contiguous span of the normalised prediction equals a normalised answer."""
    gold = {normalize_answer(a) for a in answers}
    words = normalize_answer(prediction).split(" ")
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if " ".join(words[i:j]) in gold:
                return True
    return False


def gsm8k_gold_number(answer_field: str) -> str:
    """The final answer of a GSM8K solution: the text after ``#### ``."""
    return answer_field.split("#### ")[1]


def gsm8k_rationale(answer_field: str) -> str:
    """The gold chain of thought of a GSM8K solution (everything before ``#### ``)."""
    return answer_field.split("#### ")[0]


def substring_match(gold: str, output: str) -> bool:
    return gold in output


_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed (None if there is none)."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "")
    return value[:-2] if value.endswith(".0") else value


def says_true_false(output: str) -> int | None:
    """1 if the output says true, 0 if false, None otherwise (PRUNE's substring rule)."""
    low = output.lower()
    if "true" in low:
        return 1
    if "false" in low:
        return 0
    return None


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


def rouge_f(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one prediction; a prediction of at most one character scores 0."""
    if len(prediction) <= 1:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    scores = _rouge_scorer().score(reference, prediction)
    return {k: float(v.fmeasure) for k, v in scores.items()}
