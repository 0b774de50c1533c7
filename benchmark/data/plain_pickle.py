"""Decode a pickle of plain data (lists, dicts, tuples, strings, numbers, booleans, None)
without loading it: the opcodes are read with :mod:`pickletools` and interpreted here, so
no object is ever constructed from the stream and no code can run.

Some canonical data sets (AlphaEdit's GLUE evaluation sets) are published as pickles of
plain lists and dicts; ``seqedit data fetch`` verifies their sha256 and turns them into
JSON with :func:`plain_from_pickle`. Any opcode outside plain data (a class, a global, a
reduce, a set, bytes) is refused with a named error.
"""

from __future__ import annotations

import pickletools
from typing import Any

_SCALARS = {"NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
            "LONG4", "FLOAT", "BINFLOAT", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
            "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_IGNORED = {"PROTO", "FRAME"}


class NotPlainData(ValueError):
    """The pickle holds something other than plain data, or is malformed."""


def _py2_text(arg: Any) -> str:
    # A Python 2 str is bytes (pickletools hands it over as Latin-1 text): UTF-8 where it
    # decodes, else Latin-1.
    raw = arg if isinstance(arg, bytes) else str(arg).encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _scalar(name: str, arg: Any) -> Any:
    if name in _CONSTANTS:
        return _CONSTANTS[name]
    if "STRING" in name:
        return _py2_text(arg)
    if "UNICODE" in name:
        return str(arg)
    return arg  # ints (INT's "I01"/"I00" arrive as booleans), floats


class _Machine:
    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise NotPlainData("pickle pops to a mark that was never set")
        at = self.marks.pop()
        items, self.stack[at:] = self.stack[at:], []
        return items

    def pop(self, n: int = 1) -> list[Any]:
        if len(self.stack) < n:
            raise NotPlainData("pickle stack underflow")
        items, self.stack[-n:] = self.stack[-n:], []
        return items

    def step(self, name: str, arg: Any) -> None:
        if name in _SCALARS:
            self.stack.append(_scalar(name, arg))
        elif name in _IGNORED:
            pass
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE"):
            self.stack.append({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_TUPLE": ()}[name])
        elif name in ("LIST", "TUPLE"):
            items = self.pop_mark()
            self.stack.append(items if name == "LIST" else tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            self.stack.append(tuple(self.pop(int(name[-1]))))
        elif name == "DICT":
            items = self.pop_mark()
            self.stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        else:
            self.container_step(name, arg)

    def container_step(self, name: str, arg: Any) -> None:
        if name == "APPEND":
            (value,) = self.pop()
            self.top(list).append(value)
        elif name == "APPENDS":
            items = self.pop_mark()
            self.top(list).extend(items)
        elif name == "SETITEM":
            key, value = self.pop(2)
            self.top(dict)[key] = value
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.top(dict).update(zip(items[::2], items[1::2], strict=True))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[len(self.memo) if name == "MEMOIZE" else int(arg)] = self.top(object)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise NotPlainData(f"pickle refers to memo entry {arg} that was never stored")
            self.stack.append(self.memo[int(arg)])
        elif name == "POP":
            self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.stack.append(self.top(object))
        else:
            raise NotPlainData(f"pickle opcode {name} is not plain data (refused: nothing is loaded)")

    def top(self, kind: type) -> Any:
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise NotPlainData(f"pickle expects a {kind.__name__} on the stack")
        return self.stack[-1]


def plain_from_pickle(blob: bytes) -> Any:
    """The plain data a pickle describes, decoded without unpickling (see module doc)."""
    machine = _Machine()
    try:
        for op, arg, _pos in pickletools.genops(blob):
            if op.name == "STOP":
                if len(machine.stack) != 1 or machine.marks:
                    raise NotPlainData("pickle ends with an unbalanced stack")
                return machine.stack[0]
            machine.step(op.name, arg)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, NotPlainData):
            raise
        raise NotPlainData(f"malformed pickle: {exc}") from exc
    raise NotPlainData("pickle has no STOP opcode (truncated)")
