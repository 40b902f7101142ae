"""Rule-set artifacts: rule files plus a schema-validated, hash-pinned ``manifest.json``.

Layout::

    my-ruleset/
      manifest.json        # Manifest: rules with SHA-256, params, combination, provenance
      spikes.py            # one file per rule, named <rule id>.py
      level_shift.py

:func:`write_ruleset` is idempotent: the same rules and fields give byte-identical files (JSON with
sorted keys; ``created`` is kept from an existing identical manifest). :func:`load_ruleset` verifies
every rule's hash and refuses tampered, missing or unknown (present but unlisted) rule files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from argos.metrics import EVENT_PA, Objective
from argos.rules.contract import (
    ParamValue,
    RuleContractError,
    check_rule,
    decode_rule_source,
    with_params,
)

SCHEMA_VERSION: Literal[1] = 1
MANIFEST = "manifest.json"
_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"

Role = Literal["or", "base", "fn", "fp"]


class RuleSetError(ValueError):
    """A rule-set folder is invalid, tampered with, or incomplete."""


class RuleEntry(BaseModel):
    """One rule in the manifest."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    lookback: int = Field(ge=0)
    description: str = ""
    status: str = "accepted"
    role: Role = "or"


EXTERNAL_BASE_PREFIXES = ("method:", "csv:")


class Fusion(BaseModel):
    """Model fusion: ``base`` labels, corrected by FN-rules (add alarms) and FP-rules (veto)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["fusion"] = "fusion"
    base: str
    fn_rules: list[str] = Field(default_factory=list)
    fp_rules: list[str] = Field(default_factory=list)

    def __str__(self) -> str:
        return "fusion"

    @property
    def external_base(self) -> bool:
        """True when the base is a detector outside the rule set (``method:NAME``: a baseline
        method fitted on the same training data; ``csv:FILE``: a user's predictions). Such a set
        corrects that detector's labels and needs them at detection time."""
        return self.base.startswith(EXTERNAL_BASE_PREFIXES)


class TrainingData(BaseModel):
    """Which data the rules were trained on (never the labels themselves)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    series: list[str] = Field(default_factory=list)
    partition: str | None = None
    split: dict[str, Any] = Field(default_factory=dict)


class GeneratorInfo(BaseModel):
    """Who wrote the rules: the embedded generator or an LLM (model, prompt ids -> hashes), and
    the objective its selection and fitting maximised (``event-pa`` for manifests written
    before the field existed)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin", "llm"]
    model: str | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    objective: str = str(EVENT_PA)
    """What selection and fitting maximised (``argos train --objective``)."""
    incumbent: Literal["builtin"] | None = None
    """The rule set an LLM run started from and had to beat (None: it started from nothing)."""
    incumbent_score: float | None = None
    """The incumbent's selection score on the unit."""
    score: float | None = None
    """The exported set's selection score (at least ``incumbent_score``, by construction)."""
    incumbent_train_score: float | None = None
    """The incumbent's train score, which breaks a tie on the selection score."""
    train_score: float | None = None
    """The exported set's train score (higher than ``incumbent_train_score`` when the selection
    scores tie and an LLM rule was kept)."""
    held_out_events: int | None = None
    """Train events the LLM loop held out and selected on, the unit having no validation event
    (``argos train --holdout``); the scores above are on the unit's own selection data."""
    guard: str | None = None
    """The metric the LLM gate kept from falling on train and on validation (``argos train
    --guard``); None: no guard."""

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        return str(Objective.parse(v))

    @field_validator("guard")
    @classmethod
    def _known_guard(cls, v: str | None) -> str | None:
        return None if v is None else str(Objective.parse(v))


_OPTIONAL_GENERATOR_KEYS = (
    "incumbent",
    "incumbent_score",
    "score",
    "incumbent_train_score",
    "train_score",
    "held_out_events",
    "guard",
)
"""Written only when set, so manifests that never had them keep their bytes."""


class RuleChange(BaseModel):
    """What one pack did to one rule: its old and new SHA-256 and a short diff summary."""

    model_config = ConfigDict(extra="forbid")

    rule: str
    change: Literal["added", "edited", "removed", "unchanged"]
    old_sha256: str | None = None
    new_sha256: str | None = None
    diff: str = ""


class HistoryEntry(BaseModel):
    """One ``argos rules pack``: who packed the set, when (UTC), why, and what changed.

    ``previous_id`` is the id of the rule set it was re-packed from (``None`` for a first pack).
    """

    model_config = ConfigDict(extra="forbid")

    who: str
    when: str
    note: str = ""
    previous_id: str | None = None
    changes: list[RuleChange] = Field(default_factory=list)


class Manifest(BaseModel):
    """``manifest.json`` of a rule set (schema version 1; ``history`` is optional, so manifests
    written before it existed still load)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(pattern=_ID_PATTERN)
    name: str = ""
    rules: list[RuleEntry] = Field(min_length=1)
    combination: Literal["or"] | Fusion = "or"
    training: TrainingData | None = None
    metrics: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)
    generator: GeneratorInfo | None = None
    limits: dict[str, float | int] = Field(default_factory=dict)
    created: str = ""
    argos_version: str = ""
    history: list[HistoryEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate rule ids: {dup}")
        files = [r.file for r in self.rules]
        if len(set(files)) != len(files):
            raise ValueError("two rules share one file")
        roles = {r.id: r.role for r in self.rules}
        if isinstance(self.combination, Fusion):
            f = self.combination
            wanted: dict[str, Role] = {} if f.external_base else {f.base: "base"}
            wanted.update({i: "fn" for i in f.fn_rules})
            wanted.update({i: "fp" for i in f.fp_rules})
            missing = sorted(set(wanted) - set(ids))
            if missing:
                raise ValueError(f"fusion names rules not in the rule list: {missing}")
            for rid, role in roles.items():
                if wanted.get(rid) != role:
                    raise ValueError(
                        f"rule {rid!r} has role {role!r} but the fusion says "
                        f"{wanted.get(rid, 'nothing')!r}"
                    )
        elif any(role != "or" for role in roles.values()):
            raise ValueError("roles other than 'or' need a fusion combination")
        return self


@dataclass(frozen=True)
class RuleSource:
    """A rule to export: its id, code, tuned params (merged over ``PARAMS``) and status."""

    id: str
    code: str
    params: Mapping[str, ParamValue] | None = None
    status: str = "accepted"


@dataclass(frozen=True)
class RuleSet:
    """A verified rule set: the manifest and each rule's code by id."""

    directory: Path
    manifest: Manifest
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def rules(self) -> list[RuleEntry]:
        """The manifest's rule entries."""
        return self.manifest.rules


def sha256_text(code: str) -> str:
    """SHA-256 hex digest of a rule file's UTF-8 bytes."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _dump(manifest: Manifest) -> bytes:
    data = manifest.model_dump(mode="json")
    if not data["history"]:
        del data["history"]  # a set never re-packed keeps the manifest bytes it always had
    generator = data.get("generator") or {}
    for key in _OPTIONAL_GENERATOR_KEYS:
        if generator.get(key) is None:
            generator.pop(key, None)
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _atomic_write(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return  # unchanged: keep the file (and its mtime) as it is
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates the file 0600; a rule set is an ordinary file: mode from the umask.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _version() -> str:
    try:
        from argos._version import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return ""


def write_ruleset(
    directory: str | Path,
    rules: Sequence[RuleSource],
    manifest_fields: Mapping[str, Any] | None = None,
) -> Path:
    """Write rule files and ``manifest.json`` into ``directory``; return the manifest path.

    Every rule must pass the static gate (its ``LOOKBACK`` and docstring go into the manifest).
    ``manifest_fields`` sets the other fields (``name``, ``combination``, ``training``, ``metrics``,
    ``generator``, ``limits``, ``id``, ``created``). The ruleset ``id`` defaults to a digest of the
    rules. Rule files listed by a previous manifest in the folder but not the new one are removed.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fields = dict(manifest_fields or {})
    combination = fields.get("combination", "or")
    fusion = Fusion.model_validate(combination) if isinstance(combination, Mapping) else None
    if isinstance(combination, Fusion):
        fusion = combination
    entries: list[RuleEntry] = []
    codes: list[str] = []
    for src in rules:
        try:
            # The file shows the params that run: the fitted values replace the PARAMS literal,
            # so the file, the manifest and the hash agree.
            code = with_params(src.code, src.params or {})
            info = check_rule(code, max_bytes=10**7)
        except RuleContractError as exc:
            raise RuleSetError(f"rule {src.id!r} fails the rule contract: {exc}") from exc
        codes.append(code)
        role: Role = "or"
        if fusion is not None:
            if src.id == fusion.base:
                role = "base"
            elif src.id in fusion.fn_rules:
                role = "fn"
            elif src.id in fusion.fp_rules:
                role = "fp"
        entries.append(
            RuleEntry(
                id=src.id,
                file=f"{src.id}.py",
                sha256=sha256_text(code),
                params=dict(info.params),
                lookback=info.lookback,
                description=info.docstring,
                status=src.status,
                role=role,
            )
        )
    digest = hashlib.sha256(
        json.dumps([[e.id, e.sha256, e.params] for e in entries], sort_keys=True).encode()
    ).hexdigest()[:16]
    fields.setdefault("id", f"rs-{digest}")
    fields.setdefault("argos_version", _version())
    mpath = d / MANIFEST
    old: Manifest | None = None
    if mpath.is_file():
        try:
            old = Manifest.model_validate_json(mpath.read_bytes())
        except ValidationError:
            old = None
    try:
        manifest = Manifest.model_validate({**fields, "rules": entries, "created": ""})
    except ValidationError as exc:
        raise RuleSetError(f"invalid manifest fields: {exc}") from exc
    if "created" in fields:
        created = str(fields["created"])
    elif old is not None and old.model_copy(update={"created": ""}) == manifest:
        created = old.created  # identical content: keep the timestamp (idempotent)
    else:
        created = datetime.now(UTC).replace(microsecond=0).isoformat()
    manifest = manifest.model_copy(update={"created": created})
    for code, entry in zip(codes, entries, strict=True):
        _atomic_write(d / entry.file, code.encode("utf-8"))
    if old is not None:
        keep = {e.file for e in entries}
        for e in old.rules:
            stale = d / e.file
            if e.file not in keep and stale.parent.resolve() == d.resolve():
                stale.unlink(missing_ok=True)
    _atomic_write(mpath, _dump(manifest))
    return mpath


def load_ruleset(directory: str | Path, *, check_contract: bool = True) -> RuleSet:
    """Read a rule-set folder and verify it; raise :class:`RuleSetError` with the reason.

    Refuses: a missing or invalid manifest, a rule file outside the folder, a missing file, a file
    whose SHA-256 differs from the manifest (tampered), any ``.py`` file not listed (unknown), and
    (with ``check_contract``) a rule that fails the static gate.
    """
    d = Path(directory)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise RuleSetError(f"{d}: no {MANIFEST} (is this a rule-set folder?)")
    try:
        manifest = Manifest.model_validate_json(mpath.read_bytes())
    except ValidationError as exc:
        raise RuleSetError(f"{mpath}: invalid manifest: {exc}") from exc
    root = d.resolve()
    codes: dict[str, str] = {}
    listed: set[Path] = set()
    for r in manifest.rules:
        path = (d / r.file).resolve()
        if root not in path.parents:
            raise RuleSetError(f"{mpath}: rule {r.id!r} file {r.file!r} is outside the folder")
        if not path.is_file():
            raise RuleSetError(f"{mpath}: rule {r.id!r}: file {r.file!r} is missing")
        raw = path.read_bytes()
        actual = hashlib.sha256(raw).hexdigest()
        if actual != r.sha256:
            raise RuleSetError(
                f"{mpath}: rule {r.id!r}: {r.file} has sha256 {actual}, the manifest says "
                f"{r.sha256}; refusing a tampered rule (if the edit was reviewed, re-pack the "
                f"set: argos rules pack --from {d})"
            )
        try:
            code = decode_rule_source(raw)
        except RuleContractError as exc:
            raise RuleSetError(f"{mpath}: rule {r.id!r}: {exc}") from exc
        if check_contract:
            try:
                check_rule(code, max_bytes=10**7)
            except RuleContractError as exc:
                raise RuleSetError(
                    f"{mpath}: rule {r.id!r} fails the rule contract: {exc}"
                ) from exc
        codes[r.id] = code
        listed.add(path)
    unknown = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py") if p.resolve() not in listed
    )
    if unknown:
        raise RuleSetError(f"{d}: unknown rule files not in the manifest: {unknown}; refusing")
    return RuleSet(directory=d, manifest=manifest, codes=codes)
