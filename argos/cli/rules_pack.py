"""``argos rules pack``: make rule files an operator wrote or edited into a deployable rule set.

``argos detect`` and ``argos serve`` load only rule-set folders whose ``manifest.json`` pins every
rule's SHA-256, and refuse a rule edited after the pin. ``pack`` is the one way to make that pin
for hand-written or edited rules, and it pins only rules that passed what training asks of
generated ones:

1. per rule, :func:`argos.cli.rules.check_rule_file`: the static gate, a sandboxed run on every
   series of a dataset (``demo`` by default) and the causality check;
2. the whole set opened by the online detector as ``argos detect`` opens it
   (:func:`argos.cli.deployment.deployment_refusals`): its stream-exactness check must pass for
   every rule (streamed labels equal batch labels);
3. only then the folder at ``--out`` is written (:func:`argos.rules.artifacts.write_ruleset`).

Re-pack (``--from DIR``): the rules are DIR's ``.py`` files as they are now (edited in place,
added, deleted), plus any RULE.py given (replacing the rule of the same id). The new manifest keeps
DIR's name, training data, generator and combination, drops the metrics when a rule changed (they
were measured on the old rules) and appends a :class:`~argos.rules.artifacts.HistoryEntry` to the
history: who (``--reviewer`` or the OS user), when (UTC), the note, and per rule the old and new
SHA-256 with a short diff summary. The old text of a rule edited in place is gone; its entry says
so and keeps the old hash.
"""

from __future__ import annotations

import difflib
import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from argos.rules.artifacts import (
    MANIFEST,
    HistoryEntry,
    Manifest,
    RuleChange,
    RuleSource,
    sha256_text,
)
from argos.rules.contract import RuleContractError, check_rule


class PackError(ValueError):
    """The inputs of a pack are unusable (no rules, a bad folder, clashing ids)."""


@dataclass(frozen=True)
class PackedRule:
    """One rule to pack: its id (the file's stem), where it was read and its text."""

    id: str
    path: Path
    code: str


@dataclass
class PackPlan:
    """What a pack will write: the rules, the base manifest (re-pack) and the changes."""

    rules: list[PackedRule]
    base: Manifest | None
    changes: list[RuleChange]


def _rule_files(paths: list[Path]) -> list[PackedRule]:
    out: dict[str, PackedRule] = {}
    for p in paths:
        if not p.is_file():
            raise PackError(f"no such rule file: {p}")
        if p.stem in out:
            raise PackError(f"two rule files named {p.stem}.py: {out[p.stem].path} and {p}")
        out[p.stem] = PackedRule(p.stem, p, p.read_text(encoding="utf-8"))
    return list(out.values())


def _read_manifest(folder: Path) -> Manifest:
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise PackError(f"{folder}: no {MANIFEST} (is this a rule-set folder?)")
    try:
        return Manifest.model_validate_json(mpath.read_bytes())
    except ValidationError as exc:
        raise PackError(f"{mpath}: invalid manifest: {exc}") from None


def diff_summary(old: str | None, new: str | None) -> str:
    """``+A -B lines`` between two texts (``None`` = not available)."""
    if old is None or new is None:
        return ""
    added = removed = 0
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"+{added} -{removed} lines"


def _param_changes(pinned: Mapping[str, Any], code: str) -> str:
    """``params a: 1 -> 2, b: 3 -> (gone)`` between the manifest's params and the file's PARAMS."""
    try:
        now: Mapping[str, Any] = check_rule(code, max_bytes=10**7).params
    except RuleContractError:
        return ""  # the checks report the broken rule
    moved = [
        f"{k}: {pinned.get(k, '(new)')} -> {now.get(k, '(gone)')}"
        for k in sorted(set(pinned) | set(now))
        if pinned.get(k) != now.get(k)
    ]
    return "params " + ", ".join(moved) if moved else ""


def plan_pack(rule_files: list[Path], from_dir: Path | None) -> PackPlan:
    """Collect the rules to pack and what changed against ``from_dir``'s manifest (if any)."""
    given = _rule_files(rule_files)
    if from_dir is None:
        if not given:
            raise PackError("give RULE.py files to pack, or --from DIR to re-pack a rule set")
        first = [
            RuleChange(
                rule=r.id,
                change="added",
                new_sha256=sha256_text(r.code),
                diff=f"+{len(r.code.splitlines())} lines",
            )
            for r in given
        ]
        return PackPlan(given, None, first)
    base = _read_manifest(from_dir)
    listed = {e.id: e for e in base.rules}
    current: dict[str, PackedRule] = {}
    old_code: dict[str, str | None] = {}
    for pinned in base.rules:
        path = from_dir / pinned.file
        if path.is_file():
            code = path.read_text(encoding="utf-8")
            current[pinned.id] = PackedRule(pinned.id, path, code)
            # The pinned text is known only while the file still matches its hash.
            old_code[pinned.id] = code if sha256_text(code) == pinned.sha256 else None
        else:
            old_code[pinned.id] = None
    listed_files = {(from_dir / e.file).resolve() for e in base.rules}
    for path in sorted(from_dir.glob("*.py")):
        if path.resolve() not in listed_files:
            current[path.stem] = PackedRule(path.stem, path, path.read_text(encoding="utf-8"))
    for r in given:
        current[r.id] = r
    if not current:
        raise PackError(f"{from_dir}: no rule files left to pack")
    changes: list[RuleChange] = []
    for rid, rule in current.items():
        new_sha = sha256_text(rule.code)
        entry = listed.get(rid)
        if entry is None:
            n = len(rule.code.splitlines())
            changes.append(
                RuleChange(rule=rid, change="added", new_sha256=new_sha, diff=f"+{n} lines")
            )
        elif entry.sha256 == new_sha:
            changes.append(
                RuleChange(rule=rid, change="unchanged", old_sha256=new_sha, new_sha256=new_sha)
            )
        else:
            before = old_code.get(rid)
            text = (
                diff_summary(before, rule.code)
                if before is not None
                else "edited in place: the old text is not kept (see old_sha256)"
            )
            moved = _param_changes(entry.params, rule.code)
            diff = "; ".join(x for x in (text, moved) if x)
            changes.append(
                RuleChange(
                    rule=rid,
                    change="edited",
                    old_sha256=entry.sha256,
                    new_sha256=new_sha,
                    diff=diff,
                )
            )
    for rid, entry in listed.items():
        if rid not in current:
            changes.append(RuleChange(rule=rid, change="removed", old_sha256=entry.sha256))
    return PackPlan(list(current.values()), base, changes)


def manifest_fields(plan: PackPlan, *, who: str, note: str, name: str | None) -> dict[str, Any]:
    """The manifest fields of the packed set, with the new history entry appended."""
    entry = HistoryEntry(
        who=who,
        when=datetime.now(UTC).replace(microsecond=0).isoformat(),
        note=note,
        previous_id=None if plan.base is None else plan.base.id,
        changes=plan.changes,
    )
    if plan.base is None:
        return {"name": name or "", "history": [entry]}
    keep = plan.base.model_dump(
        mode="json", exclude={"rules", "id", "created", "argos_version", "history"}
    )
    if any(c.change != "unchanged" for c in plan.changes):
        keep.pop("metrics", None)  # measured on the rules before the edit
    if name is not None:
        keep["name"] = name
    return {**keep, "history": [*plan.base.history, entry]}


def rule_sources(plan: PackPlan) -> list[RuleSource]:
    """What to write: an unchanged rule keeps its manifest params and status; a new or edited
    rule runs with the ``PARAMS`` its file states (what the operator reads is what runs)."""
    listed = {} if plan.base is None else {e.id: e for e in plan.base.rules}
    same = {c.rule for c in plan.changes if c.change == "unchanged"}
    out: list[RuleSource] = []
    for r in plan.rules:
        entry = listed.get(r.id)
        if entry is not None and r.id in same:
            out.append(RuleSource(r.id, r.code, entry.params, entry.status))
        else:
            out.append(RuleSource(r.id, r.code))
    return out


def default_reviewer() -> str:
    """The OS user running the pack (``unknown`` when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
