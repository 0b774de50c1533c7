"""``seqedit edit``: one unrestrained sequential editing trajectory over the first N
requests of a data set, run as a one-cell grid (:func:`benchmark.cell.loop.run_cell`).

The cell edits N facts in batches of ``--batch-size`` and evaluates the editing metrics
(efficacy, generalization, locality; x100, as in published records) at checkpoint N, and
also on the unedited model with ``--baseline`` (checkpoint 0). ``--timing`` is the cell's
evaluation timing: ``first-n`` (default) and ``final`` score every fact on the final model
(keys ``<metric>_final``), ``each`` scores every batch right after its own edit and pools
them (keys ``<metric>_each``). ``--tasks`` adds general-ability tasks (lm-eval).
The cell runs in ``--workdir`` (kept) or in a temporary folder (removed afterwards).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from benchmark.commands.options import (
    add_command,
    add_run_options,
    deprecated_alias,
    non_negative_int,
    output_dir,
    positive_int,
    take_deprecated,
)
from benchmark.core.errors import SeqeditError

_SUFFIX = {"first-n": "final", "final": "final", "each": "each"}


class EditArgumentError(SeqeditError):
    pass


DESCRIPTION = """\
Run one unrestrained sequential editing trajectory: edit the first --limit requests of a data
set, --batch-size requests per edit, and evaluate the editing metrics (efficacy,
generalization, locality) at the end, and on the unedited model with --baseline. Editing
metrics are x100 (the share of facts, 0-100), as in every published table. --tasks adds
general-ability tasks (lm-eval), their first --task-limit items each. It is one grid cell
(the same code), run in --workdir (kept) or a temporary folder (removed)."""

EXAMPLES = (
    "seqedit edit --model smollm2-135m --editor rome --limit 10",
    "seqedit edit --model tiny-llama --editor memit --limit 8 --batch-size 4 --baseline --json",
    "seqedit edit --model smollm2-135m --editor rome --limit 20 --tasks known_facts --task-limit 40",
    "seqedit edit --model smollm2-135m --editor memit --limit 5 --set layers=[4,5] --timing each",
)


def register(sub) -> None:
    p = add_command(sub, "edit", summary="run one unrestrained sequential editing trajectory",
                    description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("--model", required=True, help="model: a registry name (seqedit models list)")
    p.add_argument("--editor", required=True, help="editing method (rome, memit, alphaedit, nse, ...)")
    p.add_argument("--dataset", default="counterfact", help="data set family or name (seqedit data list)")
    p.add_argument("--split", default="edit", help="split of the data set family")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="edit the first N requests of the data set (required)")
    deprecated_alias(p, "--n", "limit", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, default=1, help="requests per edit")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the cell seed")
    p.add_argument("--timing", choices=sorted(_SUFFIX), default="first-n",
                   help="evaluation timing of the editing metrics (docs/methods.md)")
    p.add_argument("--baseline", action="store_true",
                   help="also evaluate the unedited model (checkpoint 0)")
    p.add_argument("--tasks", default=None,
                   help="comma-separated general-ability tasks to evaluate too (default: none)")
    p.add_argument("--task-limit", type=positive_int, default=None,
                   help="first N items of each task (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter, e.g. --set target.v_lr=0.1 (YAML value)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="run the cell here and keep its folder (default: a temporary folder)")
    add_run_options(p)
    p.set_defaults(func=run)


def resolve_limits(args) -> None:
    """``args.limit`` (requests to edit) and ``args.task_limit`` (items per task) from the
    options given. The deprecated ``--n N`` is the number of requests; given together with
    ``--limit L`` (the old command line) ``L`` is the items per task, as it was then."""
    old = take_deprecated(args, "--n", "--limit (and --task-limit for items per task)", "limit")
    if old is not None:
        if args.limit is not None:
            if args.task_limit is not None:
                raise EditArgumentError("--n (deprecated) with --limit and --task-limit: give "
                                        "--limit N (requests) and --task-limit L (items per task)")
            args.task_limit = args.limit
        args.limit = old
    if args.limit is None:
        raise EditArgumentError("--limit N is required: the number of requests to edit "
                                "(the first N of the data set)")


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise EditArgumentError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def cell_spec(args):
    """The one-cell spec of the command line: no restraint, variant ``none`` only."""
    from benchmark.spec import CellSpec, DatasetSpec, EvalSpec, TaskSpec

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else []
    return CellSpec(
        model=args.model, editor=args.editor, hparams=parse_overrides(args.overrides),
        dataset=DatasetSpec(name=args.dataset, split=args.split), n_edits=args.limit,
        batch_size=args.batch_size, checkpoints=(0, args.limit) if args.baseline else (args.limit,),
        evaluation=EvalSpec(timing=args.timing, spectrum=False,
                            tasks=tuple(TaskSpec(name=t, limit=args.task_limit) for t in tasks)),
        seed=args.seed)


def check_inputs(args, spec) -> None:
    """Before loading anything heavy: the hparams' layers exist in the model, the data set
    holds ``--limit`` requests, every task holds ``--task-limit`` documents, ``--workdir`` is writable."""
    from benchmark.data import first_requests
    from benchmark.models import get_entry
    from editors.hparams import check_model_layers, load_hparams

    entry = get_entry(spec.model)
    hp = load_hparams(spec.editor, spec.model, dict(spec.hparams) or None)
    check_model_layers(spec.editor, entry, hp.layers,
                       source="--set layers" if "layers" in spec.hparams else None)
    first_requests(spec.dataset.name, spec.dataset.split, spec.n_edits)
    if spec.evaluation.tasks:
        from benchmark.evaluation.general import task_limits

        task_limits([t.name for t in spec.evaluation.tasks], args.task_limit)
    if args.workdir is not None:
        output_dir(args.workdir, "--workdir")


def summary(args, spec, folder) -> dict:
    """The JSON summary: editing metrics per checkpoint, task metrics, timings, provenance."""
    import torch

    prov = json.loads(folder.provenance_text())
    out = {"model": args.model, "editor": args.editor, "dataset": args.dataset,
           "split": args.split, "n": spec.n_edits, "batch_size": spec.batch_size,
           "seed": spec.seed, "timing": spec.evaluation.timing}
    general: dict[str, dict[str, float | None]] = {}
    for r in folder.records(spec.checkpoints):
        if r.kind == "editing":
            suffix = "unedited" if r.n_edits == 0 else _SUFFIX[spec.evaluation.timing]
            out[f"{r.metric}_{suffix}"] = r.value
        elif r.n_edits == spec.n_edits:
            general.setdefault(r.task, {})[r.metric] = r.value
    if general:
        out["general_final"] = general
    wall, steps = prov["wall_seconds"], math.ceil(spec.n_edits / spec.batch_size)
    out.update(seconds_per_edit=wall.get("edits", 0.0) / steps,
               seconds_per_fact=wall.get("edits", 0.0) / spec.n_edits,
               seconds_prepare=wall.get("statistics", 0.0),
               hparams_sha256=prov["hparams_hash"], hparams=prov["hparams"],
               model_identity=prov["model_identity"], threads=torch.get_num_threads())
    return out


def _roots_env(args) -> dict[str, str]:
    from benchmark.core import settings

    env = {}
    if args.data_root is not None:
        env[settings.DATA_ENV] = str(Path(args.data_root).expanduser().resolve())
    if args.cache_root is not None:
        env[settings.CACHE_ENV] = str(Path(args.cache_root).expanduser().resolve())
    return env


def _run_in(args, spec, workdir: Path) -> dict:
    from benchmark.cell.context import RunContext
    from benchmark.cell.folder import CellFolder
    from benchmark.cell.loop import run_cell

    folder = CellFolder.of(workdir, spec)
    # state is saved at the checkpoints only (a one-off run is not resumed)
    ctx = RunContext(grid="edit", device=args.device, save_every=spec.n_edits,
                     progress=not args.json)
    run_cell(spec, folder.root, ctx)
    return summary(args, spec, folder)


def run(args) -> int:
    import torch

    from benchmark.cell.context import scoped_environ

    resolve_limits(args)
    spec = cell_spec(args)
    with scoped_environ(_roots_env(args)):  # --data-root / --cache-root for checks and run
        check_inputs(args, spec)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.workdir is not None:
            out = _run_in(args, spec, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="seqedit-edit-") as tmp:
                out = _run_in(args, spec, Path(tmp))
    if args.json:
        print(json.dumps(out))
        return 0
    key = _SUFFIX[spec.evaluation.timing]
    scores = ", ".join(f"{m} {out[f'{m}_{key}']:.1f}" for m in spec.evaluation.editing_metrics
                       if out.get(f"{m}_{key}") is not None)
    print(f"{args.editor} on {args.model}, {spec.n_edits} {args.dataset} facts, batch "
          f"{spec.batch_size}: {scores} ({key}; editing rates x100), "
          f"{out['seconds_per_edit']:.2f} s per edit")
    if args.workdir is not None:
        print(f"cell folder: {Path(args.workdir) / spec.folder}")
    return 0
