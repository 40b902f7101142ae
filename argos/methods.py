"""The method interface that ``argos eval`` runs, and the registry of named methods.

A *method* is fit on labeled history and returns a *detector*; the detector labels a whole series
(without labels) and may also expose a continuous anomaly score::

    class Method(Protocol):
        name: str
        def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> Detector: ...

    class Detector(Protocol):
        def detect(self, series: Series) -> BoolArray: ...

``train[i]`` and ``validation[i]`` are consecutive slices of the same series (see
:mod:`argos.data.protocol`); for per-series granularity there is one of each, for per-partition
granularity one per series of the partition.

Registering a method: a *factory* is a callable taking a keyword ``seed`` (the trial number, so
stochastic methods vary across ``--trials``) and returning a fresh :class:`Method`::

    register_method("my-rules", lambda *, seed=0: RuleSetMethod("rules/kpi"),
                    description="rule set exported by argos train", kind="argos")

Hook for trained rule sets: a module that can turn an exported rule-set folder into a method
(``argos.rules.artifacts`` / ``argos.training.builtin.search``) registers its factory here at
import time. The
registry imports the modules named in :data:`PLUGIN_MODULES` lazily the first time it is queried,
so ``argos eval --methods all`` sees them without the CLI knowing about each one.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from argos._types import BoolArray, FloatArray
from argos.data.series import Series

MethodKind = Literal["baseline", "argos", "peer"]

#: Modules imported on first use of the registry; each registers its methods at import time.
#: Missing modules are skipped (they land with later issues).
PLUGIN_MODULES: tuple[str, ...] = (
    "argos.evaluation.baselines",
    "argos.training.builtin.search",
    "argos.rules.artifacts",
)


@runtime_checkable
class Detector(Protocol):
    """A fitted detector: labels every point of an unlabeled series (True = anomalous).

    It must be causal: the label of point t may depend on points <= t only.
    """

    def detect(self, series: Series) -> BoolArray: ...


@runtime_checkable
class ScoringDetector(Detector, Protocol):
    """A detector that also exposes its continuous score (higher = more anomalous).

    The harness uses :meth:`score` for AUC-PR / VUS-PR. Scores may be NaN during warm-up.
    """

    def score(self, series: Series) -> FloatArray: ...


class Method(Protocol):
    """Something that can be fit on labeled train/validation slices and returns a detector.

    ``name`` may be a plain attribute, a class attribute or a property.
    """

    @property
    def name(self) -> str: ...

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> Detector: ...


class MethodFactory(Protocol):
    """Builds a fresh method for one trial (``seed`` = trial number, starting at 0)."""

    def __call__(self, *, seed: int = 0) -> Method: ...


@dataclass(frozen=True)
class MethodInfo:
    """A registry entry.

    Attributes:
        name: the name used on the command line (``--methods NAME``).
        factory: builds the method for a trial.
        description: one line shown by ``argos eval --help`` and in error messages.
        kind: ``"baseline"``, ``"argos"`` (trained rule sets) or ``"peer"`` (other libraries).
    """

    name: str
    factory: MethodFactory | Callable[..., Method]
    description: str
    kind: MethodKind

    def build(self, seed: int = 0) -> Method:
        """A fresh method instance for trial ``seed``."""
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


_REGISTRY: dict[str, MethodInfo] = {}
_plugins_loaded = False


def register_method(
    name: str,
    factory: MethodFactory | Callable[..., Method],
    *,
    description: str = "",
    kind: MethodKind = "baseline",
    replace: bool = False,
) -> None:
    """Register ``factory`` under ``name``.

    Raises ``ValueError`` when the name is taken (pass ``replace=True`` to overwrite, e.g. when
    re-registering a retrained rule set) or is not a valid command-line token.
    """
    if not name or any(c in name for c in ", \t\n"):
        raise ValueError(f"method name must be non-empty without commas or spaces: {name!r}")
    if kind not in ("baseline", "argos", "peer"):
        raise ValueError(f"kind must be 'baseline', 'argos' or 'peer', got {kind!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = MethodInfo(name=name, factory=factory, description=description, kind=kind)


def unregister_method(name: str) -> None:
    """Remove a registered method (no error when absent). Meant for tests and plugins."""
    _REGISTRY.pop(name, None)


def load_plugins() -> None:
    """Import :data:`PLUGIN_MODULES` once so their methods are registered."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def get_method(name: str) -> MethodInfo:
    """The registry entry for ``name``; :class:`UnknownMethodError` lists the known names."""
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(name, method_names()) from None


def method_names(kind: MethodKind | None = None) -> list[str]:
    """Registered method names (optionally of one kind), in registration order."""
    load_plugins()
    return [n for n, info in _REGISTRY.items() if kind is None or info.kind == kind]


def resolve_methods(spec: str | Sequence[str]) -> list[MethodInfo]:
    """Turn ``"a,b,c"``, ``"all"`` or a list of names into registry entries (order kept, no dups).

    ``all`` (alone or inside the list) expands to every registered method.
    """
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ValueError("no methods given")
    out: list[MethodInfo] = []
    seen: set[str] = set()
    for name in names:
        expanded = method_names() if name == "all" else [name]
        for item in expanded:
            if item not in seen:
                seen.add(item)
                out.append(get_method(item))
    return out
