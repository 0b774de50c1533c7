"""``seqedit leaderboard build RESULT_DIR... --out SITE_DIR``: the static leaderboard site."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="build the static leaderboard site from result folders")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="validate result folders and write the site")
    b.add_argument("dirs", type=Path, nargs="*", metavar="RESULT_DIR",
                   help="published result folders (committed ones or submissions)")
    b.add_argument("--out", type=Path, help="folder the site is written to")
    b.add_argument("--committed", action="store_true",
                   help="build the project's own site: the committed result folders into site/ "
                        "of the repository (what `nox -s leaderboard` runs)")
    b.set_defaults(func=_build, parser=b)


def _build(args) -> int:
    from benchmark.core import settings
    from benchmark.leaderboard.build import SITE, SOURCES, build_site

    if args.committed:
        if args.dirs or args.out:
            args.parser.error("--committed takes no RESULT_DIR and no --out")
        args.dirs = [settings.REPO_ROOT / d for d in SOURCES]
        args.out = settings.REPO_ROOT / SITE
    elif not args.dirs or args.out is None:
        args.parser.error("give RESULT_DIR... and --out SITE_DIR (or --committed)")
    site = build_site(args.dirs, args.out)
    print(f"leaderboard: {site.rows} row(s) in {site.groups} group(s) -> {site.index}")
    return 0
