"""The options several commands share (``argos.cli.options``): a shared flag keeps its name and
checks in every command with the command's own help; the detector's policy options stand where
a command's ``settings`` parameter stood and make its ``DetectorSettings``."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from argos.cli import app
from argos.cli.options import (
    FROM_POLICY_OPTIONS,
    MAX_SERIES,
    OUT,
    WORKERS,
    SharedFlag,
    with_detection_policy,
)
from argos.online.detector import DetectorSettings
from argos.online.postprocess import PostProcessing

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def test_a_shared_flag_has_one_name_its_checks_and_each_commands_help() -> None:
    out = OUT("PNG file to write.")
    assert out.default == "--out" and out.help == "PNG file to write."  # the flag, as typer has it
    assert WORKERS("Worker processes.").min == 1  # the flag's own check
    assert MAX_SERIES("Series drawn.", min=1).min == 1  # a command's extra check
    assert MAX_SERIES("Series used.").min is None
    flag = SharedFlag("--n", min=0)
    assert flag("h", min=2).min == 2 and flag("h").min == 0


@pytest.mark.parametrize("command", [["demo"], ["eval"], ["train"], ["serve", "--rules", "."]])
def test_every_command_taking_workers_refuses_zero(command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--workers", "0"], env=WIDE)
    assert res.exit_code == 2
    assert "--workers" in res.output and "greater than or equal to 1" in res.output


@pytest.mark.parametrize(
    ("command", "help_text"),
    [
        (["datasets", "plot"], "PNG file to write (default ./NAME[-SERIES].png)."),
        (["report"], "HTML file to write (default PATH/report.html)."),
        (["rules", "pack"], "The rule-set folder to write (default: --from, in place)."),
        (["eval"], "Write results.md/.csv/.json and command.txt here."),
    ],
)
def test_a_shared_flag_keeps_each_commands_help(command: list[str], help_text: str) -> None:
    res = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert res.exit_code == 0 and help_text in res.output


def _policy_app(seen: list[DetectorSettings]) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @with_detection_policy
    def run(
        first: Annotated[int, typer.Option(help="Before the policy.")] = 0,
        settings: DetectorSettings = FROM_POLICY_OPTIONS,
        last: Annotated[int, typer.Option(help="After the policy.")] = 0,
    ) -> None:
        """Record the settings."""
        seen.append(settings)

    @demo.command()
    def other() -> None:
        """A second command, so that ``run`` is a subcommand."""

    return demo


def test_detection_policy_options_make_the_settings_where_settings_stood() -> None:
    seen: list[DetectorSettings] = []
    demo = _policy_app(seen)
    res = runner.invoke(
        demo, ["run", "--min-duration", "2", "--cooldown", "3", "--allow-non-causal"], env=WIDE
    )
    assert res.exit_code == 0, res.output
    (settings,) = seen
    assert settings.post == PostProcessing(min_duration=2, cooldown=3, incident_gap=0)
    assert settings.strict is False and settings.isolation == "worker"
    runner.invoke(demo, ["run", "--incident-gap", "4"], env=WIDE)
    assert seen[1].post.incident_gap == 4 and seen[1].strict is True
    shown = runner.invoke(demo, ["run", "--help"], env=WIDE).output
    flags = ["--first", "--min-duration", "--cooldown", "--incident-gap", "--allow-non-causal"]
    assert [shown.index(f) for f in [*flags, "--last"]] == sorted(
        shown.index(f) for f in [*flags, "--last"]
    )
    assert "--strict" not in shown  # hidden, still accepted
    assert runner.invoke(demo, ["run", "--strict"], env=WIDE).exit_code == 0
    assert runner.invoke(demo, ["run", "--min-duration", "0"], env=WIDE).exit_code == 2
