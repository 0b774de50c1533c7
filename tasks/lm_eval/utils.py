"""lm-eval ``!function`` targets for the suite's task YAMLs.

The implementations live in :mod:`benchmark.evaluation.lm_tasks` (importable, tested);
this file only re-exports them because lm-eval resolves ``!function utils.<name>``
relative to the YAML's folder.
"""

from benchmark.evaluation.lm_tasks import (  # noqa: F401
    agg_f1_weighted,
    agg_mcc,
    agg_ratio,
    doc_choices,
    doc_empty,
    doc_gold,
    doc_prompt,
    doc_target,
    doc_text,
    load_boolq,
    load_glue_cola,
    load_glue_dialogue,
    load_glue_mmlu,
    load_glue_mrpc,
    load_glue_nli,
    load_glue_rte,
    load_glue_sentiment_analysis,
    load_glue_sst2,
    load_gsm8k,
    load_known_facts,
    load_mmlu,
    load_nq_closedbook,
    load_piqa,
    load_prune_nli,
    load_prune_qa,
    load_prune_reasoning,
    load_prune_summarization,
    load_wikitext_heldout,
    results_glue,
    results_gsm8k,
    results_known_facts,
    results_nq_closedbook,
    results_prune_nli,
    results_prune_qa,
    results_prune_reasoning,
    results_prune_summarization,
)
