"""``seqedit hparams init`` (a starting hparams file for a model without one) and
``seqedit hparams list`` (the editors, built in or from plugins, and their files)."""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.commands.options import add_command, add_run_options, int_list, positive_int
from benchmark.core.errors import SeqeditError

INIT_DESCRIPTION = """\
Write a starting hyperparameters file for an editor on a model that has none: a registry
model, a hub model (hf:ORG/NAME@COMMIT) or a local folder (path:DIR). The edited layer comes
from a short ROME sweep (each of the first --sweep-n CounterFact facts edited alone at each
candidate layer, 10-35% of the depth), or with --no-sweep from the layer at 20% of the depth;
batch editors take five layers around it. λ is scaled to the model's width (15000 · d/4096).
Every other value is that of the editor's SmolLM2 file. The file says where each value came
from.

The file is found by the editors when its folder is on SEQEDIT_HPARAMS (folders of
<editor>/<model>.yaml, separated by ':'); without --out it is written there."""

INIT_EXAMPLES = (
    "SEQEDIT_HPARAMS=~/hparams seqedit hparams init --model path:/models/my-llama --editor rome",
    "seqedit hparams init --model hf:Qwen/Qwen2.5-0.5B@<commit> --editor memit --no-sweep --out memit.yaml",
    "seqedit hparams init --model tiny-llama --editor rome --sweep-n 2 --candidates 1,2 --out rome.yaml",
)


def register(sub) -> None:
    p = add_command(sub, "hparams", summary="write or list editor hyperparameters files",
                    description="Hyperparameters files of the editors: write a starting one for "
                                "a new model (init) or list the editors and their files (list).")
    hsub = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=_list)
    lst = add_command(hsub, "list", summary="list the editors (built in and plugins) and the models "
                      "they have hyperparameters for", description="List every editor, where it "
                      "comes from (built in, or the package that installs it) and the models it "
                      "has hyperparameters files for.")
    lst.set_defaults(func=_list)
    q = add_command(hsub, "init", summary="write a starting hyperparameters file for a model",
                    description=INIT_DESCRIPTION, examples=INIT_EXAMPLES)
    q.add_argument("--model", required=True,
                   help="a registry name, hf:ORG/NAME@COMMIT or path:DIR")
    q.add_argument("--editor", required=True, help="rome, memit, memit-seq, alphaedit or nse")
    q.add_argument("--out", type=Path, default=None,
                   help="file to write (default: <first SEQEDIT_HPARAMS folder>/<editor>/<model>.yaml)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q.add_argument("--no-sweep", action="store_true",
                   help="take the layer at 20%% of the depth instead of sweeping")
    q.add_argument("--sweep-n", type=positive_int, default=6,
                   help="CounterFact facts edited at each candidate layer")
    q.add_argument("--candidates", type=int_list, default=None,
                   help="comma-separated candidate layers (default: 10, 15, ..., 35%% of the depth)")
    q.add_argument("--stats-samples", type=positive_int, default=None,
                   help="statistics chunks of the written file and the sweep (default: 200, "
                        "as the SmolLM2 files)")
    add_run_options(q, device=None)
    q.set_defaults(func=_init)


def _list(args) -> int:
    import editors
    from editors.hparams import hparams_dirs

    print(f"{'editor':18} {'from':34} models with hyperparameters")
    for name in editors.EDITORS:
        origin = editors.EDITORS.plugin_origin(name)
        where = "built in" if origin is None else origin.rsplit("(", 1)[-1].rstrip(")")
        files = sorted({p.stem for d in hparams_dirs(name) for p in (d / name).glob("*.yaml")})
        print(f"{name:18} {where:34} {', '.join(files) or '-'}")
    return 0


def default_out(editor: str, model: str) -> Path:
    """``<first SEQEDIT_HPARAMS folder>/<editor>/<model slug>.yaml``."""
    from benchmark.core.modelref import model_slug
    from editors.hparams import HPARAMS_ENV

    dirs = [d for d in os.environ.get(HPARAMS_ENV, "").split(os.pathsep) if d]
    if not dirs:
        raise SeqeditError(f"give --out FILE, or set {HPARAMS_ENV} to the folder the editors "
                           "should read it from")
    return Path(dirs[0]).expanduser() / editor / f"{model_slug(model)}.yaml"


def _init(args) -> int:
    from benchmark import models
    from benchmark.commands.options import output_file
    from benchmark.core import settings
    from benchmark.studies import hparams_init as hi

    if args.editor not in hi.EDITORS:
        raise SeqeditError(f"hparams init writes files for {', '.join(hi.EDITORS)}; "
                           f"not {args.editor!r}")
    out = args.out if args.out is not None else default_out(args.editor, args.model)
    if out.exists() and not args.force:
        raise SeqeditError(f"{out} exists; give --force to overwrite it")
    arch = models.get_entry(args.model).arch
    if args.no_sweep:
        choice = hi.heuristic_choice(arch.n_layers)
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        choice = hi.sweep_layer(args.model, arch.n_layers, n=args.sweep_n, candidates=args.candidates,
                                stats_samples=args.stats_samples,
                                data_root=settings.data_root(args.data_root),
                                cache_root=settings.cache_root(args.cache_root),
                                progress=not args.json)
    text = hi.render(args.editor, args.model, arch, choice, stats_samples=args.stats_samples)
    output_file(out, "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if args.json:
        import json

        print(json.dumps({"out": str(out), "layer": choice.layer, "how": choice.how,
                          "sweep": choice.rows}))
    else:
        print(f"wrote {out} (ROME layer {choice.layer}: {choice.how})")
    return 0
