"""User-facing errors. The CLI prints their message and exits non-zero (no traceback)."""

from __future__ import annotations


class SeqeditError(Exception):
    """Base of every error the CLI reports as a plain message."""

    exit_code = 2


class DataError(SeqeditError):
    """Bad input data or config: names the file, the record and the field."""

    def __init__(self, file: object, message: str, *, record: object = None, field: str | None = None):
        self.file, self.record, self.field = str(file), record, field
        where = self.file
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
