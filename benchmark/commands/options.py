"""Command-line options shared by the commands, and the checks that validate them.

Every number is checked where it is parsed (argparse names the option in its error and
exits with 2), so a bad value never reaches the run as a silent default. Output paths are
checked before any work starts (:func:`output_dir`, :func:`output_file`): a path that is
an existing file where a folder is wanted, or that cannot be written, is an
:class:`ArgumentError` naming the option and the path.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import textwrap
from pathlib import Path

from benchmark.core.errors import SeqeditError


class ArgumentError(SeqeditError):
    """A command-line argument that parses but cannot be used (e.g. an unwritable path)."""


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--threads 0`` or ``--jobs 0`` is an error, not "the default")."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An integer ≥ 0 (seeds)."""
    return _whole_number(text, 0)


def int_list(text: str) -> list[int]:
    """Comma-separated integers ≥ 0, e.g. ``--layers 4,5,6``."""
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers ≥ 0, got {text!r}")
    return [non_negative_int(p) for p in parts]


def _probe_writable(folder: Path, option: str, path: Path) -> None:
    """Create ``folder`` if missing and write (then drop) a nameless file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ArgumentError(f"{option} {path}: cannot write to {folder} "
                            f"({exc.strerror or exc}); give a writable location") from None


def output_dir(path: Path, option: str) -> Path:
    """``path`` as a folder this command may write into (created if missing)."""
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{option} {path}: is an existing file, not a folder; "
                            "give a folder (it is created if missing)")
    _probe_writable(path, option, path)
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` as a file this command may (over)write; its folder is created if missing."""
    if path.is_dir():
        raise ArgumentError(f"{option} {path}: is a folder; give a file name")
    _probe_writable(path.parent, option, path)
    return path


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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help in the style of lm-eval's CLI: the description and the examples as written, and
    each option's default appended to its help unless the help already states it (or the
    default is empty: None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or default is argparse.SUPPRESS
                or default is None or default is False or default == []):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, *, summary: str, description: str,
                examples: tuple[str, ...] = (), aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A subcommand parser with a one-line ``summary`` (in ``seqedit --help``), a
    ``description`` and ``examples`` (each a command line, shown under ``examples:``)."""
    epilog = ("examples:\n" + "\n".join(f"  {e}" for e in examples)) if examples else None
    description = "\n\n".join(textwrap.fill(" ".join(par.split()), 88)
                              for par in description.strip().split("\n\n"))
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=HelpFormatter, aliases=list(aliases))


def deprecated_alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs) -> None:
    """A hidden option ``old`` kept for old command lines; :func:`take_deprecated` moves its
    value to ``dest`` with a warning naming the new option."""
    p.add_argument(old, dest=f"_deprecated_{dest}", default=None, help=argparse.SUPPRESS, **kwargs)


def take_deprecated(args: argparse.Namespace, old: str, new: str, dest: str):
    """The value given to the deprecated ``old`` option (None if not given), with a warning
    naming ``new``; the caller decides where the value goes."""
    value = getattr(args, f"_deprecated_{dest}", None)
    if value is not None:
        logging.getLogger("seqedit").warning("%s is deprecated; use %s", old, new)
    return value
