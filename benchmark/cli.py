"""``seqedit`` command line. Each subcommand lives in its own module of benchmark/commands/
with ``register(subparsers)``; this file only wires them together and turns
:class:`~benchmark.core.errors.SeqeditError` into a message and a non-zero exit."""

from __future__ import annotations

import argparse
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqedit", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    raise SystemExit(main())
