"""``seqedit`` command wiring: listings answer with and without their ``list`` action."""

from __future__ import annotations

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
