"""``seqedit`` command line. Each subcommand lives in its own module of benchmark/commands/
with ``register(subparsers)``; this file only wires them together and turns
:class:`~benchmark.core.errors.SeqeditError` and an OSError on a path (read-only, full,
a file where a folder should be) into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from benchmark import __version__

#: subcommand -> module; each module defines register(subparsers) setting ``func``.
COMMANDS = {
    "models": "benchmark.commands.models",
    "data": "benchmark.commands.data",
    "stats": "benchmark.commands.stats",
    "edit": "benchmark.commands.edit",
    "eval": "benchmark.commands.eval",
    "grid": "benchmark.commands.grid",
    "report": "benchmark.commands.report",
    "compare": "benchmark.commands.compare",
    "hparams": "benchmark.commands.hparams",
    "validate": "benchmark.commands.validate",
    "leaderboard": "benchmark.commands.leaderboard",
    "train": "benchmark.commands.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqedit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="seqedit-bench: sequential model editing benchmarks (editors, restraints, "
                    "grids of\ntrajectories, published records). `seqedit COMMAND --help` "
                    "describes each command.\nEditing rates are x100 (0-100) everywhere.",
        epilog="examples:\n  seqedit models list\n  seqedit data list\n"
               "  seqedit grid smoke --dry-run\n  seqedit grid smoke\n"
               "  seqedit edit --model smollm2-135m --editor rome --limit 10")
    parser.add_argument("--version", action="version", version=f"seqedit-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmark.core.errors import SeqeditError
    from benchmark.core.registry import UnknownName
    from benchmark.core.settings import NetworkRequired, SettingError, apply_offline_env

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * args.verbose,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    apply_offline_env()
    try:
        return int(args.func(args) or 0)
    except (SeqeditError, UnknownName, NetworkRequired, SettingError) as exc:
        print(f"seqedit {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"seqedit {args.command}: {os_error_line(exc)}", file=sys.stderr)
        return 2


#: what to do about an OSError on a path, by errno
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or choose another --out/--workdir",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another --out/--workdir",
    errno.EROFS: "the file system is read-only: choose a writable --out/--workdir",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "not permitted: choose a folder you can write to, or fix its permissions",
    errno.EEXIST: "a file is in the way of a folder: give a folder path, or move the file",
    errno.ENOTDIR: "a file is in the way of a folder: give a folder path, or move the file",
    errno.EISDIR: "a folder is in the way of a file: give a file path, or move the folder",
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError on a path: ``cannot write <path>: <reason> (<what to do>)``
    (``cannot access`` for errors that are not about writing).
    Nothing was published: publishing is all or nothing (:mod:`benchmark.publish`)."""
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    if exc.errno in _OS_HINTS:
        return f"cannot write {path}: {exc.strerror} ({_OS_HINTS[exc.errno]})"
    return f"cannot access {path}: {exc.strerror or exc} (check the path and its folder)"


if __name__ == "__main__":
    raise SystemExit(main())
