"""Options that several commands share, each defined once: the same flag, help text and checks.

Every ``...Option`` name is an ``Annotated`` type for a command's parameter; the default stays in
the command's signature. Typer evaluates a command's annotations in its own module, so a module
imports these names at module level.

A flag that several commands take with a help of their own (``--out`` is a PNG file for one, a
rule-set folder for another) is a :class:`SharedFlag` instead: the flag and its checks stand here
once, the command gives the help, as ``Annotated[Path | None, OUT("PNG file to write.")]``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.models import OptionInfo

from argos.data.catalog import DATA_DIR_ENV
from argos.online.detector import DetectorSettings, Isolation
from argos.online.postprocess import PostProcessing

_R = TypeVar("_R")
_PARAMETER = inspect.Parameter.POSITIONAL_OR_KEYWORD

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


class SharedFlag:
    """A flag several commands take, each with its own help (and, where they differ, checks)."""

    def __init__(self, flag: str, **checks: Any) -> None:
        self.flag = flag
        self.checks = checks

    def __call__(self, help: str, **checks: Any) -> OptionInfo:
        """The flag's typer option, with the command's help."""
        option: OptionInfo = typer.Option(self.flag, help=help, **{**self.checks, **checks})
        return option


DATASET = SharedFlag("--dataset")
"""The dataset a command reads: a catalogue name or a PATH."""
SERIES = SharedFlag("--series")
"""One series: by its id in a dataset, or the name given to input without a series column."""
PARTITION = SharedFlag("--partition")
"""One partition of a dataset (e.g. Yahoo's A1)."""
TRAIN_FRACTION = SharedFlag("--train-fraction")
"""The train share of a generic dataset's chronological split (official splits are kept)."""
MAX_SERIES = SharedFlag("--max-series")
"""How many series a command looks at or draws."""
OUT = SharedFlag("--out")
"""Where a command writes: a file or a folder, as its help says."""
REPORT = SharedFlag("--report")
"""Also write the HTML report of what the command wrote."""
JSON = SharedFlag("--json")
"""Machine-readable output (``JsonTableOption`` where it replaces a table)."""
WORKERS = SharedFlag("--workers", min=1)
"""Worker processes (or rule workers)."""
TRIALS = SharedFlag("--trials", min=1)
"""A repeat or trial count."""
DELAY = SharedFlag("--delay", min=0)
"""k of the k-delay metric."""
SCHEDULER = SharedFlag("--scheduler")
"""Run a command's units or tasks on Dask (docs/scale-out.md)."""

JsonTableOption = Annotated[bool, JSON("Print JSON instead of a table.")]
"""Machine-readable output of the ``datasets``, ``rules`` and ``score`` commands."""

_DETECTION_POLICY = (
    inspect.Parameter("min_duration", _PARAMETER, default=1, annotation=MinDurationOption),
    inspect.Parameter("cooldown", _PARAMETER, default=0, annotation=CooldownOption),
    inspect.Parameter("incident_gap", _PARAMETER, default=0, annotation=IncidentGapOption),
    inspect.Parameter(
        "allow_non_causal", _PARAMETER, default=False, annotation=AllowNonCausalOption
    ),
    inspect.Parameter("strict", _PARAMETER, default=True, annotation=StrictOption),
)


FROM_POLICY_OPTIONS = DetectorSettings()
"""The default that marks a command's ``settings`` parameter as :func:`with_detection_policy`'s
(the wrapper always passes the value the options make)."""


def with_detection_policy(command: Callable[..., _R]) -> Callable[..., _R]:
    """Give a command the online detector's post-processing and stream-exactness options
    (``--min-duration``, ``--cooldown``, ``--incident-gap``, ``--allow-non-causal``, the hidden
    ``--strict``) where its ``settings`` parameter stands, and hand it the
    :class:`~argos.online.detector.DetectorSettings` they make (``post`` and ``strict`` set, the
    rest at their defaults for the command to replace). ``detect`` and ``serve`` take them.

    Typer reads a command's parameters from its signature: the wrapper's shows the options in
    place of ``settings`` (so ``--help`` lists them there), the command's own annotations
    evaluated in the command's module.
    """
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("settings")
    injected = [p.name for p in _DETECTION_POLICY]

    @functools.wraps(command)
    def run(**kwargs: Any) -> _R:
        min_duration, cooldown, incident_gap, allow_non_causal, _ = map(kwargs.pop, injected)
        post = PostProcessing(
            min_duration=min_duration, cooldown=cooldown, incident_gap=incident_gap
        )
        return command(settings=DetectorSettings(post=post, strict=not allow_non_causal), **kwargs)

    shown = signature.replace(parameters=[*params[:at], *_DETECTION_POLICY, *params[at + 1 :]])
    run.__signature__ = shown  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in shown.parameters.values()}
    return run


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
