"""The ``argos`` command line. Each sub-module registers its own commands with :func:`register`."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="argos",
    help="Agentic anomaly detection for cloud metrics: train readable rules, evaluate, detect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
