"""Every command's ``--help`` reads as written, ``argos --version``, and output widths."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from argos._version import __version__
from argos.cli import app
from argos.cli.console import PIPE_WIDTH

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def _command_paths() -> list[list[str]]:
    """The path of every command and command group under ``argos``."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        if hasattr(command, "list_commands"):
            ctx = typer.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(root, [])
    return paths


PATHS = _command_paths()


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"train", "eval", "score", "stream publish", "rules check", "datasets show"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "argos")
def test_help_keeps_brackets_and_shows_no_typer_type_labels(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"<(str|bool|int|float|path|int range|float range)>", text), text
    usage = next(ln for ln in text.splitlines() if "Usage:" in ln)
    assert "{" not in usage, usage  # arguments as {truth}
    for default in re.findall(r"\(default: ([^)]+)\)", text):
        assert f"[default: {default}]" not in text, text  # said twice
    # every bracketed word of a help text survives (Rich markup ate "[llm]")
    ctx_command = typer.main.get_command(app)
    for name in path:
        ctx_command = ctx_command.get_command(typer.Context(ctx_command), name)
    for param in ctx_command.params:
        for token in re.findall(r"\\?\[[^\]\s]+\]", getattr(param, "help", None) or ""):
            assert token.lstrip("\\") in text, (token, text)


def test_llm_config_help_names_the_llm_table_and_flags_have_no_type() -> None:
    text = runner.invoke(app, ["train", "--help"], env=WIDE).output
    assert "TOML file with an [llm] table" in text
    json_line = next(ln for ln in text.splitlines() if "--json" in ln)
    assert "bool" not in json_line
    assert "PATH" in next(ln for ln in text.splitlines() if "--llm-config" in ln)
    score = runner.invoke(app, ["score", "--help"], env=WIDE).output
    assert "Usage: argos score [OPTIONS] TRUTH PRED" in score


def test_rules_check_dataset_default_is_said_once() -> None:
    text = runner.invoke(app, ["rules", "check", "--help"], env=WIDE).output
    line = next(ln for ln in text.splitlines() if "--dataset" in ln)
    assert line.count("demo") == 1, line


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"argos {__version__}\n"


def test_tables_follow_columns_and_piped_lines_do_not_wrap_at_80() -> None:
    args = ["eval", "--dataset", "demo", "--methods", "robust-zscore,ewma", "--workers", "1"]
    narrow = runner.invoke(app, args, env={"COLUMNS": "100"})
    assert narrow.exit_code == 0, narrow.output
    table = [ln for ln in narrow.output.splitlines() if ln[:1] in "┏┃┡│└"]
    assert table and max(len(ln) for ln in table) <= 100
    piped = runner.invoke(app, args, env={"COLUMNS": None})
    assert piped.exit_code == 0, piped.output
    table = [ln for ln in piped.output.splitlines() if ln[:1] in "┏┃┡│└"]
    assert max(len(ln) for ln in table) > 100  # all columns: wider than Rich's piped default 80
    assert max(len(ln) for ln in table) <= PIPE_WIDTH
    assert any("7-delay F1" in ln for ln in table)
