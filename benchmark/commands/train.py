"""``seqedit train --editor mend --model M``: train the editor network an editing method
needs (MEND), or find it in the cache. The network is stored under a key of every input
(model identity, edited matrices, settings, data files' sha256, seed) and reused by every
grid cell; an interrupted run resumes from its last checkpoint when started again."""

from __future__ import annotations

import json

from benchmark.commands.options import add_run_options, positive_int

#: methods with a trained component
TRAINABLE = ("mend",)


def register(sub) -> None:
    p = sub.add_parser("train", help="train (or find) an editor network, e.g. MEND's, for a model")
    p.add_argument("--editor", required=True, choices=TRAINABLE, help="editing method with a trained network")
    p.add_argument("--model", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter of editors/hparams/<editor>/<model>.yaml, e.g. train.max_steps=200")
    p.add_argument("--check", type=positive_int, default=None, metavar="N",
                   help="then edit N CounterFact edit-split facts unseen in training one at a time and "
                        "report efficacy, generalization and locality against the unedited model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from benchmark import models
    from benchmark.commands.edit import parse_overrides
    from benchmark.training import train_mend
    from editors.hparams import check_model_layers, load_hparams

    if args.threads:
        torch.set_num_threads(args.threads)
    hp = load_hparams(args.editor, args.model, parse_overrides(args.overrides) or None)
    check_model_layers(args.editor, models.get_entry(args.model), hp.layers)
    lm = models.load(args.model, device=args.device, cache_dir=args.cache_root)
    meta = train_mend(lm, hp, data_root=args.data_root, cache_root=args.cache_root,
                      progress=not args.no_progress)
    summary = meta["summary"]
    result = {"model": args.model, "editor": args.editor, "key_sha256": meta["key_sha256"],
              "folder": meta["folder"], "steps": summary["steps"], "best_step": summary["best_step"],
              "best_val_loss": summary["best_val_loss"], "train_seconds": summary["train_seconds"],
              "validation": summary["validation"]}
    if args.check:
        from benchmark.training.check import single_edit_check, unseen_requests
        from editors import create_editor

        editor = create_editor(args.editor, lm, hp, data_root=args.data_root, cache_root=args.cache_root,
                               progress=not args.no_progress)
        result["check"] = single_edit_check(lm, editor, unseen_requests(hp, args.check, args.data_root))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} {args.editor}: network {meta['key_sha256'][:16]} in {meta['folder']} "
              f"({summary['steps']} edits, best validation loss {summary['best_val_loss']:.4f} at edit "
              f"{summary['best_step']} on {summary['validation']['dataset']}:{summary['validation']['split']}, "
              f"{summary['train_seconds']:.0f} s)")
        if args.check:
            c = result["check"]
            for k in c["edited"]:
                print(f"  {k}: {c['edited'][k]:.1f} after single edits, {c['unedited'][k]:.1f} unedited "
                      f"({c['n']} unseen counterfact:edit facts)")
    return 0
