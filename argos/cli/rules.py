"""``argos rules``: check a rule file (gate, sandbox, output, causality); verify rule sets; pack
rule files into a deployable rule set (:mod:`argos.cli.rules_pack`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from argos.cli.console import output_console
from argos.cli.deployment import deployment_refusals
from argos.cli.options import DATASET, MAX_SERIES, OUT, BenchmarkDataDirOption, JsonTableOption
from argos.cli.rules_pack import (
    PackError,
    default_reviewer,
    manifest_fields,
    plan_pack,
    rule_sources,
)
from argos.data import catalog
from argos.data.series import DataError
from argos.rules.artifacts import Manifest, RuleSetError, load_ruleset, write_ruleset
from argos.rules.contract import RuleContractError, check_rule, decode_rule_source
from argos.sandbox.pool import (
    RuleInput,
    RunResult,
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    Status,
    check_causality,
)


def check_rule_file(
    path: Path,
    dataset: str = "demo",
    *,
    data_dir: Path | None = None,
    params: dict[str, Any] | None = None,
    max_series: int | None = None,
    n_prefixes: int = 8,
    limits: SandboxLimits | None = None,
) -> dict[str, Any]:
    """Static gate -> causality check on the first series -> sandbox run on every series of
    ``dataset``.

    Returns ``{"status", "detail", "traceback", "runtime_ms", ...}``; ``status`` is a
    :class:`~argos.sandbox.pool.Status` value. The dataset is loaded here and only values and
    timestamps reach the sandbox. Raises ``DataError`` / ``OSError`` for a missing dataset or file.
    """
    t0 = time.perf_counter()
    report: dict[str, Any] = {"rule": str(path), "dataset": dataset}
    try:
        code = decode_rule_source(path.read_bytes())
        check_rule(code)
    except RuleContractError as exc:
        report.update(
            status=exc.status,
            detail=str(exc),
            issues=[str(i) for i in exc.issues],
            traceback="",
            runtime_ms=0.0,
        )
        return report
    ds = catalog.load_dataset(dataset, data_dir=data_dir)
    series = list(ds.series)[: max_series or None]
    inputs: list[RuleInput] = [(s.values, s.timestamps) for s in series]
    with Sandbox(limits=limits) as sb:
        report["layers"] = sb.host.describe()
        # Causality first, in fresh children that have seen no longer input, on prefixes from
        # one point up whatever LOOKBACK says; then the whole dataset.
        causal = None
        if series:
            first = series[0]
            causal = check_causality(
                sb, code, params, first.values, first.timestamps, n_prefixes=n_prefixes
            )
            if not causal.ok:
                causal.detail = f"series {first.id!r}: {causal.detail}"
        res = sb.run(code, inputs, params)
        if res.ok and causal is not None and not causal.ok:
            res = _with_outputs(causal, res)
    report.update(res.to_json())
    report["series"] = len(series)
    report["points"] = int(sum(len(s) for s in series))
    if res.outputs is not None:
        report["flagged"] = int(sum(int(o.sum()) for o in res.outputs))
    report["total_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return report


def _with_outputs(causal: RunResult, full: RunResult) -> RunResult:
    return RunResult(
        causal.status, causal.detail, causal.traceback, None, full.runtime_ms, full.wall_ms
    )


def register(app: typer.Typer) -> None:
    """Add the ``rules`` command group (``check``, ``verify``, ``pack``) to ``app``."""
    group = typer.Typer(
        help="Check rule files, verify exported rule sets, pack rule files into one.",
        no_args_is_help=True,
    )

    @group.command("check")
    def check(
        rule: Annotated[Path, typer.Argument(help="The rule file (a Python module).")],
        dataset: Annotated[str, DATASET("Dataset name or path.")] = "demo",
        data_dir: BenchmarkDataDirOption = None,
        params: Annotated[
            str | None, typer.Option("--params", help="JSON object merged over PARAMS.")
        ] = None,
        max_series: Annotated[int | None, MAX_SERIES("Use only the first N series.")] = None,
        cpu_seconds: Annotated[
            float,
            typer.Option(
                "--cpu-seconds",
                min=1,
                help="CPU seconds the rule may use on the whole dataset (large datasets such as "
                "kpi need more than the default).",
            ),
        ] = SandboxLimits.cpu_seconds,
        as_json: JsonTableOption = False,
    ) -> None:
        """Run RULE through the static gate, the sandbox and the output/causality checks.

        Exit code 0 only when the status is ok.
        """
        console = output_console()
        if not rule.is_file():
            console.print(f"[red]error:[/red] no such rule file: {rule}")
            raise typer.Exit(2)
        try:
            extra = json.loads(params) if params else None
            if extra is not None and not isinstance(extra, dict):
                raise ValueError("--params must be a JSON object")
            limits = SandboxLimits(
                cpu_seconds=cpu_seconds,
                wall_seconds=max(SandboxLimits.wall_seconds, 2 * cpu_seconds),
            )
            report = check_rule_file(
                rule, dataset, data_dir=data_dir, params=extra, max_series=max_series, limits=limits
            )
        except (DataError, ValueError, SandboxUnavailable) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        if report["status"] in (Status.CPU_LIMIT, Status.TIMEOUT):
            report["detail"] = (
                f"{report['detail']} (raise it with --cpu-seconds N, now {cpu_seconds:g}, or "
                "check fewer series with --max-series N)"
            )
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            _print_report(console, report)
        raise typer.Exit(0 if report["status"] == Status.OK else 1)

    @group.command("verify")
    def verify(
        folder: Annotated[Path, typer.Argument(help="A rule-set folder with manifest.json.")],
        as_json: JsonTableOption = False,
    ) -> None:
        """Verify a rule-set folder: manifest schema, every rule's SHA-256, no unknown files."""
        console = output_console()
        try:
            rs = load_ruleset(folder)
        except RuleSetError as exc:
            if as_json:
                typer.echo(json.dumps({"ok": False, "error": str(exc)}))
            else:
                console.print(f"[red]refused:[/red] {exc}")
            raise typer.Exit(1) from None
        m = rs.manifest
        if as_json:
            typer.echo(json.dumps({"ok": True, "manifest": m.model_dump(mode="json")}, indent=2))
            return
        table = Table(title=f"{m.name or m.id} ({m.id}) — combination: {m.combination}")
        for col in ("id", "role", "lookback", "params", "sha256"):
            table.add_column(col)
        for r in m.rules:
            table.add_row(r.id, r.role, str(r.lookback), json.dumps(r.params), r.sha256[:12])
        console.print(table)
        console.print("[green]verified[/green]: every hash matches, no unknown files")

    @group.command("pack")
    def pack(
        rules: Annotated[
            list[Path] | None,
            typer.Argument(help="Rule files (one Python module each; the id is the file name)."),
        ] = None,
        out: Annotated[
            Path | None, OUT("The rule-set folder to write (default: --from, in place).")
        ] = None,
        from_dir: Annotated[
            Path | None,
            typer.Option(
                "--from",
                help="Re-pack this rule set: its .py files as they are now (edited, added, "
                "deleted), plus the RULE files given.",
            ),
        ] = None,
        reviewer: Annotated[
            str | None,
            typer.Option("--reviewer", help="Who reviewed the rules (default: the OS user)."),
        ] = None,
        note: Annotated[
            str, typer.Option("--note", help="Why: recorded in the manifest's history.")
        ] = "",
        name: Annotated[str | None, typer.Option("--name", help="The rule set's name.")] = None,
        dataset: Annotated[str, DATASET("Dataset the rules are run on.")] = "demo",
        data_dir: BenchmarkDataDirOption = None,
        max_series: Annotated[int | None, MAX_SERIES("Run on the first N series only.")] = None,
        as_json: JsonTableOption = False,
    ) -> None:
        """Pack rule files into a rule-set folder that `argos detect` and `argos serve` load.

        Every rule must pass the static gate, a sandboxed run on every series of --dataset, the
        causality check and the stream-exactness check; then manifest.json pins each rule's
        SHA-256 and its history records who packed what, when. Re-pack an edited rule set after
        review with --from DIR (in place, or into --out).
        """
        console = Console(stderr=as_json)
        target = out if out is not None else from_dir
        if target is None:
            console.print("[red]error:[/red] give --out DIR (or --from DIR to re-pack in place)")
            raise typer.Exit(2)
        in_place = from_dir is not None and target.resolve() == from_dir.resolve()
        if target.exists() and not in_place and (not target.is_dir() or any(target.iterdir())):
            console.print(
                f"[red]error:[/red] {target} is not empty: pack into a new folder, or re-pack "
                f"it in place with --from {target}"
            )
            raise typer.Exit(2)
        try:
            plan = plan_pack(list(rules or []), from_dir)
        except PackError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        checks: dict[str, dict[str, Any]] = {}
        try:
            for rule in plan.rules:
                checks[rule.id] = check_rule_file(
                    rule.path, dataset, data_dir=data_dir, max_series=max_series
                )
        except (DataError, SandboxUnavailable) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        failed = {rid: r for rid, r in checks.items() if r["status"] != Status.OK}
        fields = manifest_fields(plan, who=reviewer or default_reviewer(), note=note, name=name)
        sources = rule_sources(plan)
        inexact = {} if failed else deployment_refusals(sources, fields=fields)
        report: dict[str, Any] = {
            "ok": not failed and not inexact,
            "out": str(target),
            "rules": [
                {
                    "id": c.rule,
                    "change": c.change,
                    "status": str(checks[c.rule]["status"]) if c.rule in checks else "",
                    "detail": checks[c.rule].get("detail", "") if c.rule in checks else "",
                    "stream_exact": None
                    if failed or c.rule not in checks
                    else c.rule not in inexact,
                }
                for c in plan.changes
            ],
        }
        if inexact:
            report["not_stream_exact"] = inexact
        if report["ok"]:
            mpath = write_ruleset(target, sources, fields)
            report["manifest"] = Manifest.model_validate_json(mpath.read_bytes()).model_dump(
                mode="json"
            )
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            _print_pack(console, report, inexact)
        raise typer.Exit(0 if report["ok"] else 1)

    app.add_typer(group, name="rules")


def _print_pack(console: Console, report: dict[str, Any], inexact: dict[str, str]) -> None:
    table = Table(title=f"argos rules pack -> {report['out']}")
    for col in ("rule", "change", "check", "stream-exact", "detail"):
        table.add_column(col)
    for r in report["rules"]:
        exact = {None: "–", True: "yes", False: "no"}[r["stream_exact"]]
        detail = r["detail"] or inexact.get(r["id"], "")
        table.add_row(r["id"], r["change"], r["status"] or "–", exact, detail)
    console.print(table)
    if "(rule set)" in inexact:
        console.print(f"[red]refused:[/red] {inexact['(rule set)']}")
    if report["ok"]:
        m = report["manifest"]
        console.print(
            f"[green]packed[/green] {len(m['rules'])} rules into {report['out']} "
            f"(rule set {m['id']}; history entry by {m['history'][-1]['who']})"
        )
        console.print(f"deploy: argos detect --rules {report['out']}  (or argos serve --rules)")
    else:
        console.print("[red]not packed[/red]: fix the rules above; nothing was written")


def _print_report(console: Console, report: dict[str, Any]) -> None:
    ok = report["status"] == Status.OK
    colour = "green" if ok else "red"
    table = Table(show_header=False, title=f"argos rules check {report['rule']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", f"[{colour}]{report['status']}[/{colour}]")
    for key in ("detail", "dataset", "series", "points", "flagged", "runtime_ms", "layers"):
        if report.get(key) not in (None, ""):
            table.add_row(key, str(report[key]))
    console.print(table)
    for issue in report.get("issues", []):
        console.print(f"  - {issue}")
    if report.get("traceback"):
        console.print(report["traceback"], markup=False, highlight=False)
