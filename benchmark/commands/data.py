"""``seqedit data``: list, verify and fetch the data sets named in tasks/datasets/.

- ``seqedit data list`` -- every manifest, and whether its file is present.
- ``seqedit data verify [NAME ...]`` -- existence + sha256 (always hashed, never taken from
  the verification cache), and for editing data sets the validation of every record. Without names: all data sets; ones that are not in the offline
  mirror and absent are reported but do not fail. ``--path FILE --format F`` validates a file.
- ``seqedit data fetch NAME ... | --all`` -- download and verify (needs SEQEDIT_OFFLINE=0 and a
  network; offline it fails at once naming what it would fetch).
"""

from __future__ import annotations

import json

from benchmark.commands.options import add_command

DESCRIPTION = """\
The data sets the suite reads are named by manifests in tasks/datasets/ (path under the
data root, canonical URL, sha256, record format, licence). The data root is $SEQEDIT_DATA
(or --data-root). On a networked machine `SEQEDIT_OFFLINE=0 seqedit data fetch --all`
downloads every canonical file and checks its sha256; offline, fetching fails at once and
names what it would fetch."""

EXAMPLES = (
    "seqedit data list",
    "seqedit data verify counterfact-edit",
    "seqedit data verify --path my_facts.json --format counterfact-easyedit",
    "SEQEDIT_OFFLINE=0 seqedit data fetch --all",
    "SEQEDIT_OFFLINE=0 seqedit data fetch counterfact-rome --data-root ~/seqedit-data",
)


def register(sub) -> None:
    p = add_command(sub, "data", summary="list, verify or fetch data sets (tasks/datasets/*.yaml)",
                    description=DESCRIPTION, examples=EXAMPLES)
    p.set_defaults(func=_list)
    common = {"--data-root": dict(default=None, help="data root (default: $SEQEDIT_DATA)"),
              "--manifests": dict(default=None, help="manifest folder (default: tasks/datasets)")}
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    parsers = [p]
    lp = add_command(dsub, "list", summary="list data sets and whether their files are present "
                     "(the default action)", description="Every manifest: name, record format, "
                     "records, whether its file is under the data root, and its path there.",
                     examples=("seqedit data list", "seqedit data list --json"))
    lp.add_argument("--json", action="store_true", help="print one JSON object")
    lp.set_defaults(func=_list)
    vp = add_command(dsub, "verify", summary="check sha256 and validate records",
                     description="Hash each file (never trusting the verification cache) and "
                     "validate every record of the editing data sets; without names, every data "
                     "set (absent network-only ones are reported, not failed).",
                     examples=("seqedit data verify", "seqedit data verify zsre-eval mquake-hard",
                               "seqedit data verify --path facts.json --format zsre-mend"))
    vp.add_argument("names", nargs="*", metavar="NAME", help="data set names (default: all)")
    vp.add_argument("--path", default=None, help="validate this file instead of a named data set")
    vp.add_argument("--format", default=None,
                    help="record format of --path: counterfact-easyedit, counterfact-rome, "
                         "zsre-mend or mquake")
    vp.set_defaults(func=_verify)
    fp = add_command(dsub, "fetch", summary="download and verify (networked machines only)",
                     description="Download data sets from their canonical URLs into the data "
                     "root and check each file's sha256 against its manifest (a mismatch writes "
                     "nothing). Needs SEQEDIT_OFFLINE=0; a verified copy already present is kept "
                     "unless --force.",
                     examples=("SEQEDIT_OFFLINE=0 seqedit data fetch --all",
                               "SEQEDIT_OFFLINE=0 seqedit data fetch counterfact-rome"))
    fp.add_argument("names", nargs="*", metavar="NAME", help="data set names")
    fp.add_argument("--all", action="store_true", help="every data set of tasks/datasets/")
    fp.add_argument("--force", action="store_true", help="download even if a verified copy exists")
    fp.set_defaults(func=_fetch)
    parsers += [lp, vp, fp]
    for q in parsers:
        for flag, kw in common.items():
            q.add_argument(flag, **kw)


def _list(args) -> int:
    from benchmark.core.settings import SettingError
    from benchmark.data import load_manifests
    from benchmark.data.store import expected_path

    manifests = load_manifests(args.manifests)
    rows = []
    for name, m in manifests.items():
        try:
            present = expected_path(m, args.data_root).exists()
        except SettingError:
            present = None
        rows.append({"name": name, "format": m.format, "records": m.records, "mirrored": m.mirrored,
                     "present": present, "path": m.path, "licence": m.licence, "url": m.url})
    if getattr(args, "json", False):
        print(json.dumps({r["name"]: r for r in rows}))
        return 0
    print(f"{'name':26} {'format':21} {'records':>8}  {'present':8} path")
    for r in rows:
        mark = {True: "yes", False: "no", None: "?"}[r["present"]]
        if r["present"] is False and not r["mirrored"]:
            mark = "network"
        print(f"{r['name']:26} {r['format']:21} {r['records'] if r['records'] is not None else '-':>8}  "
              f"{mark:8} {r['path']}")
    return 0


def _verify_one(name: str, data_root, manifests) -> str:
    from benchmark.data import get_manifest, verify
    from benchmark.data.loaders import PARSERS, load_records

    m = get_manifest(name, manifests)
    verify(m, data_root, use_cache=False)  # always hash the content: never trust a cache
    if m.format in PARSERS:
        n = len(load_records(name, data_root=data_root, manifest_dir=manifests))
        return f"ok  {name}: sha256 matches, {n} records valid"
    return f"ok  {name}: sha256 matches"


def _verify(args) -> int:
    from benchmark.core.errors import DataError
    from benchmark.data import MissingData, get_manifest, load_manifests
    from benchmark.data.loaders import load_records

    if args.path is not None:
        if args.names:
            raise DataError(args.path, "give either NAME(s) or --path, not both")
        n = len(load_records(path=args.path, format=args.format))
        print(f"ok  {args.path}: {n} records valid ({args.format})")
        return 0
    if args.names:
        for name in args.names:  # named: any failure is an error (first one raised)
            print(_verify_one(name, args.data_root, args.manifests))
        return 0
    failures = 0
    for name in load_manifests(args.manifests):
        try:
            print(_verify_one(name, args.data_root, args.manifests))
        except MissingData as exc:
            if get_manifest(name, args.manifests).mirrored:
                failures += 1
                print(f"BAD {name}: {exc}")
            else:
                print(f"--  {name}: absent (network only; `seqedit data fetch {name}` on a networked machine)")
        except DataError as exc:
            failures += 1
            print(f"BAD {name}: {exc}")
    if failures:
        raise DataError(args.data_root or "data root", f"{failures} data set(s) failed verification")
    return 0


def _fetch(args) -> int:
    from benchmark.core import settings
    from benchmark.core.errors import DataError, SeqeditError
    from benchmark.data import fetch, load_manifests
    from benchmark.data.store import expected_path

    if bool(args.names) == bool(args.all):
        raise SeqeditError("give data set NAME(s) or --all (see `seqedit data list`)")
    manifests = load_manifests(args.manifests)
    names = list(manifests) if args.all else args.names
    if settings.offline():  # fail before any download, naming what would be fetched
        root = settings.data_root(args.data_root)
        wanted = [n for n in names if n not in manifests or args.force
                  or not expected_path(manifests[n], root).exists()]
        if not wanted:
            print(f"every file asked for is present under {root}; nothing to fetch "
                  "(`seqedit data verify` checks their sha256)")
            return 0
        listing = "; ".join(f"{n} <- {manifests[n].url}" if n in manifests else n for n in wanted)
        settings.require_network(f"fetching {len(wanted)} data set(s) ({listing})")
    failures = 0
    for name in names:
        try:
            path = fetch(name, data_root=args.data_root, manifest_dir=args.manifests,
                         force=args.force)
            print(f"ok  {name}: {path}")
        except (DataError, OSError) as exc:
            if not args.all:
                raise
            failures += 1
            print(f"BAD {name}: {exc}")
    if failures:
        raise DataError(args.data_root or "data root", f"{failures} data set(s) could not be fetched")
    return 0
