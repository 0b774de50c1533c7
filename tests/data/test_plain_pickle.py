"""The plain-data pickle decoder against the standard library's unpickler (the reference),
on every protocol, and its refusal of anything that is not plain data."""

from __future__ import annotations

import collections
import pickle

import pytest

from benchmark.data.plain_pickle import NotPlainData, plain_from_pickle

PLAIN = [
    [],
    {},
    [{"sentence": "Ein Satz.", "label": 1, "score": -0.25, "ok": True, "no": False, "none": None}],
    {"train": [("a", 0), ("b", 1)], "n": 2 ** 70, "neg": -(2 ** 40), "small": -3, "u": "é✓"},
    [[1, 2, [3, [4, {"deep": ()}]]], (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    {"shared": (lambda x: [x, x, {"again": x}])(["same", "list"])},  # memo GET of one object
    [float("inf"), 1e-300, 0.1, 255, 256, 65535, 65536, 2 ** 31, -(2 ** 31) - 1],
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("obj", PLAIN, ids=range(len(PLAIN)))
def test_decodes_like_the_unpickler(obj, protocol):
    blob = pickle.dumps(obj, protocol=protocol)
    assert plain_from_pickle(blob) == pickle.loads(blob)


def test_python2_strings_decode_as_text():
    # protocol 2 SHORT_BINSTRING 'caf\xc3\xa9' (UTF-8 bytes, as Python 2 wrote str)
    blob = b"\x80\x02]q\x00U\x05caf\xc3\xa9q\x01a."
    assert plain_from_pickle(blob) == ["café"]


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize("obj", [Payload(), collections.OrderedDict(a=1), {1, 2}, b"bytes",
                                 [complex(1, 2)]], ids=["reduce", "class", "set", "bytes", "complex"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_anything_but_plain_data_is_refused_without_running(obj, protocol, capsys):
    blob = pickle.dumps(obj, protocol=protocol)
    with pytest.raises(NotPlainData, match="not plain data|refused"):
        plain_from_pickle(blob)
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("blob, message", [
    (pickle.dumps([1, 2, 3], protocol=4)[:-1], "exhausted before seeing STOP"),
    (b"\x80\x04h\x05.", "memo entry 5"),
    (b"\x80\x04a.", "stack"),
    (b"garbage", "malformed"),
])
def test_malformed_pickles_are_named(blob, message):
    with pytest.raises(NotPlainData, match=message):
        plain_from_pickle(blob)
