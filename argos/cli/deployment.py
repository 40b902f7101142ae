"""The online detector's load-time check, asked before a rule set is written.

``argos detect`` and ``argos serve`` open a rule set with the stream-exactness check on (a rule
whose streamed labels differ from its batch labels is refused unless ``--allow-non-causal``).
Training and ``argos rules pack`` ask the same check first, so nothing they write is refused at
deployment: :func:`deployment_refusals` writes the rules to a staging folder and opens it in
:class:`~argos.online.detector.Detector` exactly as ``argos detect`` does, without the refusal, to
learn which rules it would refuse and why.

It lives in the CLI because the CLI is the one layer that sees both the training driver and the
online detector; it is handed down as a :class:`argos.training.generator.DeploymentCheck`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from argos.rules.artifacts import RuleSetError, RuleSource, write_ruleset


def deployment_refusals(
    rules: Sequence[RuleSource],
    *,
    trusted: bool = False,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Which of ``rules`` the online detector would refuse, rule id -> why (empty: none).

    ``trusted`` rules (template-rendered code) run in-process for the check, others in the
    detector's isolated workers. When the set as a whole fails to open (a rule that does not
    load), each rule is checked alone so that only the culprits are named.
    """
    if not rules:
        return {}
    from argos.online.detector import Detector, DetectorSettings

    isolation: Literal["worker", "inprocess"] = "inprocess" if trusted else "worker"
    staging = Path(tempfile.mkdtemp(prefix="argos-deploy-check-"))
    try:
        write_ruleset(staging / "set", rules, fields)
        with Detector.open(
            staging / "set", DetectorSettings(isolation=isolation, strict=False)
        ) as det:
            return {rid: e.detail for rid, e in det.exactness.items() if not e.exact}
    except RuleSetError as exc:
        if len(rules) == 1:
            return {rules[0].id: str(exc)}
        out: dict[str, str] = {}
        for rule in rules:
            out.update(deployment_refusals([rule], trusted=trusted, fields=fields))
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)
