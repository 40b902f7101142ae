"""``argos export prometheus``: a rule set (or a training run's sets) as Prometheus rules.

Writes the rule file (recording rules for the transforms and window statistics, one alerting rule
per translated Argos rule) and, with ``--test-from``, a ``promtool test rules`` file whose expected
alerts are the online detector's labels on that series. Every rule that is not exported is listed
with its reason, and the command says how many of each set's rules were exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from argos.cli.console import usage_error
from argos.cli.options import JSON, OUT
from argos.export.prometheus import (
    ExportError,
    SetExport,
    expected_alerts,
    export_units,
    near_threshold,
    plan_units,
    read_series_csv,
    regular_step,
    rule_file,
    selector_labels,
    unit_test_file,
)
from argos.export.promql import parse_duration
from argos.rules.artifacts import RuleSetError


def _fail(message: str) -> typer.Exit:
    return usage_error(message, command="argos export prometheus")


def _read_selectors(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(f"cannot read --selectors {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise _fail(f"--selectors {path}: expected a JSON object of unit -> selector strings")
    return data


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group (``argos export prometheus``)."""
    group = typer.Typer(
        help="Export trained rule sets to other alerting stacks.", no_args_is_help=True
    )
    app.add_typer(group, name="export")

    @group.command("prometheus")
    def prometheus(
        rules: Annotated[
            Path, typer.Argument(help="A rule-set folder, or a training run folder of sets.")
        ],
        out: Annotated[Path, OUT("Prometheus rule file to write.")],
        selector: Annotated[
            str | None,
            typer.Option("--selector", help="The metric of a single set, e.g. 'up{job=\"api\"}'."),
        ] = None,
        selectors: Annotated[
            Path | None,
            typer.Option(
                "--selectors",
                help="JSON file: unit folder (or its training series) -> selector (run folders).",
            ),
        ] = None,
        step: Annotated[
            str, typer.Option("--step", help="Sampling step of the metric = evaluation interval.")
        ] = "60s",
        test_from: Annotated[
            Path | None,
            typer.Option("--test-from", help="CSV (timestamp,value) for a promtool unit test."),
        ] = None,
        test_out: Annotated[
            Path | None, typer.Option("--test-out", help="promtool test file to write.")
        ] = None,
        as_json: Annotated[bool, JSON("Print the report as JSON.")] = False,
    ) -> None:
        """Translate rules to Prometheus recording and alerting rules, proved by promtool."""
        try:
            step_ms = parse_duration(step)
            units = plan_units(rules, selector, _read_selectors(selectors))
            exports = export_units(units, step_ms)
        except (ExportError, RuleSetError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if (test_from is None) != (test_out is None):
            raise _fail("--test-from and --test-out go together")
        exported = sum(e.exported for e in exports)
        total = sum(e.total for e in exports)
        report = {
            "out": str(out),
            "exported": exported,
            "total": total,
            "rulesets": [
                {
                    "id": e.ruleset_id,
                    "directory": str(e.directory),
                    "selector": e.selector,
                    "exported": e.exported,
                    "total": e.total,
                    "rules": [
                        {"id": o.rule_id, "exported": o.exported, "reason": o.reason}
                        for o in e.outcomes
                    ],
                }
                for e in exports
            ],
        }
        if not as_json:
            for e in exports:
                typer.echo(e.summary(), err=True)
        if exported == 0:
            if as_json:
                typer.echo(json.dumps(report, indent=2))
            typer.echo(f"argos export prometheus: none of the {total} rules translates", err=True)
            raise typer.Exit(1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rule_file(exports), encoding="utf-8")
        if test_from is not None and test_out is not None:
            report["test"] = _write_test(exports, out, test_from, test_out, step_ms)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            typer.echo(
                f"argos export prometheus: exported {exported} of {total} rules "
                f"({len(exports)} rule set(s)) to {out}",
                err=True,
            )


def _write_test(
    exports: list[SetExport], out: Path, test_from: Path, test_out: Path, step_ms: int
) -> dict[str, object]:
    if len(exports) != 1:
        raise _fail("--test-from needs a single rule set")
    export = exports[0]
    try:
        selector_labels(export.selector)
        t, v = read_series_csv(test_from)
    except (ExportError, ValueError, OSError) as exc:
        raise _fail(f"--test-from: {exc}") from None
    if regular_step(t) is None:
        raise _fail(
            f"--test-from {test_from}: timestamps are not evenly spaced; the translation is exact "
            "only on a regular series (one sample per step, no gaps)"
        )
    expected = expected_alerts(export.directory, t, v)
    near = {rid: near_threshold(spec, v) for rid, spec in export.specs.items()}
    for rid, idx in near.items():
        if idx:
            typer.echo(
                f"argos export prometheus: warning: {rid}: {len(idx)} point(s) within rounding "
                f"of the threshold (first at index {idx[0]}); numpy and Prometheus may disagree "
                "there: pick another slice for the test",
                err=True,
            )
    rel = os.path.relpath(out.resolve(), test_out.resolve().parent)
    test_out.parent.mkdir(parents=True, exist_ok=True)
    test_out.write_text(unit_test_file(export, rel, v, expected), encoding="utf-8")
    alerts = {rid: int(expected[rid].sum()) for rid in export.specs}
    typer.echo(
        f"argos export prometheus: wrote {test_out}: {len(v)} points, expected alerts per rule "
        f"{alerts}; run: promtool test rules {test_out}",
        err=True,
    )
    return {"file": str(test_out), "points": len(v), "alerts": alerts}
