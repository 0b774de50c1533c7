"""A small lazy registry with did-you-mean errors (after lm-evaluation-harness).

Entries are registered by name; values may be objects or ``"module:attr"`` strings
that are imported only on first lookup, so listing a registry imports nothing heavy.

A registry made with ``entry_points="seqedit.editors"`` (say) also holds every entry point
of that group that installed distributions declare (``[project.entry-points."seqedit.editors"]
my-editor = "my_package.editor:MyEditor"`` in a plugin's pyproject.toml). They are read
on the first lookup or listing and imported, like the built-in strings, only when used.
A plugin may not reuse a built-in name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from benchmark.core.errors import SeqeditError

T = TypeVar("T")


class PluginError(SeqeditError):
    """An entry point that cannot be used: names the group, the entry and its distribution."""


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
    def __init__(self, kind: str, *, entry_points: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_points
        self._entries: dict[str, Any] = {}
        self._origin: dict[str, str] = {}  # plugin name -> "group entry (distribution)"
        self._plugins_read = entry_points is None

    def register(self, name: str, value: T | str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = value

    def get(self, name: str) -> T:
        self._read_plugins()
        try:
            value = self._entries[name]
        except KeyError:
            raise UnknownName(self.kind, name, list(self._entries)) from None
        if isinstance(value, str) and ":" in value:
            value = self._import(name, value)
            self._entries[name] = value
        return value

    def plugin_origin(self, name: str) -> str | None:
        """Where a plugin entry comes from (``None`` for a built-in one)."""
        self._read_plugins()
        return self._origin.get(name)

    def names(self) -> list[str]:
        self._read_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._read_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    # ------------------------------------------------------------------ plugins
    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep.dist, "name", None) or "an unknown distribution"
            origin = f"entry point {ep.name!r} of group {self.entry_point_group!r} ({dist})"
            if ep.name in self._entries:
                if self._origin.get(ep.name) == origin:  # the same distribution seen twice
                    continue
                raise PluginError(f"{origin}: a {self.kind} named {ep.name!r} exists already "
                                  f"({self._origin.get(ep.name) or 'built in'}); rename the plugin's")
            if ":" not in ep.value:
                raise PluginError(f"{origin}: value {ep.value!r} must be 'module:attribute'")
            self._entries[ep.name] = ep.value.split("[", 1)[0].strip()  # drop any [extras]
            self._origin[ep.name] = origin

    def _import(self, name: str, value: str) -> Any:
        module, attr = value.split(":", 1)
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            if name not in self._origin:
                raise
            raise PluginError(f"{self._origin[name]}: cannot load {value!r}: {exc}") from exc
        return obj
