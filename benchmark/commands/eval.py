"""``seqedit eval``: general abilities of a registered (unedited) model through lm-eval.

``seqedit eval --model smollm2-135m --tasks prune_nli,known_facts --limit 20 --json``
prints one JSON object ``{task: {metric: {"value", "n", "stderr"}}}``. ``--tasks`` also
takes ``headline`` (the smoke grid's tasks) and ``all``; ``--limit smoke`` uses the smoke
grid's per-task limits. ``--out FILE`` writes metrics, task hashes, the recorded settings
(batch size, chat template, limits, ...) and the logged samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmark.commands.options import add_command, output_file, positive_int
from benchmark.core.errors import SeqeditError

EVAL_DESCRIPTION = """\
Evaluate an unedited model on general-ability tasks through lm-evaluation-harness (the
tasks of tasks/lm_eval/; --list shows them). Prints one line per task and metric, or with
--json one object {task: {metric: {value, n, stderr}}}; --out writes metrics, task hashes,
settings and the logged samples to a file."""

EVAL_EXAMPLES = (
    "seqedit eval --list",
    "seqedit eval --model smollm2-135m --tasks headline --limit smoke",
    "seqedit eval --model smollm2-135m --tasks prune_nli,known_facts --limit 20 --json",
    "seqedit eval --model gemma3-270m --tasks all --out gemma-general.json",
)


class EvalArgumentError(SeqeditError):
    """Bad ``seqedit eval`` arguments."""


def register(sub) -> None:
    p = add_command(sub, "eval", summary="evaluate general abilities (lm-eval tasks) of a model",
                    description=EVAL_DESCRIPTION, examples=EVAL_EXAMPLES)
    p.add_argument("--model", help="registered model name (seqedit models)")
    p.add_argument("--tasks", default="headline",
                   help="comma-separated task names, or 'headline' / 'all' (default: headline)")
    p.add_argument("--limit", default=None,
                   help="first N documents of each task, or 'smoke' for the smoke limits")
    p.add_argument("--batch-size", type=positive_int, default=8, help="documents per forward pass")
    p.add_argument("--chat-template", action="store_true",
                   help="wrap prompts in the tokenizer's chat template (recorded)")
    p.add_argument("--max-length", type=positive_int, default=None, help="cap the model context")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--out", type=Path, default=None,
                   help="write full results + samples to this JSON file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    p.set_defaults(func=run)


def parse_tasks(spec: str) -> list[str]:
    from benchmark.evaluation.task_catalog import HEADLINE_TASKS, TASKS

    out: list[str] = []
    for part in (s.strip() for s in spec.split(",")):
        if not part:
            continue
        if part == "headline":
            out.extend(HEADLINE_TASKS)
        elif part == "all":
            out.extend(TASKS.names())
        else:
            TASKS.get(part)  # UnknownName with did-you-mean
            out.append(part)
    if not out:
        raise EvalArgumentError("--tasks names no task")
    return list(dict.fromkeys(out))


def parse_limit(spec: str | None, tasks: list[str]) -> int | dict[str, int] | None:
    from benchmark.evaluation.task_catalog import SMOKE_LIMITS

    if spec is None:
        return None
    if spec == "smoke":
        return {t: SMOKE_LIMITS[t] for t in tasks if t in SMOKE_LIMITS}
    try:
        value = int(spec)
    except ValueError:
        raise EvalArgumentError(f"--limit must be a positive integer or 'smoke', got {spec!r}") from None
    if value < 1:
        raise EvalArgumentError(f"--limit must be at least 1, got {value}")
    return value


def _plain(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def run(args) -> int:
    from benchmark import models
    from benchmark.core import io
    from benchmark.evaluation.general import evaluate_tasks, task_limits
    from benchmark.evaluation.task_catalog import TASKS

    if args.list:
        for name in TASKS.names():
            info = TASKS.get(name)
            print(f"{name:24} {info.family:9} {info.primary_metric:16} {info.description}")
        return 0
    if not args.model:
        raise EvalArgumentError("--model is required (see `seqedit models`)")
    models.get_entry(args.model)  # UnknownName with did-you-mean, before anything is loaded
    if args.out is not None:
        output_file(args.out, "--out")
    tasks = parse_tasks(args.tasks)
    limit = parse_limit(args.limit, tasks)
    task_limits(tasks, limit)  # a limit beyond a task's documents is an error

    lm = models.load(args.model, device=args.device)
    result = evaluate_tasks(lm, tasks, limit=limit, batch_size=args.batch_size,
                            apply_chat_template=args.chat_template, max_length=args.max_length)
    table = {t: {m: {"value": _plain(mv.value), "n": mv.n, "stderr": _plain(mv.stderr)}
                 for m, mv in ms.items()} for t, ms in result.items()}
    if args.out:
        io.write_json(args.out, {"model": args.model, "identity": lm.identity, "metrics": table,
                                 "task_hashes": result.task_hashes,
                                 "settings": result.settings.to_dict(),
                                 "samples": result.samples})
    if args.json:
        print(json.dumps(table, sort_keys=True))
    else:
        for t, ms in table.items():
            cells = ", ".join(f"{m}={_fmt(v['value'])}" for m, v in ms.items())
            print(f"{t:24} n={next(iter(ms.values()))['n'] if ms else 0:<4} {cells}")
    return 0


def _fmt(v: float | None) -> str:
    return "nan" if v is None else f"{v:.4g}"
