"""The ``argos`` command line. Each sub-module registers its own commands with :func:`register`."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from argos._version import __version__
from argos.cli.console import tidy_help


class ArgosGroup(TyperGroup):
    """The root command; its help and every subcommand's read as written (:func:`tidy_help`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_help(self)


app = typer.Typer(
    name="argos",
    cls=ArgosGroup,
    help="Agentic anomaly detection for cloud metrics: train readable rules, evaluate, detect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"argos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Agentic anomaly detection for cloud metrics: train readable rules, evaluate, detect."""


# One module per command group; each defines ``register(app: typer.Typer) -> None``.
_COMMAND_MODULES = (
    "demo",
    "datasets",
    "score",
    "evaluate",
    "rules",
    "train",
    "detect",
    "serve",
    "report",
    "stream",
    "export",
)

for _name in _COMMAND_MODULES:
    _module = importlib.import_module(f"argos.cli.{_name}")
    _module.register(app)


def main() -> None:
    app()
