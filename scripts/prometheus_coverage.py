"""Print the share of the committed rules (rules/kpi, rules/yahoo, rules/nab) that
`argos export prometheus` translates exactly, and why the others are not (docs/prometheus.md
states these numbers).

Usage: python scripts/prometheus_coverage.py [--json] [COLLECTION_FOLDER ...]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from argos.export.prometheus import export_ruleset, run_units

ROOT = Path(__file__).resolve().parent.parent


def coverage(folder: Path) -> dict[str, object]:
    """Sets, rules, exported rules and the reasons of the others, for one collection folder."""
    exports = [export_ruleset(d, "metric", 60_000) for d in run_units(folder)]
    reasons = Counter(o.reason.split(":")[0] for e in exports for o in e.outcomes if not o.exported)
    rules = sum(e.total for e in exports)
    exported = sum(e.exported for e in exports)
    return {
        "collection": str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder),
        "sets": len(exports),
        "sets_fully_exported": sum(e.exported == e.total for e in exports),
        "rules": rules,
        "exported": exported,
        "share": exported / rules if rules else 0.0,
        "not_exported": dict(reasons.most_common()),
    }


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    folders = [Path(a) for a in argv if a != "--json"] or [
        ROOT / "rules" / c for c in ("kpi", "yahoo", "nab")
    ]
    rows = [coverage(f.resolve()) for f in folders]
    total_rules = sum(int(str(r["rules"])) for r in rows)
    total_exported = sum(int(str(r["exported"])) for r in rows)
    if as_json:
        print(json.dumps({"collections": rows, "rules": total_rules, "exported": total_exported}))
        return 0
    print(f"{'collection':<14}{'sets':>6}{'full':>6}{'rules':>7}{'exact':>7}{'share':>8}")
    for r in rows:
        print(
            f"{r['collection']!s:<14}{r['sets']:>6}{r['sets_fully_exported']:>6}{r['rules']:>7}"
            f"{r['exported']:>7}{float(str(r['share'])):>8.1%}"
        )
    share = total_exported / total_rules if total_rules else 0.0
    print(f"{'all':<14}{'':>6}{'':>6}{total_rules:>7}{total_exported:>7}{share:>8.1%}")
    for r in rows:
        for reason, n in dict(r["not_exported"]).items():  # type: ignore[call-overload]
            print(f"  {r['collection']}: {n} not exported: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
