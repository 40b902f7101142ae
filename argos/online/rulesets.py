"""Rule sets as the online detector runs them: read from an exported folder and verified.

:func:`load_rules` reads a rule-set folder with :func:`argos.rules.artifacts.load_ruleset`
(manifest, hashes, the static gate), keeps the accepted rules and gives each its stated abnormal
condition (:func:`abnormal_condition`, the ``Abnormal:`` paragraph of its docstring), which the
detector returns with every anomalous point.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from argos.rules.artifacts import Fusion, Role, RuleSetError, load_ruleset
from argos.rules.contract import docstring_conditions
from argos.sandbox.kernel import RuleCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedRule(RuleCode):
    """One verified rule: what an engine runs (id, code, fitted params, lookback), plus its role
    and its stated abnormal condition."""

    condition: str
    description: str = ""
    role: Role = "or"

    def to_code(self) -> RuleCode:
        """What an engine needs to run it."""
        return RuleCode(self.id, self.code, dict(self.params), self.lookback)


@dataclass(frozen=True)
class LoadedRuleSet:
    """A rule set read from a folder (hashes checked), ready to hand to a :class:`Detector`."""

    name: str
    directory: str
    rules: tuple[LoadedRule, ...]
    combination: Literal["or", "fusion"]
    digest: str
    id: str = ""
    external_base: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON description (for ``GET /v1/rulesets`` and logs)."""
        return {
            "id": self.id,
            "name": self.name,
            "directory": self.directory,
            "combination": self.combination,
            "external_base": self.external_base,
            "digest": self.digest,
            "rules": [
                {
                    "id": r.id,
                    "lookback": r.lookback,
                    "role": r.role,
                    "params": dict(r.params),
                    "condition": r.condition,
                }
                for r in self.rules
            ],
        }


MAX_CONDITION_CHARS = 1000
"""Longest stated condition kept per rule (a rule's docstring is rule-controlled text that the
service copies into explanations). Longer text is cut at the last sentence end within the limit
(else at a word, marked with "...")."""


def _bounded(text: str, limit: int = MAX_CONDITION_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 4]
    end = head.rfind(". ")
    if end >= limit // 2:
        return head[: end + 1]
    return head[: head.rfind(" ")].rstrip() + " ..."


def abnormal_condition(code: str) -> str:
    """The rule's stated abnormal condition: its docstring's ``Abnormal:`` statement, wherever it
    stands (:func:`argos.rules.contract.docstring_conditions`), bounded by
    :data:`MAX_CONDITION_CHARS`.

    Falls back to the docstring's first paragraph, or ``""`` when there is no docstring.
    """
    try:
        _title, _normal, abnormal = docstring_conditions(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    if abnormal:
        return _bounded(abnormal)
    try:
        doc = ast.get_docstring(ast.parse(code)) or ""
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    first = doc.strip().split("\n\n")[0]
    return _bounded(" ".join(line.strip() for line in first.splitlines() if line.strip()))


def load_rules(directory: str | Path) -> LoadedRuleSet:
    """Read and verify a rule-set folder with :func:`argos.rules.artifacts.load_ruleset`.

    That refuses a missing or invalid manifest, tampered (hash mismatch), missing or unlisted rule
    files, and rules failing the static gate. Only rules with status ``accepted`` run. A
    ``LOOKBACK`` of 0 (the point itself) is run as 1. The stated condition of each rule is the
    ``Abnormal:`` paragraph of its docstring (else the manifest description).
    """
    d = Path(directory)
    rs = load_ruleset(d)
    manifest = rs.manifest
    rules: list[LoadedRule] = []
    skipped: list[str] = []
    for entry in manifest.rules:
        if entry.status != "accepted":
            skipped.append(f"{entry.id} ({entry.status})")
            continue
        code = rs.codes[entry.id]
        rules.append(
            LoadedRule(
                id=entry.id,
                code=code,
                params=dict(entry.params),
                lookback=max(1, int(entry.lookback)),
                condition=abnormal_condition(code) or _bounded(entry.description),
                description=_bounded(entry.description, 2000),
                role=entry.role,
            )
        )
    if skipped:
        log.info("rule set %s: not running rules that are not accepted: %s", d, skipped)
    if not rules:
        raise RuleSetError(f"{d}: no accepted rules to run (skipped: {', '.join(skipped)})")
    combination: Literal["or", "fusion"] = (
        "fusion" if isinstance(manifest.combination, Fusion) else "or"
    )
    fusion = manifest.combination
    external_base: str | None = None
    if isinstance(fusion, Fusion) and fusion.external_base:
        external_base = fusion.base
    elif combination == "fusion" and sum(r.role == "base" for r in rules) != 1:
        raise RuleSetError(f"{d}: a fusion rule set needs exactly one accepted 'base' rule")
    digest = hashlib.sha256(
        json.dumps(
            [
                [r.id, hashlib.sha256(r.code.encode()).hexdigest(), r.params, r.lookback]
                for r in rules
            ],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:16]
    return LoadedRuleSet(
        name=manifest.name or manifest.id,
        directory=str(d),
        rules=tuple(rules),
        combination=combination,
        digest=digest,
        id=manifest.id,
        external_base=external_base,
    )
