"""Options that several commands share, each defined once: the same flag, help text and checks.

Every name is an ``Annotated`` type for a command's parameter; the default stays in the command's
signature. Typer evaluates a command's annotations in its own module, so a module imports these
names at module level.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from argos.data.catalog import DATA_DIR_ENV
from argos.online.detector import Isolation

BenchmarkDataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help=f"Benchmark data folder (default ${DATA_DIR_ENV})."),
]
"""Where the benchmark datasets are (``eval``, ``report``, ``rules check``)."""

GranularityOption = Annotated[
    str | None,
    typer.Option("--granularity", help="'series' or 'partition' (dataset default)."),
]
"""One rule set per series or per partition (``train``, ``eval``)."""

DatasetNameArgument = Annotated[str, typer.Argument(help="A dataset name (see `list`) or a PATH.")]
"""The dataset a ``datasets`` subcommand is about."""

JsonTableOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
"""Machine-readable output of the ``datasets``, ``rules`` and ``score`` commands."""

RulesFolderOption = Annotated[
    Path,
    typer.Option(
        "--rules",
        help="A rule-set folder (manifest.json + rules), or a folder of rule sets such as a "
        "training run folder: each series is then served by the set whose manifest lists it "
        "(or its partition).",
    ),
]
"""The rule sets that ``detect``, ``serve`` and ``stream consume`` run."""

DefaultRulesOption = Annotated[
    Path | None,
    typer.Option(
        "--default-rules",
        help="Rule-set folder for series that no set of --rules lists (else they are refused).",
    ),
]
"""The fallback rule set of a fleet (``detect``, ``serve``, ``stream consume``)."""

MinDurationOption = Annotated[int, typer.Option(min=1, help="Points the raw label must hold.")]
CooldownOption = Annotated[int, typer.Option(min=0, help="Points without a new alert.")]
IncidentGapOption = Annotated[
    int, typer.Option(min=0, help="Normal points allowed inside one incident.")
]
AllowNonCausalOption = Annotated[
    bool,
    typer.Option(
        "--allow-non-causal",
        help=(
            "Run rule sets with rules that fail the stream-exactness (causality) check anyway; "
            "their online labels can differ from the evaluated ones. Refused by default."
        ),
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        hidden=True,
        help="Kept for scripts written before --allow-non-causal: refusing is now the default.",
    ),
]
"""The online detector's post-processing and stream-exactness policy (``detect``, ``serve``)."""


class IsolationChoice(StrEnum):
    """Where ``detect``, ``serve`` and ``stream consume`` run the rules (``--isolation``)."""

    auto = "auto"
    worker = "worker"


IsolationOption = Annotated[
    IsolationChoice,
    typer.Option(
        "--isolation",
        help=(
            "auto: a rule whose file is byte for byte a builtin template rendering (the builtin "
            "generator's own code) runs in this process, every other rule in its own "
            "locked-down worker process; worker: every rule in its own worker process."
        ),
    ),
]
"""Where the rules run (``detect``, ``serve``, ``stream consume``); with the command's
``--trusted-in-process`` it gives the engine's :data:`~argos.online.detector.Isolation`
(:func:`rule_isolation`)."""


def rule_isolation(isolation: IsolationChoice, trusted_in_process: bool, command: str) -> Isolation:
    """The detector's isolation: ``inprocess`` for ``--trusted-in-process`` (which contradicts
    ``--isolation worker``: a usage error, exit 2), else ``--isolation``."""
    if not trusted_in_process:
        return "worker" if isolation is IsolationChoice.worker else "auto"
    if isolation is IsolationChoice.worker:
        typer.echo(
            f"argos {command}: --trusted-in-process contradicts --isolation worker", err=True
        )
        raise typer.Exit(2)
    return "inprocess"
