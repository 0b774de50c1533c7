"""``seqedit validate DIR...``: check result folders before they are submitted or ranked."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a result folder (schema, completeness, "
                                        "provenance, hashes, comparable groups)")
    p.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="published result folder")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.validate import validate

    bad = 0
    for directory in args.dirs:
        problems = validate(directory)
        if problems:
            bad += 1
            print(f"{directory}: INVALID, {len(problems)} problem(s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{directory}: valid")
    return 1 if bad else 0
