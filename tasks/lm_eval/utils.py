"""lm-eval ``!function`` targets for the suite's task YAMLs.

lm-eval resolves ``!function utils.<name>`` relative to the YAML's folder, so this file
names the implementations, which live in importable, tested modules:
:func:`benchmark.evaluation.task_data.load_task` (documents; prompts in
:mod:`benchmark.evaluation.prompts`, task constants in
:mod:`benchmark.evaluation.task_catalog`) and :mod:`benchmark.evaluation.task_metrics`
(per-item scoring and aggregations).
"""

from benchmark.evaluation.task_data import load_task  # noqa: F401
from benchmark.evaluation.task_metrics import (  # noqa: F401
    agg_f1_weighted,
    agg_mcc,
    agg_ratio,
    results_glue,
    results_gsm8k,
    results_known_facts,
    results_nq_closedbook,
    results_prune_nli,
    results_prune_qa,
    results_prune_reasoning,
    results_prune_summarization,
)
