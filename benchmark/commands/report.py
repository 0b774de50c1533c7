"""``seqedit report DIR... [--update-readme README.md]``: regenerate tables and plots of
result folders, and optionally the README's headline block from them."""

from __future__ import annotations

from pathlib import Path

from benchmark.commands.options import add_command


def register(sub) -> None:
    p = add_command(sub, "report", summary="regenerate tables and plots from results folders",
                    description=__doc__.replace("``", ""), examples=(
                        "seqedit report results/v2/smoke",
                        "seqedit report results/v2/smoke --update-readme README.md --readme-only",
                    ))
    p.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                   help="results folder(s) holding records.jsonl (and samples.jsonl)")
    p.add_argument("--update-readme", type=Path, default=None, metavar="README",
                   help="replace the text between <!-- headline:begin --> and "
                        "<!-- headline:end --> in this file with the headline tables of DIR...")
    p.add_argument("--readme-only", action="store_true",
                   help="with --update-readme: leave the folders' tables and plots as they are")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.core.errors import SeqeditError
    from benchmark.publish import regenerate
    from benchmark.stats.headline import update_readme

    if args.readme_only and args.update_readme is None:
        raise SeqeditError("--readme-only needs --update-readme README")
    if not args.readme_only:
        for directory in args.dirs:
            out = regenerate(directory)
            for kind, paths in out.items():
                print(f"{directory}: {kind}: {len(paths)}")
                for p in paths:
                    print(f"  {p}")
    if args.update_readme is not None:
        changed = update_readme(args.update_readme, args.dirs)
        print(f"{args.update_readme}: headline {'updated' if changed else 'unchanged'}")
    return 0
