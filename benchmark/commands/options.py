"""Command-line options shared by the commands, and the argument types that validate them.

Every number is checked where it is parsed (argparse names the option in its error and
exits with 2), so a bad value never reaches the run as a silent default.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--threads 0`` or ``--jobs 0`` is an error, not "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value}")
    return value


def add_run_options(p: argparse.ArgumentParser, *, roots: bool = True, device: str | None = "cpu",
                    threads: bool = True, json_help: str = "print one JSON object") -> None:
    """The options of a command that loads a model: data and cache roots, device, threads, JSON."""
    if roots:
        p.add_argument("--data-root", default=None,
                       help="data root (default: $SEQEDIT_DATA)")
        p.add_argument("--cache-root", default=None,
                       help="cache root (default: $SEQEDIT_CACHE or ~/.cache/seqedit-bench)")
    if device is not None:
        p.add_argument("--device", default=device, help=f"torch device (default: {device})")
    if threads:
        p.add_argument("--threads", type=positive_int, default=None,
                       help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--json", action="store_true", help=json_help)
