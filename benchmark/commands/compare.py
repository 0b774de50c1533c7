"""``seqedit compare BASE NEW [--tolerances FILE]``: exit 1 on a regression beyond tolerance."""

from __future__ import annotations

from pathlib import Path

from benchmark.commands.options import add_command


def register(sub) -> None:
    p = add_command(sub, "compare", summary="compare two results folders with per-metric tolerances",
                    description="Compare the records of NEW with those of BASE, metric by metric, "
                    "within the tolerances of a YAML file; print the differences and exit 1 on a "
                    "regression beyond tolerance (0 otherwise).", examples=(
                        "seqedit compare results/v2/ci my-run/ci",
                        "seqedit compare base/records.jsonl new/records.jsonl --tolerances tol.yaml",
                    ))
    p.add_argument("base", type=Path, help="baseline results folder (or records.jsonl)")
    p.add_argument("new", type=Path, help="new results folder (or records.jsonl)")
    p.add_argument("--tolerances", type=Path, default=None,
                   help="tolerances YAML (default: benchmark/grids/tolerances.yaml)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.compare import compare, has_regression

    diffs, text = compare(args.base, args.new, args.tolerances)
    print(text)
    return 1 if has_regression(diffs) else 0
