"""``seqedit compare BASE NEW [--tolerances FILE]``: exit 1 on a regression beyond tolerance."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare two results folders with per-metric tolerances")
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
