"""``seqedit edit``: one unrestrained sequential editing trajectory over the first N
requests of a data set; prints efficacy right after each edit and on the final model."""

from __future__ import annotations

import json

from benchmark.core.errors import SeqeditError


class EditArgumentError(SeqeditError):
    pass


def register(sub) -> None:
    p = sub.add_parser("edit", help="run one unrestrained sequential editing trajectory")
    p.add_argument("--model", required=True)
    p.add_argument("--editor", required=True)
    p.add_argument("--dataset", default="counterfact")
    p.add_argument("--split", default="edit")
    p.add_argument("--n", type=int, required=True, help="number of requests (the first N)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter, e.g. --set target.v_lr=0.1 (YAML value)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise EditArgumentError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args) -> int:
    import torch

    from benchmark import models
    from benchmark.data import load_requests
    from editors import create_editor
    from editors.hparams import hparams_hash
    from editors.trajectory import run_sequence

    if args.n < 1 or args.batch_size < 1:
        raise EditArgumentError("--n and --batch-size must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    requests = load_requests(args.dataset, args.split, limit=args.n, data_root=args.data_root)
    lm = models.load(args.model, device=args.device, cache_dir=args.cache_root)
    editor = create_editor(args.editor, lm, overrides=parse_overrides(args.overrides) or None,
                           data_root=args.data_root, cache_root=args.cache_root)
    res = run_sequence(lm, editor, requests, batch_size=args.batch_size, progress=not args.json)
    out = {
        "model": args.model, "editor": args.editor, "dataset": args.dataset, "split": args.split,
        "n": res.n, "batch_size": res.batch_size,
        "efficacy_each": res.efficacy_each, "efficacy_final": res.efficacy_final,
        "generalization_final": res.generalization_final,
        "seconds_per_edit": res.seconds_per_edit, "seconds_per_fact": res.seconds_per_fact,
        "seconds_prepare": res.seconds_prepare, "cpu_seconds_per_edit": res.cpu_seconds_per_edit,
        "hparams_sha256": hparams_hash(editor.hparams), "hparams": editor.hparams.model_dump(mode="json"),
        "model_identity": lm.identity, "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.editor} on {args.model}, {res.n} {args.dataset} facts, batch {res.batch_size}: "
              f"efficacy each {res.efficacy_each:.3f}, final {res.efficacy_final:.3f}, "
              f"{res.seconds_per_edit:.2f} s per edit")
    return 0
