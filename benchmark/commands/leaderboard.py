"""``seqedit leaderboard build RESULT_DIR... --out SITE_DIR``: the static leaderboard site."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="build the static leaderboard site from result folders")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="validate result folders and write the site")
    b.add_argument("dirs", type=Path, nargs="+", metavar="RESULT_DIR",
                   help="published result folders (committed ones or submissions)")
    b.add_argument("--out", type=Path, required=True, help="folder the site is written to")
    b.set_defaults(func=_build)


def _build(args) -> int:
    from benchmark.leaderboard.build import build_site

    site = build_site(args.dirs, args.out)
    print(f"leaderboard: {site.rows} row(s) in {site.groups} group(s) -> {site.index}")
    return 0
