"""``seqedit report DIR``: regenerate tables and PNG plots of a results folder."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="regenerate tables and plots from a results folder")
    p.add_argument("dir", type=Path, help="results folder holding records.jsonl")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.publish import regenerate

    out = regenerate(args.dir)
    for kind, paths in out.items():
        print(f"{kind}: {len(paths)}")
        for p in paths:
            print(f"  {p}")
    return 0
