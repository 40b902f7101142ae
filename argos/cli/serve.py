"""``argos serve``: the detection service (FastAPI + uvicorn) over a rule-set folder or a folder of
rule sets (a training run folder: each series served by its own set)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from argos.cli.options import (
    CooldownOption,
    DefaultRulesOption,
    IncidentGapOption,
    MinDurationOption,
    RulesFolderOption,
    StrictOption,
)
from argos.online.postprocess import PostProcessing
from argos.online.service import TOKEN_ENV, ServiceConfig, check_bind, create_app
from argos.rules.artifacts import RuleSetError
from argos.sandbox.workers import RuleWorkerError

TrustedOption = Annotated[
    bool,
    typer.Option(
        "--trusted-in-process",
        help="Run rules in the server process, without isolation (reviewed rules only).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``argos serve``."""

    @app.command()
    def serve(
        rules: RulesFolderOption,
        default_rules: DefaultRulesOption = None,
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8080,
        token: Annotated[
            str | None,
            typer.Option(help=f"Bearer token required on every API call (or {TOKEN_ENV})."),
        ] = None,
        workers: Annotated[int, typer.Option(min=1, help="Isolated rule workers.")] = 1,
        max_body_bytes: Annotated[int, typer.Option(min=1024, help="Request body limit.")] = (
            4 * 1024 * 1024
        ),
        min_duration: MinDurationOption = 1,
        cooldown: CooldownOption = 0,
        incident_gap: IncidentGapOption = 0,
        strict: StrictOption = False,
        trusted: TrustedOption = False,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ) -> None:
        """Serve the detection API: /v1/detect, /v1/streams/{series}/points, /metrics, /docs."""
        import uvicorn

        token = token or os.environ.get(TOKEN_ENV) or None
        try:
            check_bind(host, token)
        except ValueError as exc:
            typer.echo(f"argos serve: {exc}", err=True)
            raise typer.Exit(2) from None
        config = ServiceConfig(
            rules=rules,
            default_rules=default_rules,
            token=token,
            workers=workers,
            max_body_bytes=max_body_bytes,
            isolation="inprocess" if trusted else "worker",
            post=PostProcessing(
                min_duration=min_duration, cooldown=cooldown, incident_gap=incident_gap
            ),
            strict=strict,
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
        uvicorn.run(api, host=host, port=port, log_level=log_level, access_log=False)
