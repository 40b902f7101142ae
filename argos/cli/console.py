"""The consoles the commands print tables and messages on, and the help texts' tidying.

Width: ``COLUMNS`` when it is set (Rich reads it), the terminal's width on a terminal, and
:data:`PIPE_WIDTH` when the output goes to a pipe or a file, so that piped lines do not wrap
mid-phrase at Rich's default of 80 columns.

Help: Typer renders help texts as Rich markup (``[llm]`` vanished) and shows a type label for
every parameter (``<bool>`` on flags, ``{truth}`` for arguments). :func:`tidy_help` makes the help
of a command tree read as written: markup escaped, flags without a type, options with a
click-style metavar (``TEXT``, ``INTEGER``, ``PATH``), arguments named in capitals.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

PIPE_WIDTH = 160
"""Columns of output that goes to a pipe or a file (no terminal, no ``COLUMNS``)."""


def usage_error(message: str, *, command: str = "") -> typer.Exit:
    """Say ``message`` on stderr, after ``command: `` (or ``error: ``), and return the exit with
    status 2 for the caller to raise."""
    typer.echo(f"{command or 'error'}: {message}", err=True)
    return typer.Exit(2)


def output_console(*, stderr: bool = False) -> Console:
    """A console as wide as ``COLUMNS``, the terminal, or :data:`PIPE_WIDTH` when piped."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(stderr=stderr, width=PIPE_WIDTH)


_METAVARS = {"int": "INTEGER", "int range": "INTEGER", "float range": "FLOAT", "str": "TEXT"}


def _metavar(label: str) -> str:
    """A click-style metavar for Typer's type label (``<int range>`` -> ``INTEGER``)."""
    label = label.strip("<>")
    if "|" in label:
        return f"[{label}]"
    return _METAVARS.get(label, label.upper())


def _no_type(ctx: Any) -> None:
    return None


def _tidy_param(param: Any) -> Any:
    """Typer's parameters are duck-typed here: Typer ships its own copy of click's classes."""
    if getattr(param, "_argos_tidy", False):
        return param
    param._argos_tidy = True
    if getattr(param, "help", None):
        param.help = escape(param.help)
    if param.param_type_name == "argument":
        param.metavar = param.metavar or (param.name or "").upper()
        usage = (param.metavar if param.required else f"[{param.metavar}]") + (
            "..." if param.nargs != 1 else ""
        )
        param._usage_display_name = lambda: usage
        param.display_type_rich = _no_type
    elif getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.display_type_rich = _no_type
    elif param.metavar is None and hasattr(param, "display_type"):
        param.metavar = _metavar(param.display_type(None))
    return param


def tidy_help(command: Any) -> Any:
    """Tidy the help of ``command`` and, as they are resolved, of its subcommands (in place)."""
    if getattr(command, "_argos_tidy", False):
        return command
    command._argos_tidy = True
    if command.help:
        command.help = escape(command.help)
    get_params = command.get_params

    def tidy_params(ctx: Any) -> list[Any]:
        return [_tidy_param(p) for p in get_params(ctx)]

    command.get_params = tidy_params
    if hasattr(command, "get_command"):
        get_command = command.get_command

        def tidy_command(ctx: Any, name: str) -> Any:
            sub = get_command(ctx, name)
            return None if sub is None else tidy_help(sub)

        command.get_command = tidy_command
    return command
