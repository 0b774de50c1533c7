"""``seqedit`` command wiring: listings answer with and without their ``list`` action."""

from __future__ import annotations

import argparse

import pytest

from benchmark.cli import main


def test_models_list_is_the_plain_listing(capsys):
    assert main(["models"]) == 0
    plain = capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out == plain
    assert plain.splitlines()[0].split()[:2] == ["name", "source"]
    assert any(line.startswith("tiny-llama ") for line in plain.splitlines())


def test_unknown_action_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["models", "lst"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_number_option_is_validated_where_parsed():
    """No command reads a number with a bare int/float: each goes through a validator of
    benchmark.commands.options (or a command's own parser), so 0 or -1 is never a default."""
    from benchmark.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if action.type in (int, float):
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")

    assert list(walk(build_parser(), "seqedit")) == []
