"""A small lazy registry with did-you-mean errors (after lm-evaluation-harness).

Entries are registered by name; values may be objects or ``"module:attr"`` strings
that are imported only on first lookup, so listing a registry imports nothing heavy.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """Lookup of a name that is not registered. ``str()`` gives the did-you-mean message."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, value: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = value

    def get(self, name: str) -> T:
        try:
            value = self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, list(self._entries)) from None
        if isinstance(value, str) and ":" in value:
            module, attr = value.split(":", 1)
            value = getattr(importlib.import_module(module), attr)
            self._entries[name] = value
        return value

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
