"""Per-phase profile of one smoke-grid checkpoint evaluation on SmolLM2-135M, one thread
(docs/performance.md, checkpoint evaluation has the table this prints).

Phases: each CounterFact metric kind (efficacy with its magnitude, generalization,
locality; the default path scores them in one pass, reported as "editing, one pass") and
each headline task at its smoke limit. Per phase and path: CPU seconds (median of
``--rounds``), the FLOPs the forward passes did (counted by a hook: every fed token through
the body, every kept logit row through the head, attention as fed) and the floor: the
FLOPs teacher forcing cannot avoid (each distinct model input that is no prefix of another
one, unpadded, the last token not fed; the head only on scored positions; causal
attention), in seconds at the measured single-thread matrix-product rate.

    python tests/benchmarks/profile_eval.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SMOKE_METRICS = ("efficacy", "efficacy_magnitude", "generalization", "locality")


class FlopCounter:
    """Forward FLOPs of a LLaMA-like or GPT-2-like causal LM, counted from what it is fed."""

    def __init__(self, model):
        cfg = model.config
        self.layers, self.d = cfg.num_hidden_layers, cfg.hidden_size
        emb = model.get_input_embeddings().weight.numel()
        body = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2) - emb
        if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            body -= model.get_output_embeddings().weight.numel()
        self.per_token = 2 * body  # every 2-D weight but the embeddings: one multiply-add per entry
        self.per_row = 2 * model.get_output_embeddings().weight.numel()
        self.total = 0.0
        model.register_forward_hook(self._hook, with_kwargs=True)

    def attention(self, q: int, k: int) -> float:
        """QKᵀ and AV over ``q`` queries against ``k`` keys in every layer."""
        return 4.0 * self.layers * self.d * q * k

    def _hook(self, module, args, kwargs, out):
        ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else args[0]
        b, t = ids.shape
        past = kwargs.get("past_key_values")
        k = t + (past.get_seq_length() - t if past is not None and past.get_seq_length() else 0)
        self.total += b * t * self.per_token + out.logits.shape[0] * out.logits.shape[1] * self.per_row
        self.total += b * self.attention(t, k)

    def floor(self, inputs: list[tuple[int, ...]], scored: int) -> float:
        """Teacher forcing of ``inputs`` (distinct, prefix-shared) with ``scored`` head rows."""
        from benchmark.core.scoring import _rows

        rows, _ = _rows(inputs)
        return (sum(len(r) for r in rows) * self.per_token + scored * self.per_row
                + sum(self.attention(len(r), (len(r) + 1) / 2) for r in rows))


def gflops_rate() -> float:
    a, b = torch.randn(512, 576), torch.randn(576, 1536)
    for _ in range(5):
        a @ b
    t = time.process_time()
    for _ in range(100):
        a @ b
    return 2 * 512 * 576 * 1536 * 100 / (time.process_time() - t)


def editing_floor(lm, counter, requests, kind: str) -> float:
    from benchmark.core.scoring import encode_pair
    from benchmark.evaluation.editing import _counterfact_pairs

    prompts, win, lose, _ = _counterfact_pairs(requests, kind)
    pairs = list(dict.fromkeys(list(zip(prompts, win)) + list(zip(prompts, lose))))
    enc = [encode_pair(lm.tokenizer, p, t) for p, t in pairs]
    return counter.floor([tuple((c + t)[:-1]) for c, t in enc], sum(len(t) for _, t in enc))


def task_floor(lm, counter, task: str, limit: int) -> float:
    from benchmark.evaluation.general import load_task, make_lm

    hf = make_lm(lm, batch_size=16)
    docs = list(load_task(task).eval_docs)[:limit]
    if task == "prune_reasoning":  # prompt once, then 4 more tokens; the head on 5 positions
        lens = [len(hf.tok_encode(d["prompt"])) for d in docs]
        return sum(n * counter.per_token + counter.attention(n, (n + 1) / 2)
                   + 4 * counter.per_token + counter.attention(4, n + 2) + 5 * counter.per_row for n in lens)
    if task == "known_facts":
        inputs, scored = [], 0
        for d in docs:
            ctx = hf.tok_encode(d["prompt"])
            for choice in d["choices"]:
                cont = hf.tok_encode(" " + choice)
                inputs.append(tuple((ctx + cont)[:-1]))
                scored += len(cont)
        return counter.floor(inputs, scored)
    toks = [hf.tok_encode(d["text"]) for d in docs]  # wikitext: every token scored
    return counter.floor([tuple([hf.prefix_token_id] + t[:-1]) for t in toks], sum(map(len, toks)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from benchmark import models
    from benchmark.data import load_requests
    from benchmark.evaluation import editing
    from benchmark.evaluation.general import evaluate_tasks, load_task
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, SMOKE_LIMITS

    lm = models.load("smollm2-135m")
    lm.model.eval()
    requests = load_requests("counterfact", "edit", limit=50)
    counter = FlopCounter(lm.model)
    for task in HEADLINE_TASKS:
        load_task(task)
    phases = {}
    for kind in ("efficacy", "generalization", "locality"):
        phases[kind] = (lambda ref, k=kind: editing._counterfact(lm, requests, k, 16, reference=ref),
                        editing_floor(lm, counter, requests, kind))
    phases["editing, one pass"] = (
        lambda ref: editing.evaluate_editing(lm, requests, SMOKE_METRICS, batch_size=16, reference=ref),
        None)
    for task in HEADLINE_TASKS:
        lim = SMOKE_LIMITS[task]
        phases[task] = (lambda ref, t=task, n=lim: evaluate_tasks(lm, [t], limit={t: n}, batch_size=16,
                                                                    reference=ref),
                        task_floor(lm, counter, task, lim))
    rate = gflops_rate()
    evaluate_tasks(lm, ["known_facts"], limit={"known_facts": 2}, batch_size=16)  # warm-up
    print(f"single-thread matrix product: {rate / 1e9:.0f} GFLOP/s")
    print("| phase | reference s | reference GFLOP | default s | default GFLOP | floor GFLOP | floor s |")
    print("|---|---|---|---|---|---|---|")
    for name, (run, floor) in phases.items():
        cells = []
        for ref in (True, False):
            if name == "editing, one pass" and ref:
                cells += ["", ""]
                continue
            secs = []
            for _ in range(args.rounds):
                counter.total = 0.0
                t = time.process_time()
                run(ref)
                secs.append(time.process_time() - t)
            cells += [f"{statistics.median(secs):.2f}", f"{counter.total / 1e9:.0f}"]
        fl = "" if floor is None else f"{floor / 1e9:.0f}"
        fs = "" if floor is None else f"{floor / rate:.2f}"
        print(f"| {name} | " + " | ".join(cells) + f" | {fl} | {fs} |")


if __name__ == "__main__":
    main()
