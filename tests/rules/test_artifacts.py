"""Rule-set artifacts: idempotent writing, hash-verified loading, refusal of tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argos.rules.artifacts import (
    Fusion,
    Manifest,
    RuleSetError,
    RuleSource,
    load_ruleset,
    sha256_text,
    write_ruleset,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "rules" / "examples"


def _rules() -> list[RuleSource]:
    return [
        RuleSource("zscore", (EXAMPLES / "robust_zscore.py").read_text(), {"k": 6.5}),
        RuleSource("level", (EXAMPLES / "level_shift.py").read_text()),
    ]


FIELDS = {
    "name": "demo rules",
    "training": {"dataset": "demo", "series": ["cpu"], "split": {"train": 0.5, "val": 0.2}},
    "metrics": {"validation": {"f1": 0.8, "precision": 0.9, "recall": None}},
    "generator": {"kind": "llm", "model": "gpt-4o", "prompts": {"generator": "ab12"}},
    "limits": {"cpu_seconds": 10, "wall_seconds": 20},
}


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    mpath = write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    rs = load_ruleset(tmp_path / "rs")
    assert mpath == tmp_path / "rs" / "manifest.json"
    m = rs.manifest
    assert m.schema_version == 1 and m.name == "demo rules" and m.combination == "or"
    assert [r.id for r in m.rules] == ["zscore", "level"]
    z = m.rules[0]
    assert z.file == "zscore.py" and z.sha256 == sha256_text(rs.codes["zscore"])
    assert z.params == {"k": 6.5, "window": 50}  # tuned value merged over PARAMS
    assert z.lookback == 200 and z.description.startswith("Robust z-score")
    assert m.id.startswith("rs-") and len(m.id) == 19
    assert m.training is not None and m.training.dataset == "demo"
    assert m.generator is not None and m.generator.model == "gpt-4o"
    assert m.argos_version and m.created


def test_writing_twice_is_byte_identical(tmp_path: Path) -> None:
    write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    first = {p.name: p.read_bytes() for p in (tmp_path / "rs").iterdir()}
    write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    second = {p.name: p.read_bytes() for p in (tmp_path / "rs").iterdir()}
    assert first == second
    assert sorted(first) == ["level.py", "manifest.json", "zscore.py"]


def test_changed_params_change_id_and_drop_stale_files(tmp_path: Path) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, _rules(), FIELDS)
    old_id = load_ruleset(d).manifest.id
    write_ruleset(d, [RuleSource("zscore", _rules()[0].code, {"k": 3.0})], FIELDS)
    rs = load_ruleset(d)
    assert rs.manifest.id != old_id
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "zscore.py"]


def test_tampered_rule_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, _rules(), FIELDS)
    f = d / "zscore.py"
    f.write_text(f.read_text().replace("k = float", "k = 0.0 * float"))
    with pytest.raises(
        RuleSetError, match=r"rule 'zscore': zscore.py has sha256 .* refusing a tampered"
    ):
        load_ruleset(d)


def test_unknown_and_missing_files_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, _rules(), FIELDS)
    (d / "extra.py").write_text("print('hi')\n")
    with pytest.raises(
        RuleSetError, match=r"unknown rule files not in the manifest: \['extra.py'\]"
    ):
        load_ruleset(d)
    (d / "extra.py").unlink()
    (d / "level.py").unlink()
    with pytest.raises(RuleSetError, match=r"rule 'level': file 'level\.py' is missing"):
        load_ruleset(d)


def test_path_traversal_and_bad_manifest_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "rs"
    write_ruleset(d, _rules(), FIELDS)
    data = json.loads((d / "manifest.json").read_text())
    data["rules"][0]["file"] = "../outside.py"
    (tmp_path / "outside.py").write_text(_rules()[0].code)
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(RuleSetError, match="outside the folder"):
        load_ruleset(d)
    data["rules"][0]["file"] = "zscore.py"
    data["surprise"] = 1
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(RuleSetError, match="invalid manifest"):
        load_ruleset(d)
    with pytest.raises(RuleSetError, match=r"no manifest\.json"):
        load_ruleset(tmp_path / "nowhere")


def test_fusion_assigns_roles_and_validates(tmp_path: Path) -> None:
    fields = {**FIELDS, "combination": {"mode": "fusion", "base": "zscore", "fp_rules": ["level"]}}
    write_ruleset(tmp_path / "fu", _rules(), fields)
    m = load_ruleset(tmp_path / "fu").manifest
    assert isinstance(m.combination, Fusion) and str(m.combination) == "fusion"
    assert [r.role for r in m.rules] == ["base", "fp"]
    bad = {**FIELDS, "combination": {"mode": "fusion", "base": "nope"}}
    with pytest.raises(RuleSetError, match="fusion names rules not in the rule list"):
        write_ruleset(tmp_path / "bad", _rules(), bad)


def test_rules_must_pass_the_gate(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match=r"rule 'x' fails the rule contract: .*import of 'os'"):
        write_ruleset(tmp_path / "rs", [RuleSource("x", _rules()[0].code.replace("numpy", "os"))])


def test_manifest_rejects_duplicate_ids() -> None:
    entry = {"id": "a", "file": "a.py", "sha256": "0" * 64, "lookback": 0}
    with pytest.raises(ValueError, match="duplicate rule ids"):
        Manifest.model_validate({"id": "rs-1", "rules": [entry, {**entry, "file": "b.py"}]})


def test_detector_can_load_an_exported_ruleset(tmp_path: Path) -> None:
    rulesets = pytest.importorskip("argos.online.rulesets")
    write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    loaded = rulesets.load_rules(tmp_path / "rs")
    assert [r.id for r in loaded.rules] == ["zscore", "level"]
    assert loaded.rules[0].params["k"] == 6.5 and loaded.combination == "or"


def test_rule_files_take_their_mode_from_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    finally:
        os.umask(old)
    for name in ("zscore.py", "level.py", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "rs" / name).stat().st_mode) == 0o644


def test_exported_file_shows_the_fitted_params(tmp_path: Path) -> None:
    from argos.rules.contract import check_rule

    write_ruleset(tmp_path / "rs", _rules(), FIELDS)
    rs = load_ruleset(tmp_path / "rs")
    code = rs.codes["zscore"]
    # The file's PARAMS literal is what runs: manifest, file and hash agree.
    assert check_rule(code).params == rs.manifest.rules[0].params == {"k": 6.5, "window": 50}
    assert sha256_text(code) == rs.manifest.rules[0].sha256
    # A rule exported with its written defaults stays byte for byte as written.
    assert rs.codes["level"] == (EXAMPLES / "level_shift.py").read_text()
