"""A minimal YAML writer for Prometheus rule and unit-test files (no YAML library needed).

Only what those files use: mappings with string keys, lists, strings, numbers and booleans. Strings
are single-quoted (PromQL is full of double quotes) unless they hold a quote or a line break, then
JSON-escaped in double quotes, which YAML reads the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

YamlValue = str | int | float | bool | None | Sequence["YamlValue"] | Mapping[str, "YamlValue"]


def scalar(v: str | int | float | bool | None) -> str:
    """One YAML scalar."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    if v.isprintable() and "'" not in v:
        return f"'{v}'"
    return json.dumps(v, ensure_ascii=False)


def _key(k: str) -> str:
    return k if k.replace("_", "").isalnum() else scalar(k)


def dump(value: YamlValue, indent: int = 0) -> str:
    """``value`` as YAML block text (ends with a newline)."""
    return "\n".join(_lines(value, indent)) + "\n"


def _lines(value: YamlValue, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for k, v in value.items():
            if isinstance(v, Mapping | list | tuple) and v:
                out.append(f"{pad}{_key(k)}:")
                out.extend(_lines(v, indent + (0 if isinstance(v, list | tuple) else 2)))
            else:
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
        return out
    if isinstance(value, list | tuple):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            sub = _lines(item, indent + 2)
            out.append(f"{pad}- {sub[0][indent + 2 :]}")
            out.extend(sub[1:])
        return out
    return [pad + _inline(value)]


def _inline(v: YamlValue) -> str:
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, list | tuple):
        return "[]"
    if isinstance(v, str | int | float | bool) or v is None:
        return scalar(v)
    raise TypeError(f"cannot write {type(v).__name__} as YAML")
