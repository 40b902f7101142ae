"""The method catalogue: names resolve to classes on first use, nothing registers at import."""

from __future__ import annotations

import importlib.util

import pytest

from argos.methods import (
    CATALOGUE,
    UnknownMethodError,
    get_method,
    method_names,
    register_method,
    unregister_method,
)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_catalogue_entry_names_a_class_called_by_that_name(name: str) -> None:
    entry = CATALOGUE[name]
    module, _, attr = entry.target.partition(":")
    if entry.requires is not None and importlib.util.find_spec(entry.requires) is None:
        pytest.skip(f"optional package {entry.requires!r} not installed")
    cls = getattr(importlib.import_module(module), attr)
    assert cls.name == name
    info = get_method(name)
    assert info.kind == entry.kind and info.description == cls.description
    assert info.build(seed=1).name == name


def test_names_keep_the_catalogue_order_then_run_time_registrations() -> None:
    offered = method_names()
    assert offered[:8] == [
        "argos-builtin",
        "static-threshold",
        "rolling-zscore",
        "robust-zscore",
        "ewma",
        "seasonal-residual",
        "spectral-residual",
        "isolation-forest",
    ]
    assert method_names("argos") == ["argos-builtin"]
    register_method("extra", lambda *, seed=0: get_method("ewma").build(seed=seed))
    try:
        assert method_names()[-1] == "extra"
        with pytest.raises(ValueError, match="already registered"):
            register_method("ewma", lambda *, seed=0: get_method("ewma").build(seed=seed))
    finally:
        unregister_method("extra")


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(UnknownMethodError) as err:
        get_method("nope")
    assert "known methods: argos-builtin, static-threshold, rolling-zscore" in str(err.value)
