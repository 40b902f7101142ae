"""The rule contract, the static gate, and extraction of rule code from LLM output.

A rule is one Python module::

    \"\"\"Normal: ... Abnormal: ...\"\"\"          # a docstring stating the conditions
    import numpy as np                          # allowed imports: numpy, math, statistics
    PARAMS = {"k": 3.5, "window": 50}           # dict literal of numbers / bools / strings
    PARAM_RANGES = {"k": (1.0, 10.0)}           # optional: search ranges used by fitting
    LOOKBACK = 50                               # int literal: points of history the rule needs
    def detect(values, timestamps, params):     # -> bool array, same length as values
        ...

:func:`check_rule` is the *static gate*: a cheap first check that gives the repair agent precise,
line-numbered feedback. It is **not** a security boundary (see ``docs/sandbox.md``); the kernel
layers of :mod:`argos.sandbox.pool` are. :func:`exec_rule_source` is the one place that executes a
rule module's source (the sandbox children, the rule workers and the trusted builtin templates all
load rules through it). :func:`extract_code` pulls the rule out of an LLM answer.

This module imports only the standard library: the sandbox's zygote loads it by path, without
importing the ``argos`` package.
"""

from __future__ import annotations

import ast
import linecache
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

ParamValue = float | int | bool | str

DEFAULT_MAX_CODE_BYTES = 20_000
"""Default upper bound on the size of a rule's source (UTF-8 bytes)."""

MAX_NESTING = 100
"""Deepest syntax tree the gate accepts (a real rule nests a dozen levels; thousands of nested
unary minus signs make ``ast.parse`` or ``compile`` raise ``RecursionError``)."""

ALLOWED_MODULES = frozenset({"numpy", "math", "statistics"})
"""Top-level modules a rule may import (numpy sub-modules too, except :data:`FORBIDDEN_NUMPY`)."""

FORBIDDEN_NUMPY = frozenset(
    {
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.f2py",
        "numpy.testing",
        "numpy.lib.format",
        "numpy.lib.npyio",
        "numpy.lib.utils",
    }
)
"""numpy sub-modules a rule may not import (I/O, ctypes, compilers, test helpers)."""

FORBIDDEN_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "ctypeslib",
    }
)
"""Built-in names a rule may not reference."""

FORBIDDEN_ATTRIBUTES = frozenset(
    {
        # numpy file I/O and pickling
        "load",
        "save",
        "savez",
        "savez_compressed",
        "loadtxt",
        "savetxt",
        "genfromtxt",
        "fromfile",
        "tofile",
        "fromregex",
        "memmap",
        "dump",
        "dumps",
        "DataSource",
        "ctypeslib",
        "ctypes",
        "f2py",
        "distutils",
        "testing",
        # frame, code and generator introspection (ways out to globals / builtins)
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
        "mro",
        # stdlib modules re-exported by numpy sub-modules (np.ma.core.builtins, np.f2py.os, ...)
        "builtins",
        "inspect",
        "os",
        "sys",
        "subprocess",
        "pathlib",
        "platform",
        "sysconfig",
        "tempfile",
        "fileinput",
        "codecs",
        "importlib",
        "io",
        "shutil",
        "pickle",
        "socket",
        "gc",
        "signal",
        "threading",
        "types",
        # attribute access by string (would bypass the dunder check)
        "operator",
        "attrgetter",
        "methodcaller",
    }
)
"""Attribute names a rule may not access (I/O helpers, introspection that leads to globals)."""


@dataclass(frozen=True)
class Issue:
    """One problem found by the static gate; ``line`` is 1-based (0 when not tied to a line)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class RuleInfo:
    """What the static gate read from a rule module that passed it."""

    params: dict[str, ParamValue]
    lookback: int
    docstring: str
    param_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


class RuleContractError(ValueError):
    """A rule failed the static gate. ``status`` is ``syntax_error`` or ``static_reject``."""

    def __init__(
        self, status: Literal["syntax_error", "static_reject"], issues: list[Issue]
    ) -> None:
        self.status = status
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


def _literal_value(node: ast.expr) -> ParamValue | None:
    """A number/bool/str constant (numbers may carry a unary minus), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | float | str):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        v = node.operand.value
        return -v if isinstance(node.op, ast.USub) else v
    return None


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _module_assignments(tree: ast.Module) -> dict[str, ast.Assign | ast.AnnAssign]:
    """Top-level single-name assignments, last one wins (like at run time)."""
    out: dict[str, ast.Assign | ast.AnnAssign] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for tgt in stmt.targets:
                if isinstance(tgt, ast.Name):
                    out[tgt.id] = stmt
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = stmt
    return out


def _check_params(
    node: ast.Assign | ast.AnnAssign | None, issues: list[Issue]
) -> dict[str, ParamValue]:
    if node is None or node.value is None:
        issues.append(Issue(0, "missing module constant PARAMS (a dict literal, may be empty {})"))
        return {}
    params: dict[str, ParamValue] = {}
    for name, v in _string_keyed_items(
        node, "PARAMS", "a dict literal of numbers, booleans or strings", issues
    ):
        lit = _literal_value(v)
        if lit is None:
            issues.append(
                Issue(v.lineno, f"PARAMS[{name!r}] must be a number, boolean or string literal")
            )
            continue
        params[name] = lit
    return params


def _string_keyed_items(
    node: ast.Assign | ast.AnnAssign, constant: str, expected: str, issues: list[Issue]
) -> Iterator[tuple[str, ast.expr]]:
    """The (key, value node) pairs of the dict literal assigned to ``constant``, in order. A value
    that is not a dict literal (``constant must be {expected}``) or a key that is not a string
    literal is an issue, recorded as the pairs are read (so issues keep the source order)."""
    value = node.value
    if not isinstance(value, ast.Dict):
        issues.append(Issue(node.lineno, f"{constant} must be {expected}"))
        return
    for k, v in zip(value.keys, value.values, strict=True):
        if k is None or not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            issues.append(Issue(value.lineno, f"{constant} keys must be string literals"))
            continue
        yield k.value, v


def _check_ranges(
    node: ast.Assign | ast.AnnAssign | None,
    params: dict[str, ParamValue],
    issues: list[Issue],
) -> dict[str, tuple[float, float]]:
    if node is None or node.value is None:
        return {}
    ranges: dict[str, tuple[float, float]] = {}
    for name, v in _string_keyed_items(
        node, "PARAM_RANGES", "a dict literal like {'k': (1.0, 10.0)}", issues
    ):
        bounds = [_literal_value(e) for e in v.elts] if isinstance(v, ast.Tuple | ast.List) else []
        numbers = [b for b in bounds if _is_number(b)]
        if len(bounds) != 2 or len(numbers) != 2:
            issues.append(Issue(v.lineno, f"PARAM_RANGES[{name!r}] must be a pair (low, high)"))
            continue
        lo, hi = float(numbers[0]), float(numbers[1])
        if lo > hi:
            issues.append(Issue(v.lineno, f"PARAM_RANGES[{name!r}]: low {lo} > high {hi}"))
            continue
        if name not in params:
            issues.append(Issue(v.lineno, f"PARAM_RANGES names {name!r}, which is not in PARAMS"))
            continue
        if not _is_number(params[name]):
            issues.append(Issue(v.lineno, f"PARAM_RANGES[{name!r}]: PARAMS[{name!r}] not numeric"))
            continue
        ranges[name] = (lo, hi)
    return ranges


def _check_lookback(node: ast.Assign | ast.AnnAssign | None, issues: list[Issue]) -> int:
    if node is None or node.value is None:
        issues.append(Issue(0, "missing module constant LOOKBACK (an int literal >= 0)"))
        return 0
    lit = _literal_value(node.value)
    if not (isinstance(lit, int) and not isinstance(lit, bool)) or lit < 0:
        issues.append(Issue(node.lineno, "LOOKBACK must be an int literal >= 0"))
        return 0
    return lit


def _check_detect(tree: ast.Module, issues: list[Issue]) -> None:
    funcs = [
        s
        for s in tree.body
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == "detect"
    ]
    if not funcs:
        issues.append(Issue(0, "missing top-level function detect(values, timestamps, params)"))
        return
    fn = funcs[-1]
    if isinstance(fn, ast.AsyncFunctionDef):
        issues.append(Issue(fn.lineno, "detect must be a plain def, not async def"))
        return
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    required_kw = [arg.arg for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
    if len(positional) != 3 or a.vararg or required_kw:
        got = ", ".join(p.arg for p in positional)
        issues.append(
            Issue(
                fn.lineno,
                f"detect must take exactly three positional parameters "
                f"(values, timestamps, params); it takes ({got})",
            )
        )


def _check_imports_and_names(tree: ast.Module, issues: list[Issue]) -> None:
    allowed = ", ".join(sorted(ALLOWED_MODULES))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                _check_module_name(alias.name, line, allowed, issues)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                issues.append(Issue(line, "relative imports are not allowed"))
                continue
            mod = node.module or ""
            _check_module_name(mod, line, allowed, issues)
            for alias in node.names:
                if alias.name == "*":
                    issues.append(Issue(line, f"'from {mod} import *' is not allowed"))
                elif alias.name.startswith("_"):
                    issues.append(Issue(line, f"importing private name {alias.name!r}"))
                elif alias.name in FORBIDDEN_ATTRIBUTES or alias.name in FORBIDDEN_NAMES:
                    issues.append(
                        Issue(line, f"importing {alias.name!r} from {mod} is not allowed")
                    )
                else:
                    _check_module_name(f"{mod}.{alias.name}", line, allowed, issues, only_sub=True)
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                issues.append(Issue(line, f"use of {node.id!r} is not allowed"))
            elif node.id.startswith("__") and node.id.endswith("__"):
                issues.append(Issue(line, f"use of dunder name {node.id!r} is not allowed"))
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                issues.append(Issue(line, f"access to private or dunder attribute '.{node.attr}'"))
            elif node.attr in FORBIDDEN_ATTRIBUTES:
                issues.append(
                    Issue(line, f"access to attribute '.{node.attr}' is not allowed (no I/O)")
                )
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                if name.startswith("__"):
                    issues.append(Issue(line, f"use of dunder name {name!r} is not allowed"))


def _check_module_name(
    name: str, line: int, allowed: str, issues: list[Issue], *, only_sub: bool = False
) -> None:
    top = name.split(".")[0]
    if top not in ALLOWED_MODULES:
        if not only_sub:
            issues.append(
                Issue(line, f"import of {name!r} is not allowed (allowed modules: {allowed})")
            )
        return
    for bad in FORBIDDEN_NUMPY:
        if name == bad or name.startswith(bad + "."):
            issues.append(Issue(line, f"import of {name!r} is not allowed (no I/O or ctypes)"))
            return
    if any(part.startswith("_") for part in name.split(".")):
        issues.append(Issue(line, f"import of private module {name!r} is not allowed"))


def decode_rule_source(raw: bytes) -> str:
    """A rule file's bytes as text; raises :class:`RuleContractError` (``static_reject``) when
    they are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        issue = Issue(line, f"rule source is not UTF-8 text (byte {exc.start}: {exc.reason})")
        raise RuleContractError("static_reject", [issue]) from None


def _tree_depth(tree: ast.AST) -> int:
    """Depth of a syntax tree, without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def check_rule(code: str, *, max_bytes: int = DEFAULT_MAX_CODE_BYTES) -> RuleInfo:
    """Run the static gate on rule source and return what it declares.

    Raises :class:`RuleContractError` with status ``syntax_error`` (the code does not parse) or
    ``static_reject`` (it parses but breaks the contract); the error lists every problem found,
    each with its line number, sorted by line.
    """
    size = len(code.encode("utf-8"))
    if size > max_bytes:
        raise RuleContractError(
            "static_reject",
            [Issue(0, f"rule code is {size} bytes, over the limit of {max_bytes} bytes")],
        )
    try:
        tree = ast.parse(code, filename="rule.py")
    except SyntaxError as exc:
        raise RuleContractError(
            "syntax_error", [Issue(exc.lineno or 0, f"syntax error: {exc.msg}")]
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise RuleContractError("syntax_error", [Issue(0, f"cannot parse: {exc}")]) from None
    except (RecursionError, MemoryError) as exc:  # the parser's own recursion limit
        issue = Issue(0, f"code is nested too deeply to parse ({type(exc).__name__})")
        raise RuleContractError("static_reject", [issue]) from None
    depth = _tree_depth(tree)
    if depth > MAX_NESTING:
        issue = Issue(0, f"code is nested {depth} levels deep, over the limit of {MAX_NESTING}")
        raise RuleContractError("static_reject", [issue])
    issues: list[Issue] = []
    doc = ast.get_docstring(tree) or ""
    if not doc.strip():
        issues.append(
            Issue(1, "missing module docstring stating the normal and abnormal conditions")
        )
    assigns = _module_assignments(tree)
    params = _check_params(assigns.get("PARAMS"), issues)
    lookback = _check_lookback(assigns.get("LOOKBACK"), issues)
    ranges = _check_ranges(assigns.get("PARAM_RANGES"), params, issues)
    _check_detect(tree, issues)
    _check_imports_and_names(tree, issues)
    if issues:
        unique = sorted(set(issues), key=lambda i: (i.line, i.message))
        raise RuleContractError("static_reject", unique)
    return RuleInfo(params=params, lookback=lookback, docstring=doc.strip(), param_ranges=ranges)


def _param_literal(value: ParamValue) -> str:
    if isinstance(value, str):
        return repr(value).replace("'", '"') if '"' not in value else repr(value)
    return repr(value)


def with_params(code: str, params: Mapping[str, ParamValue]) -> str:
    """``code`` with its ``PARAMS`` dict literal replaced by ``params`` merged over it.

    A reviewer reads the file, so the literal must show the values that run (fitted ones, not the
    written defaults). Everything else in the file is kept byte for byte; code whose ``PARAMS``
    already holds these values is returned unchanged. Raises :class:`RuleContractError` when the
    code fails the static gate.
    """
    info = check_rule(code, max_bytes=10**7)
    merged = {**info.params, **dict(params)}
    if merged == info.params and all(type(merged[k]) is type(info.params[k]) for k in merged):
        return code
    node = _module_assignments(ast.parse(code))["PARAMS"].value
    assert node is not None  # the gate checked it is a dict literal
    lines = code.splitlines(keepends=True)
    start = sum(len(ln) for ln in lines[: node.lineno - 1]) + _char_offset(
        lines[node.lineno - 1], node.col_offset
    )
    end_line = node.end_lineno or node.lineno
    end = sum(len(ln) for ln in lines[: end_line - 1]) + _char_offset(
        lines[end_line - 1], node.end_col_offset or 0
    )
    items = [f"{_param_literal(k)}: {_param_literal(v)}" for k, v in merged.items()]
    literal = "{" + ", ".join(items) + "}"
    if node.col_offset + len(literal) > 90:
        literal = "{\n" + "".join(f"    {item},\n" for item in items) + "}"
    return code[:start] + literal + code[end:]


def _char_offset(line: str, byte_offset: int) -> int:
    """The character index of a UTF-8 byte offset in ``line`` (ast offsets count bytes)."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


_CONDITION = re.compile(
    r"(?P<kind>(?i:^(?:ab)?normal)|\b(?:Normal|Abnormal|NORMAL|ABNORMAL))"
    r"(?:\s+(?:conditions?|behaviou?r))?\s*:\s*"
)
"""A ``Normal:`` / ``Abnormal:`` marker: any case at the start of a paragraph, capitalised
elsewhere (so prose like "back to normal: ..." is not taken for one)."""


def docstring_conditions(code: str) -> tuple[str, str, str]:
    """``(title, normal, abnormal)`` stated by a rule's module docstring.

    ``Normal:`` and ``Abnormal:`` (also ``Normal conditions:`` and the like) are found wherever
    they stand: on their own lines, or both on one line as ``Normal: ... Abnormal: ...``. Each
    part runs to the next marker or the end of its paragraph; wrapped lines are joined, so a
    statement is never cut mid-sentence. ``title`` is the docstring's first line when that line is
    not itself a ``Normal:``/``Abnormal:`` statement. Absent parts are ``""``.
    """
    try:
        doc = ast.get_docstring(ast.parse(code)) or ""
    except (SyntaxError, ValueError):
        return "", "", ""
    paragraphs = [" ".join(ln.strip() for ln in p.splitlines()) for p in re.split(r"\n\s*\n", doc)]
    paragraphs = [p for p in paragraphs if p.strip()]
    if not paragraphs:
        return "", "", ""
    found: dict[str, list[str]] = {"normal": [], "abnormal": []}
    for para in paragraphs:
        marks = list(_CONDITION.finditer(para))
        for i, m in enumerate(marks):
            stop = marks[i + 1].start() if i + 1 < len(marks) else len(para)
            text = para[m.end() : stop].strip()
            if text:
                found[m.group("kind").lower()].append(text)
    first = doc.strip().splitlines()[0].strip()
    title = "" if _CONDITION.match(first) else first
    return title, " ".join(found["normal"]), " ".join(found["abnormal"])


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(import |from |def |class |@|\"\"\"|'''|#|[A-Z_][A-Z0-9_]* *[=:])")


DetectFunction = Callable[..., Any]
"""A rule's ``detect(values, timestamps, params)``."""


def exec_rule_source(
    code: str, filename: str, module_name: str
) -> tuple[DetectFunction, dict[str, Any]]:
    """Execute a rule module's source in a fresh namespace: its ``detect`` and the namespace.

    The source is registered in :mod:`linecache` under ``filename``, so tracebacks show the rule's
    own lines (callers keep only the frames of ``filename``). Raises whatever the module raises
    while loading (``SyntaxError`` included), or ``TypeError`` when it defines no callable
    ``detect``. It runs the code in the calling process: callers run untrusted rules only inside
    a locked-down process (:mod:`argos.sandbox`).
    """
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": module_name}
    exec(compile(code, filename, "exec"), namespace)
    detect = namespace.get("detect")
    if not callable(detect):
        raise TypeError("the rule module defines no callable detect(values, timestamps, params)")
    return detect, namespace


def _trim_to_parseable(text: str) -> str | None:
    """Drop leading prose, then trailing lines, until the text parses; None if it never does."""
    lines = text.strip("\n").splitlines()
    starts = [0] + [i for i, ln in enumerate(lines) if _CODE_START.match(ln)]
    for start in dict.fromkeys(starts):
        body = lines[start:]
        for end in range(len(body), 0, -1):
            candidate = "\n".join(body[:end]).rstrip() + "\n"
            if not candidate.strip():
                break
            try:
                ast.parse(candidate)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            return candidate
    return None


def fenced_blocks(llm_text: str) -> list[str]:
    """The contents of the fenced code blocks of an LLM answer, in order (as written)."""
    return [m.group(2) for m in _FENCE.finditer(llm_text)]


def extract_code(llm_text: str) -> str:
    """Pull rule source out of an LLM answer.

    Takes the fenced ```python block (among several, the largest one that parses; untagged fences
    are used when there is no python-tagged one; an unterminated final fence counts), or the whole
    text when there is no fence. Leading prose is skipped and trailing lines are dropped until
    :func:`ast.parse` succeeds. Raises ``ValueError`` when nothing parseable remains.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(llm_text)]
    tagged = [b for lang, b in blocks if lang in ("python", "py", "python3")]
    candidates = tagged or [b for _, b in blocks] or [llm_text]
    parsed = [c for c in (_trim_to_parseable(b) for b in candidates) if c is not None]
    if not parsed:
        raise ValueError("no parseable Python code found in the model's answer")
    with_detect = [c for c in parsed if re.search(r"^def detect\(", c, re.MULTILINE)]
    return max(with_detect or parsed, key=len)
