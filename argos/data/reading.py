"""The reading primitives every loader shares: columns by header spelling, numbers, timestamps.

A layout names the columns it needs (:class:`Column`: canonical name, accepted header spellings,
required or not); :func:`resolve_columns` finds them in a header, case and surrounding spaces
ignored. :func:`read_csv_columns` reads a CSV(.gz) in one ``pandas.read_csv`` call and checks its
numeric columns; :func:`numeric_column` and :func:`timestamp_column` turn a column into numbers or
Unix seconds. Every problem is a :class:`~argos.data.series.DataError` naming the file and the
first bad line (:func:`reject_first`), never a pandas traceback. The file helpers name a series
after its file (:func:`file_stem`) and order files as people number them (:func:`natural_key`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from argos.data.series import DataError, show_value

_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "-nan"})
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class Column:
    """A column a layout needs: canonical name, accepted header spellings, required or not."""

    name: str
    aliases: tuple[str, ...]
    required: bool = True
    numeric: bool = True


TIMESTAMP = Column("timestamp", ("timestamp", "timestamps"))
VALUE = Column("value", ("value",))
LABEL_OPTIONAL = Column("label", ("label", "is_anomaly", "anomaly"), required=False)
LABEL_REQUIRED = Column("label", ("label", "is_anomaly", "anomaly"))


def resolve_columns(found: Sequence[Any], wanted: Sequence[Column], source: str) -> dict[str, str]:
    """Map canonical names to the file's header names (case and surrounding spaces ignored)."""
    norm = {str(c).lstrip("\ufeff").strip().lower(): str(c) for c in found}  # BOM from Excel
    out: dict[str, str] = {}
    for col in wanted:
        hit = next((norm[a] for a in col.aliases if a in norm), None)
        if hit is not None:
            out[col.name] = hit
        elif col.required:
            spelled = " or ".join(repr(a) for a in col.aliases)
            have = ", ".join(repr(str(c)) for c in found) or "none"
            raise DataError(
                f"missing column {spelled} (columns found: {have})", source=source, row=1
            )
    return out


def read_csv_columns(
    path: Path, wanted: Sequence[Column], *, categorical: Sequence[str] = ()
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read the wanted columns of a CSV(.gz) with a header; return the frame and the column map.

    Numeric columns are checked here: a cell that is neither a number nor empty/NaN is an error
    naming its line. Blank lines are kept so that frame row ``i`` is file line ``i + 2``; trailing
    blank lines are dropped.
    """
    source = str(path)
    if not path.is_file():
        raise DataError("file not found", source=source)
    try:
        header = pd.read_csv(path, nrows=0)
        cols = resolve_columns(list(header.columns), wanted, source)
        dtype: dict[Hashable, str] = {cols[c]: "category" for c in categorical if c in cols}
        # No usecols: with it pandas silently accepts rows with too many fields.
        df = pd.read_csv(
            path,
            dtype=dtype or None,
            skip_blank_lines=False,
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", source=source) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"not a well-formed CSV file ({brief_error(exc)})", source=source) from None
    except UnicodeDecodeError:
        raise DataError("not a text CSV file (cannot decode as UTF-8)", source=source) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read file ({brief_error(exc)})", source=source) from None
    df = _drop_trailing_blank(df)
    if len(df) == 0:
        raise DataError("no data rows after the header", source=source)
    for col in wanted:
        if col.numeric and col.name in cols and col.name != "timestamp":
            df[cols[col.name]] = numeric_column(df[cols[col.name]], col.name, source, first_line=2)
    return df, cols


def _drop_trailing_blank(df: pd.DataFrame) -> pd.DataFrame:
    if len(df) == 0:
        return df
    filled = df.notna().any(axis=1).to_numpy()
    if filled.all():
        return df
    nz = np.flatnonzero(filled)
    end = int(nz[-1]) + 1 if len(nz) else 0
    return df.iloc[:end]


def brief_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def numeric_column(
    col: pd.Series, what: str, source: str, *, first_line: int
) -> npt.NDArray[np.float64] | npt.NDArray[np.int64]:
    """Column as numbers (integers stay int64; missing -> NaN); a non-numeric cell is an error."""
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64)
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    num = pd.to_numeric(col, errors="coerce")
    text = col.astype("string").str.strip().str.lower()
    bad = num.isna().to_numpy() & ~(col.isna().to_numpy() | text.isin(_MISSING_TOKENS).to_numpy())
    reject_first(bad, col, lambda shown: f"{what} {shown} is not a number", source, first_line)
    return num.to_numpy(dtype=np.float64, na_value=np.nan)


def reject_first(
    bad: npt.NDArray[np.bool_],
    col: pd.Series,
    problem: str | Callable[[str], str],
    source: str,
    first_line: int,
    row_kind: str = "line",
) -> None:
    """Raise a :class:`DataError` at the first row where ``bad`` is True (if any): ``problem``, or
    ``problem(shown)`` with that row's cell of ``col`` shown by :func:`show_value`."""
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    message = problem if isinstance(problem, str) else problem(show_value(col.iloc[i]))
    raise DataError(message, source=source, row=first_line + i, row_kind=row_kind)


def timestamp_column(col: pd.Series, source: str, *, first_line: int) -> npt.NDArray[Any]:
    """Timestamps as numbers: integer seconds kept as is, date strings parsed to Unix seconds UTC.

    Naive date strings are taken as UTC; strings with an offset are converted to UTC. A column
    that is all numbers is returned as float64 (whole-number and ordering checks happen in
    :meth:`Series.create`); sub-second dates are an error.
    """
    reject_first(col.isna().to_numpy(), col, "missing timestamp", source, first_line)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):  # Parquet keeps real datetimes
        parsed = pd.to_datetime(col, utc=True)
    elif pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64)  # the common case: no copy, no float round trip
    elif pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64)
    else:
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            return num.to_numpy(dtype=np.float64)
        parsed = _parse_dates(col, source, first_line)
    ns = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    reject_first(
        ns % 1_000_000_000 != 0,
        col,
        lambda shown: f"timestamp {shown} has fractional seconds (whole seconds required)",
        source,
        first_line,
    )
    return ns // 1_000_000_000


def _parse_dates(col: pd.Series, source: str, first_line: int) -> pd.Series:
    text = col.astype(str).str.strip()
    try:
        parsed = pd.to_datetime(text, utc=True, errors="coerce")
    except (ValueError, TypeError, OverflowError):
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        # pandas infers one format from the first row; retry element-wise before blaming a row.
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna().to_numpy()
    reject_first(
        bad,
        col,
        lambda shown: f"timestamp {shown} is neither integer seconds nor a date",
        source,
        first_line,
    )
    return parsed


def track_progress(items: Sequence[_T], description: str, progress: bool) -> Iterable[_T]:
    if not progress:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, console=Console(stderr=True), transient=True)


def natural_key(path: Path) -> tuple[Any, ...]:
    parts = re.split(r"(\d+)", path.name)
    return tuple(int(p) if p.isdigit() else p.lower() for p in parts)


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq", ".txt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
