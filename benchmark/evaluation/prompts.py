"""Every prompt of the suite's lm-eval tasks, as the exact model input (zero-shot).

Each function takes the fields of one validated record and returns the prompt string the
loaders of :mod:`benchmark.evaluation.task_data` store as the document's ``prompt`` (the
task YAMLs read it with ``doc_to_text: prompt``). The prompt lives in the document, not
in a YAML template, because lm-eval hashes every document into the recorded task hash.
"""

from __future__ import annotations

from collections.abc import Sequence

# --------------------------------------------------------------------------- PRUNE's four tasks


def prune_reasoning(question: str, rationale: str) -> str:
    return (f"Q: {question} A:Let's think step by step. {rationale} "
            "Therefore, the answer (arabic numerals) is:")


def prune_summarization(dialogue: str) -> str:
    return f"{dialogue}\nTL;DR:"


def prune_qa(passage: str, question: str) -> str:
    return ("Refer to the passage below and answer the following question. "
            f"Passage: {passage} Question: {question}. Answer:")


def prune_nli(sentence1: str, sentence2: str) -> str:
    return f"{sentence1} entails the {sentence2}. True or False? answer:"


# --------------------------------------------------------------------------- standard variants
def gsm8k(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def nq_closedbook(question: str) -> str:
    return f"Q: {question}?\nA:"


def boolq(passage: str, question: str) -> str:
    return f"{passage}\nQuestion: {question}?\nAnswer:"


def piqa(goal: str) -> str:
    return f"Question: {goal}\nAnswer:"


def mmlu(topic: str, question: str, choices: Sequence[str]) -> str:
    letters = "".join(f"{L}. {c.strip()}\n" for L, c in zip("ABCD", choices))
    return (f"The following are multiple choice questions (with answers) about "
            f"{topic}.\n\n{question.strip()}\n{letters}Answer:")


# --------------------------------------------------------------------------- AlphaEdit GLUE sets
# AlphaEdit glue_eval prompts (zero-shot); each takes the raw record of its set.
def glue_sst2(r: dict) -> str:
    return f"Review :{r['sentence']}\nSentiment :"


def glue_mrpc(r: dict) -> str:
    return ("Are the sentences paraphrases of each other.\n"
            f"Sentence 1: {r['sentence1']}\nSentence 2: {r['sentence2']}\nAnswer:")


def glue_cola(r: dict) -> str:
    return f"Is this sentence linguistically acceptable?\nSentence: {r['sentence']}\nAnswer: "


def glue_rte(r: dict) -> str:
    return f"{r['sentence1']}\nquestion: {r['sentence2']} True or False?\nanswer:"


def glue_nli(r: dict) -> str:
    return f"{r['sentence1']} entails the {r['sentence2']} True or False? Answer:"


def glue_sentiment_analysis(r: dict) -> str:
    return ("For each snippet of text,label the sentiment of the text as positive or "
            "negative.The answer should be exact 'positive' or 'negative'. text: "
            f"{r['sentence']} answer:")


def glue_mmlu(r: dict) -> str:
    return (f"Question: {r['question']}\n"
            + "".join(f"({L}) {c}\n" for L, c in zip("ABCD", r["choices"])) + "Answer:")


def glue_dialogue(r: dict) -> str:
    return (f"Q: Given the following: {r['article']}\nWhich choice is correct?\n"
            + "".join(f"({L}){o}\n" for L, o in zip("ABCD", r["options"])) + "Answer:")
