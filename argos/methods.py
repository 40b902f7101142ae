"""The method interface that ``argos eval`` runs, and the catalogue of named methods.

A *method* is fit on labeled history and returns a *fitted detector*; the fitted detector labels a
whole series (without labels) and may also expose a continuous anomaly score::

    class Method(Protocol):
        name: str
        def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> FittedDetector: ...

    class FittedDetector(Protocol):
        def detect(self, series: Series) -> BoolArray: ...

(Not to be confused with :class:`argos.online.detector.Detector`, the streaming detector of an
exported rule set, which also offers ``detect``.) ``train[i]`` and ``validation[i]`` are
consecutive slices of the same series (see :mod:`argos.data.protocol`); for per-series
granularity there is one of each, for per-partition granularity one per series of the partition.

The catalogue: :data:`CATALOGUE` maps every built-in method name to ``"module:Class"`` (as
Merlion's model factory does) and is resolved on first use, so this module imports no method and
no method module imports this one to register itself. A catalogued class is the method's factory
(``Class(seed=N, objective=O)``: every catalogued method fits its thresholds for the objective of
the run, ``argos eval --objective``) and carries its ``description``; the catalogue says its kind
and, for optional peers, the package it needs (absent package = the method is not offered).

Methods added at run time (tests, benchmarks, a retrained rule set): a *factory* is a callable
taking a keyword ``seed`` (the trial number, so stochastic methods vary across ``--trials``) and
returning a fresh :class:`Method`::

    register_method("my-rules", lambda *, seed=0: RuleSetMethod("rules/kpi"),
                    description="rule set exported by argos train", kind="argos")

A registered factory that also takes a keyword ``objective`` (an :class:`~argos.metrics.Objective`)
says so with ``fits_objective=True``; the others (and ``rules:PATH``, a rule set fixed when it was
exported) are used as they are whatever the run's objective.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol, cast, runtime_checkable

from argos._types import BoolArray, FloatArray
from argos.data.series import Series
from argos.metrics import EVENT_PA, Objective

MethodKind = Literal["baseline", "argos", "peer"]


@runtime_checkable
class FittedDetector(Protocol):
    """What a fitted method returns: labels every point of an unlabeled series (True =
    anomalous).

    It must be causal: the label of point t may depend on points <= t only.
    """

    def detect(self, series: Series) -> BoolArray: ...


@runtime_checkable
class ScoringDetector(FittedDetector, Protocol):
    """A fitted detector that also exposes its continuous score (higher = more anomalous).

    The harness uses :meth:`score` for AUC-PR / VUS-PR. Scores may be NaN during warm-up.
    """

    def score(self, series: Series) -> FloatArray: ...


class Method(Protocol):
    """Something that can be fit on labeled train/validation slices and returns a detector.

    ``name`` may be a plain attribute, a class attribute or a property.
    """

    @property
    def name(self) -> str: ...

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> FittedDetector: ...


class MethodFactory(Protocol):
    """Builds a fresh method for one trial (``seed`` = trial number, starting at 0)."""

    def __call__(self, *, seed: int = 0) -> Method: ...


@dataclass(frozen=True)
class MethodInfo:
    """A method as ``argos eval`` knows it (a catalogue entry resolved, or a registration).

    Attributes:
        name: the name used on the command line (``--methods NAME``).
        factory: builds the method for a trial.
        description: one line shown by ``argos eval --help`` and in error messages.
        kind: ``"baseline"``, ``"argos"`` (trained rule sets) or ``"peer"`` (other libraries).
        fits_objective: the factory takes a keyword ``objective`` and the method fits (and
            selects) for it.
    """

    name: str
    factory: MethodFactory | Callable[..., Method]
    description: str
    kind: MethodKind
    fits_objective: bool = False

    def build(self, seed: int = 0, objective: Objective = EVENT_PA) -> Method:
        """A fresh method instance for trial ``seed``, fit for ``objective`` when it fits one."""
        if self.fits_objective:
            return cast("Callable[..., Method]", self.factory)(seed=seed, objective=objective)
        return self.factory(seed=seed)


class UnknownMethodError(KeyError):
    """A method name that is not registered; the message lists the known ones."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(name)

    def __str__(self) -> str:
        text = f"unknown method {self.name!r}; known methods: {', '.join(self.known) or '(none)'}"
        if self.name.startswith("pyod-"):
            text += " (PyOD peers need the optional extra: pip install 'argos-rules[peers]')"
        return text


@dataclass(frozen=True)
class CatalogueEntry:
    """Where a built-in method lives: ``target`` is ``"module:Class"``; ``requires`` names an
    optional package the method needs (the method is offered only when it is importable)."""

    target: str
    kind: MethodKind
    requires: str | None = None


_BASELINES = "argos.evaluation.baselines"

#: Every built-in method, in the order ``argos eval --methods all`` and ``--list-methods`` show
#: them (the trained rules first, then the baselines, then the optional peers).
CATALOGUE: dict[str, CatalogueEntry] = {
    "argos-builtin": CatalogueEntry("argos.training.builtin.method:BuiltinMethod", "argos"),
    "static-threshold": CatalogueEntry(f"{_BASELINES}:StaticThreshold", "baseline"),
    "rolling-zscore": CatalogueEntry(f"{_BASELINES}:RollingZScore", "baseline"),
    "robust-zscore": CatalogueEntry(f"{_BASELINES}:RobustZScore", "baseline"),
    "ewma": CatalogueEntry(f"{_BASELINES}:EwmaResidual", "baseline"),
    "seasonal-residual": CatalogueEntry(f"{_BASELINES}:SeasonalResidual", "baseline"),
    "spectral-residual": CatalogueEntry(f"{_BASELINES}:SpectralResidual", "baseline"),
    "isolation-forest": CatalogueEntry(f"{_BASELINES}:IsolationForestBaseline", "baseline"),
    "pyod-spectral-residual": CatalogueEntry(
        f"{_BASELINES}:PyodSpectralResidual", "peer", requires="pyod"
    ),
}

_REGISTRY: dict[str, MethodInfo] = {}
_RESOLVED: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    factory: MethodFactory | Callable[..., Method],
    *,
    description: str = "",
    kind: MethodKind = "baseline",
    replace: bool = False,
    fits_objective: bool = False,
) -> None:
    """Register ``factory`` under ``name`` at run time (``fits_objective``: it also takes a
    keyword ``objective``).

    Raises ``ValueError`` when the name is taken, by the catalogue or an earlier registration
    (pass ``replace=True`` to overwrite, e.g. when re-registering a retrained rule set), or is not
    a valid command-line token.
    """
    if not name or any(c in name for c in ", \t\n"):
        raise ValueError(f"method name must be non-empty without commas or spaces: {name!r}")
    if kind not in ("baseline", "argos", "peer"):
        raise ValueError(f"kind must be 'baseline', 'argos' or 'peer', got {kind!r}")
    if (name in _REGISTRY or name in _offered()) and not replace:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = MethodInfo(name, factory, description, kind, fits_objective)


def unregister_method(name: str) -> None:
    """Remove a method registered at run time (no error when absent). Meant for tests."""
    _REGISTRY.pop(name, None)


@cache
def _importable(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _offered() -> list[str]:
    """Catalogue names whose optional package (if any) is installed."""
    return [n for n, e in CATALOGUE.items() if e.requires is None or _importable(e.requires)]


def _resolve(name: str) -> MethodInfo:
    """Import a catalogued method's class (once) and describe it."""
    info = _RESOLVED.get(name)
    if info is None:
        entry = CATALOGUE[name]
        module, _, attr = entry.target.partition(":")
        cls = cast("Callable[..., Method]", getattr(importlib.import_module(module), attr))
        description = str(getattr(cls, "description", ""))
        info = MethodInfo(name, cls, description, entry.kind, fits_objective=True)
        _RESOLVED[name] = info
    return info


RULES_PREFIX = "rules:"
"""``rules:PATH`` names an exported rule set or a training run folder (see
:mod:`argos.evaluation.rulesets`)."""


def _rules_method(name: str) -> MethodInfo:
    path = name[len(RULES_PREFIX) :]
    if not path:
        raise ValueError("rules: needs a PATH (a rule-set folder or a training run folder)")
    module = importlib.import_module("argos.evaluation.rulesets")
    cls = cast("Callable[..., Method]", module.RuleSetMethod)

    def factory(*, seed: int = 0) -> Method:
        return cls(path)

    description = f"the rule sets of {path} (exported by argos train)"
    return MethodInfo(name=name, factory=factory, description=description, kind="argos")


def get_method(name: str) -> MethodInfo:
    """The method called ``name``; :class:`UnknownMethodError` lists the known names.
    ``rules:PATH`` is the rule set (or training run) in folder PATH."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(RULES_PREFIX):
        return _rules_method(name)
    if name in _offered():
        return _resolve(name)
    raise UnknownMethodError(name, method_names())


def method_names(kind: MethodKind | None = None) -> list[str]:
    """Known method names (optionally of one kind): the catalogue's in its order, then those
    registered at run time in registration order."""
    kinds = {n: CATALOGUE[n].kind for n in _offered()}
    kinds.update({n: info.kind for n, info in _REGISTRY.items()})
    return [n for n, k in kinds.items() if kind is None or k == kind]


GROUPS: dict[str, MethodKind | None] = {"all": None, "all-baselines": "baseline"}
"""Names that stand for several methods: ``all`` (every known method) and ``all-baselines``
(every method of kind ``baseline``)."""


def _expand(name: str) -> list[str]:
    """A group name's methods, or the name itself."""
    if name in GROUPS:
        return method_names(GROUPS[name])
    return [name]


def _spec_names(spec: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    return [n for n in names if n]


def resolve_methods(spec: str | Sequence[str]) -> list[MethodInfo]:
    """Turn ``"a,b,c"``, ``"all"`` or a list of names into methods (order kept, no duplicates).

    ``all`` (alone or inside the list) expands to every registered method, ``all-baselines`` to
    every baseline (:data:`GROUPS`). A catalogued optional
    method whose package is missing is left out, not an error: :func:`unavailable_methods` names
    it and says how to install it, so the caller can show the gap instead of hiding it.
    """
    names = _spec_names(spec)
    if not names:
        raise ValueError("no methods given")
    out: list[MethodInfo] = []
    seen: set[str] = set()
    missing = unavailable_methods(names)
    for name in names:
        for item in _expand(name):
            if item not in seen and item not in missing:
                seen.add(item)
                out.append(get_method(item))
    return out


def unavailable_methods(spec: str | Sequence[str]) -> dict[str, str]:
    """The catalogued optional methods that ``spec`` asks for (by name, or through ``all``) but
    whose package is not installed: name -> what is missing and how to install it."""
    names = _spec_names(spec)
    wanted = list(CATALOGUE) if "all" in names else names
    for name in names:
        kind = GROUPS.get(name)
        if kind is not None:
            wanted += [n for n, e in CATALOGUE.items() if e.kind == kind]
    missing: dict[str, str] = {}
    for name in wanted:
        entry = CATALOGUE.get(name)
        if entry is not None and entry.requires and not _importable(entry.requires):
            missing[name] = (
                f"needs the optional package {entry.requires} (pip install 'argos-rules[peers]')"
            )
    return missing
