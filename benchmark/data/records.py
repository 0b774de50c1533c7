"""The one reader and validator of the suite's data files (edit requests and task data).

Every problem raises :class:`~benchmark.core.errors.DataError` naming the file, the record
index (0-based position in the file) and the field:

- :func:`read_json` / :func:`read_json_records` -- a JSON file (a non-empty list of records);
- :func:`read_jsonl_records` -- JSON Lines, one object a line (blank lines skipped), read up
  to the first ``first_n`` records;
- :func:`read_csv_records` -- a CSV/TSV file with a header row (Python's csv reader), one
  ``{column: value}`` record a row, read up to the first ``first_n`` records;
- :class:`Record` -- typed field access on one record;
- :func:`take` -- the first ``first_n`` records (all for ``None``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.core.errors import DataError


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found", field=None) from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text: {exc}") from None
    if not text.strip():
        raise DataError(path, "file is empty (expected a JSON list of records)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        tail = text.rstrip()[-1:]
        hint = f" (the file looks truncated: it ends with {tail!r}, not ']')" if tail not in ("]", "}") else ""
        raise DataError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}") from None


def read_json_records(path: Path) -> list[Any]:
    """A JSON file holding a non-empty list of records."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON list of records, got {type(data).__name__}")
    if not data:
        raise DataError(path, "no records (empty list)")
    return data


def read_jsonl_records(path: Path, first_n: int | None = None) -> list[Any]:
    """The records of a JSON Lines file, up to the first ``first_n`` (later lines unread)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if first_n is not None and len(out) >= first_n:
                break
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc}", record=i) from None
    return out


def read_csv_records(path: Path, *, columns: Sequence[str] | None = None, delimiter: str = ",",
                     first_n: int | None = None) -> list[dict[str, str]]:
    """Rows of a CSV file as ``{column: value}`` (the first row names the columns; it must
    begin with ``columns`` when given); every row must have one value per column."""
    kind = "tab-separated" if delimiter == "\t" else f"{delimiter!r}-separated"
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter=delimiter)
        header = next(rows, None)
        if header is None or (columns is not None and header[: len(columns)] != list(columns)):
            raise DataError(path, f"expected header {', '.join(columns or ['(any)'])}; got {header}")
        for i, row in enumerate(rows):
            if first_n is not None and len(out) >= first_n:
                break
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} {kind} fields, got {len(row)}", record=i)
            out.append(dict(zip(header, row)))
    return out


def take(records: Sequence, first_n: int | None) -> Sequence:
    """The first ``first_n`` records (all of them for ``None``)."""
    return records if first_n is None else records[: int(first_n)]


class Record:
    """Typed field access on one record; every failure names file, record and field."""

    def __init__(self, file: object, index: int, raw: Any, prefix: str = ""):
        self.file, self.index, self.raw, self.prefix = file, index, raw, prefix
        if not isinstance(raw, dict):
            self.fail(f"expected an object, got {type(raw).__name__}", None)

    def fail(self, message: str, field: str | None):
        name = f"{self.prefix}{field}" if field is not None else (self.prefix.rstrip(".") or None)
        raise DataError(self.file, message, record=self.index, field=name)

    def get(self, field: str) -> Any:
        if field not in self.raw:
            self.fail("missing field", field)
        return self.raw[field]

    def text(self, field: str, *, nonempty: bool = True) -> str:
        v = self.get(field)
        if not isinstance(v, str):
            self.fail(f"expected a string, got {type(v).__name__} {v!r:.60}", field)
        if nonempty and not v.strip():
            self.fail("empty string", field)
        return v

    def boolean(self, field: str) -> bool:
        v = self.get(field)
        if not isinstance(v, bool):
            self.fail(f"expected a boolean, got {type(v).__name__} {v!r:.60}", field)
        return v

    def values(self, field: str, *, min_len: int = 0, what: str = "a list") -> list:
        """A list (of any items) with at least ``min_len`` items."""
        v = self.get(field)
        if not isinstance(v, list):
            self.fail(f"expected {what}, got {type(v).__name__}", field)
        if len(v) < min_len:
            self.fail(f"expected at least {min_len} item(s), got {len(v)}", field)
        return v

    def texts(self, field: str, *, min_len: int = 0) -> tuple[str, ...]:
        v = self.values(field, min_len=min_len, what="a list of strings")
        for i, x in enumerate(v):
            if not isinstance(x, str) or not x.strip():
                self.fail(f"expected a non-empty string, got {x!r:.60}", f"{field}[{i}]")
        return tuple(v)

    def case_id(self, field: str = "case_id") -> str:
        v = self.get(field)
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v.strip()):
            self.fail(f"expected an integer or non-empty string id, got {v!r:.60}", field)
        return str(v)

    def sub(self, field: str) -> Record:
        return Record(self.file, self.index, self.get(field), prefix=f"{self.prefix}{field}.")

    def items(self, field: str) -> list[Record]:
        v = self.get(field)
        if not isinstance(v, list) or not v:
            self.fail(f"expected a non-empty list, got {type(v).__name__}", field)
        return [Record(self.file, self.index, x, prefix=f"{self.prefix}{field}[{i}].") for i, x in enumerate(v)]
