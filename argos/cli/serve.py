"""``argos serve``: the detection service (FastAPI + uvicorn) over a rule-set folder or a folder of
rule sets (a training run folder: each series served by its own set)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from argos.cli.options import (
    FROM_POLICY_OPTIONS,
    WORKERS,
    DefaultRulesOption,
    IsolationChoice,
    IsolationOption,
    RulesFolderOption,
    rule_isolation,
    with_detection_policy,
)
from argos.online.detector import DetectorSettings
from argos.online.server import ServerLimits, run_server
from argos.online.service import TOKEN_ENV, ServiceConfig, check_bind, create_app, read_token
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError

TrustedOption = Annotated[
    bool,
    typer.Option(
        "--trusted-in-process",
        help="Run rules in the server process, without isolation (reviewed rules only).",
    ),
]


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`OSError` saying so when ``host:port`` cannot be bound (in use, or not an
    address of this machine), before the rule workers start; uvicorn would fail only after
    "Application startup complete". Binds as uvicorn does (``SO_REUSEADDR``); port 0 is free."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot bind {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    f"port {port} on {host} is already in use (another argos serve?): stop it or "
                    "choose another with --port"
                ) from None
            raise OSError(f"cannot bind {host}:{port}: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    """Add ``argos serve``."""

    @app.command()
    @with_detection_policy
    def serve(
        rules: RulesFolderOption,
        default_rules: DefaultRulesOption = None,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8080,
        token_file: Annotated[
            Path | None,
            typer.Option(
                "--token-file",
                help=(
                    "File whose first line is the bearer token required on every API call "
                    f"(else the {TOKEN_ENV} environment variable)."
                ),
            ),
        ] = None,
        token: Annotated[
            str | None,
            typer.Option(
                help=(
                    "Bearer token on the command line: visible to every local user in `ps`; "
                    f"prefer --token-file or {TOKEN_ENV}."
                )
            ),
        ] = None,
        workers: Annotated[int, WORKERS("Isolated rule workers.")] = 1,
        max_body_bytes: Annotated[int, typer.Option(min=1024, help="Request body limit.")] = (
            4 * 1024 * 1024
        ),
        body_seconds: Annotated[
            float, typer.Option(min=0.1, help="Seconds a client gets to send a body (408).")
        ] = 30.0,
        header_seconds: Annotated[
            float,
            typer.Option(min=0.1, help="Seconds a connection gets to send a request head."),
        ] = 10.0,
        max_connections: Annotated[
            int, typer.Option(min=1, help="Open connections beyond this are closed at once.")
        ] = 1000,
        settings: DetectorSettings = FROM_POLICY_OPTIONS,
        trusted: TrustedOption = False,
        isolation: IsolationOption = IsolationChoice.auto,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ) -> None:
        """Serve the detection API: /v1/detect, /v1/streams/{series}/points, /metrics, /docs."""
        if token:
            typer.echo(
                f"argos serve: warning: --token shows in `ps`; use --token-file or {TOKEN_ENV}",
                err=True,
            )
        try:
            token = token or read_token(token_file) or None
            check_bind(host, token)
        except ValueError as exc:
            typer.echo(f"argos serve: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            check_port_free(host, port)
        except OSError as exc:
            typer.echo(f"argos serve: {exc}", err=True)
            raise typer.Exit(2) from None
        config = ServiceConfig(
            rules=rules,
            default_rules=default_rules,
            token=token,
            workers=workers,
            max_body_bytes=max_body_bytes,
            body_seconds=body_seconds,
            isolation=rule_isolation(isolation, trusted, "serve"),
            post=settings.post,
            strict=settings.strict,
        )
        try:
            api = create_app(config)
        except (RuleSetError, RuleWorkerError) as exc:
            typer.echo(f"argos serve: {exc}", err=True)
            raise typer.Exit(2) from None
        fleet = api.state.fleet
        if fleet.single:
            det = fleet.detector(fleet.keys[0])
            what = (
                f"rule set {det.ruleset.name} ({len(det.rule_ids)} rules), {det.engine.isolation}"
            )
        else:
            what = f"{len(fleet.keys)} rule sets (opened as their series arrive)"
        typer.echo(
            f"argos serve: {what}; auth {'on' if token else 'off (loopback only)'}; "
            f"http://{host}:{port}/docs",
            err=True,
        )
        limits = ServerLimits(header_seconds=header_seconds, max_connections=max_connections)
        run_server(api, host, port, log_level=log_level, limits=limits)
