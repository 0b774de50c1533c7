"""Every general-ability task and its constants, in one place.

A task's YAML (``tasks/lm_eval/<name>.yaml``) says how lm-eval runs it; this catalog says
what the suite knows about it: the data sets it reads (names of :mod:`benchmark.data`), how
many leading records it evaluates by default, its primary metric, how "above chance" is
decided, and the few per-task rules the rest of the suite applies (which per-item score
the chance test counts, where the gold label lives, metrics averaged over a subset of
items). The smoke grid's headline tasks and their limits are declared here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.core import settings
from benchmark.core.registry import Registry

TASKS_YAML_DIR = settings.TASKS_DIR / "lm_eval"
#: The committed list of well-known facts (prompt, true object, false object).
KNOWN_FACTS_FILE = TASKS_YAML_DIR / "known_facts.jsonl"

Family = Literal["prune", "standard", "alphaedit", "signal"]
#: How "above chance" is decided for a task (see results/baselines/README.md):
#: choice -- binomial test of accuracy vs max(1/k, majority share); binary -- binomial test
#: of a 0/1 generative score vs a floor rate; score -- t-test of a mean score vs a floor;
#: perplexity -- no chance level (always informative).
Kind = Literal["choice", "binary", "score", "perplexity"]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    family: Family
    kind: Kind
    primary_metric: str
    description: str
    data: tuple[str, ...] = ()  # data-set names (benchmark.data) the task reads
    n_choices: int | None = None  # for kind "choice"
    default_n: int | None = None  # leading records the task evaluates (None: the whole file)
    #: chance = max(1/k, majority-label share): False where the gold index is not a label
    #: a model could always answer (known_facts: the true object is always choice 0)
    majority_baseline: bool = True
    #: repository files the task reads (besides the data sets)
    files: tuple[Path, ...] = ()
    #: kind "choice": the per-item 0/1 score the chance test counts, and the document field
    #: holding the gold label (for the majority share)
    correct_metric: str = "acc"
    gold_field: str = "gold"
    #: metrics averaged over a subset of the items: metric -> the per-item 0/1 field marking
    #: the items it counts (its n is the sum of that field)
    subset_metrics: tuple[tuple[str, str], ...] = ()

    #: folder of the task's lm-eval YAML (None: tasks/lm_eval); a plugin task names its own
    yaml_dir: Path | None = None

    @property
    def yaml_path(self) -> Path:
        return (self.yaml_dir or TASKS_YAML_DIR) / f"{self.name}.yaml"

    def metric_n(self, metric: str, samples: list[dict]) -> int:
        """The number of items ``metric`` averages over in lm-eval's logged ``samples``."""
        field = dict(self.subset_metrics).get(metric)
        if field is None:
            return len(samples)
        return sum(int(s[field]) for s in samples)


#: Installed packages add tasks under the entry point group ``seqedit.tasks`` (a TaskInfo
#: each; docs/extending.md).
TASKS: Registry[TaskInfo] = Registry("general-ability task", entry_points="seqedit.tasks")


def _task(*args: Any, **kwargs: Any) -> None:
    info = TaskInfo(*args, **kwargs)
    TASKS.register(info.name, info)


# PRUNE's four downstream tasks, reproduced (docs/methods.md, general abilities). The
# default sizes are how many items upstream's script reads (tasks/lm_eval/README.md).
_task("prune_reasoning", "prune", "binary", "acc",
      "GSM8K with the gold rationale in the prompt; gold number substring of 5 new tokens",
      ("prune-reasoning",), default_n=358)
_task("prune_summarization", "prune", "score", "rouge_mean",
      "SAMSum 'TL;DR:' 25 new tokens; mean of ROUGE-1/2/L F1", ("prune-summarization",),
      default_n=149)
_task("prune_qa", "prune", "binary", "em",
      "NQ question with passage, 20 new tokens; any-span exact match", ("prune-qa",),
      default_n=261)
_task("prune_nli", "prune", "choice", "acc_total",
      "RTE 'entails the ... True or False? answer:' 1 token; acc over answered, acc_total",
      ("prune-nli",), n_choices=2, default_n=299, correct_metric="acc_total",
      gold_field="label", subset_metrics=(("acc", "answered"),))
# standard variants
_task("gsm8k_zeroshot", "standard", "binary", "exact_match",
      "GSM8K without rationale, zero-shot, last-number exact match", ("gsm8k-test",))
_task("nq_closedbook", "standard", "binary", "exact_match",
      "closed-book NQ-open, normalised exact match", ("nq-open-dev",))
_task("mmlu", "standard", "choice", "acc", "MMLU test, zero-shot, A-D by log-likelihood",
      ("mmlu",), n_choices=4)
_task("boolq", "standard", "choice", "acc", "BoolQ dev, no/yes by log-likelihood",
      ("boolq-dev",), n_choices=2)
_task("piqa", "standard", "choice", "acc", "PIQA validation, two solutions by log-likelihood",
      ("piqa-valid", "piqa-valid-labels"), n_choices=2)
# AlphaEdit / NSE small sets
for _name, _k in (("sst2", 2), ("mrpc", 2), ("cola", 2), ("rte", 2), ("nli", 2),
                  ("sentiment_analysis", 2), ("mmlu", 4), ("dialogue", 4)):
    _task(f"glue_{_name}", "alphaedit", "choice", "f1",
          f"AlphaEdit glue_eval '{_name}', label words by log-likelihood; weighted F1",
          (f"glue-{_name.replace('_', '-')}",), n_choices=_k)
# sensitive signals for small models
_task("wikitext_heldout", "signal", "perplexity", "word_perplexity",
      "word perplexity on paragraphs of the second half of WikiText-2 test", ("wikitext2-test",))
_task("known_facts", "signal", "choice", "acc",
      "80 well-known facts: true object out-scores a false one (and the mean margin)", (),
      n_choices=2, majority_baseline=False, files=(KNOWN_FACTS_FILE,))

#: Tasks the small-model smoke grid headlines: unedited smollm2-135m and gemma3-270m are
#: above chance on them (results/baselines/README.md says how that was decided).
HEADLINE_TASKS: tuple[str, ...] = ("prune_reasoning", "known_facts", "wikitext_heldout")
#: Per-task document limits for the smoke grid (first N documents). Sized so that one
#: evaluation of all headline tasks on SmolLM2 stays within about a minute on 2 CPU cores
#: (tests/benchmarks/test_bench_eval.py).
SMOKE_LIMITS: dict[str, int] = {"prune_reasoning": 12, "known_facts": 80, "wikitext_heldout": 30}


def task_names(family: Family | None = None) -> list[str]:
    return [n for n in TASKS.names() if family is None or TASKS.get(n).family == family]
