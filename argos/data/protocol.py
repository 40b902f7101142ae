"""Chronological splits, and what each side of an evaluation is allowed to see.

Every series is cut into three consecutive parts::

    [0, val_start)            train       labeled, handed to ``Method.fit``
    [val_start, test_start)   validation  labeled, handed to ``Method.fit``
    [test_start, n)           test        scored; its labels never leave the scorer

``train_end`` is the exclusive end of the train part proper and always equals ``val_start``; the
"train part including validation" that baselines fit their thresholds on is ``[0, test_start)``.

Where ``test_start`` comes from, in order of precedence:

1. ``series.meta["test_start"]``: an official split (KPI's train / ground-truth files);
2. ``series.meta["train_fraction"]``: a per-series override (Yahoo A2 is 50/50);
3. ``SplitSpec.train_fraction`` (70/30 by default).

The validation part is the last ``SplitSpec.validation_fraction`` of the train part. Both cuts
are floored, exactly as :meth:`argos.data.series.SplitSpec.bounds` does.

Nothing is fit on test *by construction*: :func:`fit_inputs` first cuts every series at
``test_start`` and then copies the train and validation slices into fresh arrays (a numpy view
would still reach the whole array, test labels included, through ``.base``). Detection receives the
whole series through :func:`detection_input`, which strips the labels. Only :func:`test_truth`, used
by the scorer, reads labels at or after ``test_start``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from argos._types import BoolArray
from argos.data.series import DataError, Series, SplitSpec


@dataclass(frozen=True)
class SeriesSplit:
    """Split indices of one series (see the module docstring for the layout).

    Attributes:
        series_id: id of the series the indices refer to.
        n: number of points in the series.
        train_end: exclusive end of the train part proper (equals ``val_start``).
        val_start: first index of the validation part (``== test_start`` when there is none).
        test_start: first index of the test part.
        source: where ``test_start`` came from: ``"official"``, ``"series"`` (a per-series
            ``train_fraction``) or ``"spec"``.
    """

    series_id: str
    n: int
    train_end: int
    val_start: int
    test_start: int
    source: str

    @property
    def n_train(self) -> int:
        """Points in the train part proper (validation excluded)."""
        return self.train_end

    @property
    def n_validation(self) -> int:
        """Points in the validation part."""
        return self.test_start - self.val_start

    @property
    def n_test(self) -> int:
        """Points in the test part."""
        return self.n - self.test_start


def split_series(series: Series, spec: SplitSpec) -> SeriesSplit:
    """Compute the chronological train / validation / test indices of ``series``.

    Raises :class:`DataError` when an official ``test_start`` is out of range or a split leaves the
    train or the test part empty.
    """
    n = len(series)
    meta = series.meta
    effective = spec
    if "test_start" in meta:
        _as_index(meta["test_start"], series.id)
        source = "official"
    elif "train_fraction" in meta:
        fraction = float(meta["train_fraction"])
        if not 0.0 < fraction < 1.0:
            raise DataError(
                f"meta['train_fraction'] must be in (0, 1), got {fraction}",
                source=f"series {series.id!r}",
            )
        effective = replace(spec, train_fraction=fraction)
        source = "series"
    else:
        source = "spec"
    # SplitSpec.bounds floors both cuts; keep one definition of the arithmetic.
    val_start, test_start = effective.bounds(series)
    if not 0 < test_start < n:
        raise DataError(
            f"split leaves an empty train or test part: test_start={test_start} for {n} points",
            source=f"series {series.id!r}",
        )
    val_start = max(val_start, 1)  # keep at least one train point
    return SeriesSplit(
        series_id=series.id,
        n=n,
        train_end=val_start,
        val_start=val_start,
        test_start=test_start,
        source=source,
    )


def _as_index(raw: Any, series_id: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise DataError(
            f"meta['test_start'] must be an integer index, got {raw!r}",
            source=f"series {series_id!r}",
        ) from None
    return value


def _copy_slice(series: Series, start: int, stop: int) -> Series:
    """Points ``start:stop`` in freshly allocated arrays (no view back into the full series)."""
    labels = None if series.labels is None else np.array(series.labels[start:stop], copy=True)
    return Series(
        id=series.id,
        timestamps=np.array(series.timestamps[start:stop], copy=True),
        values=np.array(series.values[start:stop], copy=True),
        labels=labels,
        meta=_fit_meta(series.meta),
    )


def _fit_meta(meta: Any) -> dict[str, Any]:
    """Series metadata safe to show the fitting side (plain scalars only, copied)."""
    return {k: v for k, v in dict(meta).items() if isinstance(v, str | int | float | bool)}


@dataclass(frozen=True)
class FitInputs:
    """What the fitting side of a method receives for one training unit.

    ``train[i]`` and ``validation[i]`` are consecutive labeled slices of the same series (the
    validation slice may be empty). Both end before that series' ``test_start``.
    """

    train: list[Series]
    validation: list[Series]


def fit_inputs(group: Sequence[Series], spec: SplitSpec) -> FitInputs:
    """Build the labeled train and validation slices of every series of a training unit.

    Each series is first cut at its ``test_start``; the slices are copies, so nothing handed to
    ``Method.fit`` can reach a test point or a test label.
    """
    train: list[Series] = []
    validation: list[Series] = []
    for series in group:
        split = split_series(series, spec)
        history = _copy_slice(series, 0, split.test_start)  # the test part is gone from here on
        train.append(history.slice(0, split.train_end))
        validation.append(history.slice(split.val_start, split.test_start))
    # ``slice`` returns views of ``history``, whose arrays hold only pre-test points.
    return FitInputs(train=train, validation=validation)


def detection_input(series: Series) -> Series:
    """The whole series without labels: what a fitted detector receives.

    Metadata is reduced to plain scalars, as on the fitting side, so nothing label-shaped rides
    along in ``meta``.
    """
    unlabeled = series.without_labels()
    return Series(
        id=unlabeled.id,
        timestamps=unlabeled.timestamps,
        values=unlabeled.values,
        meta=_fit_meta(unlabeled.meta),
    )


def test_truth(series: Series, split: SeriesSplit) -> BoolArray:
    """Labels of the test part, for the scorer only. Raises when the series is unlabeled."""
    if series.labels is None:
        raise DataError("series has no labels to score against", source=f"series {series.id!r}")
    return series.labels[split.test_start :]


def merge_slices(parts: Sequence[Series]) -> Series:
    """Concatenate consecutive slices of one series (e.g. train then validation) into one.

    Empty parts are skipped. All parts must share the series id; labels are kept only when every
    non-empty part has them.
    """
    nonempty = [p for p in parts if len(p) > 0]
    if not nonempty:
        raise ValueError("merge_slices needs at least one non-empty part")
    ids = {p.id for p in nonempty}
    if len(ids) != 1:
        raise ValueError(f"merge_slices got parts of different series: {sorted(ids)}")
    if len(nonempty) == 1:
        return nonempty[0]
    labels = None
    if all(p.labels is not None for p in nonempty):
        labels = np.concatenate([p.labels for p in nonempty if p.labels is not None])
    return Series(
        id=nonempty[0].id,
        timestamps=np.concatenate([p.timestamps for p in nonempty]),
        values=np.concatenate([p.values for p in nonempty]),
        labels=labels,
        meta=nonempty[0].meta,
    )


# pytest would otherwise try to collect ``test_truth`` as a test when it is imported into a test.
test_truth.__test__ = False  # type: ignore[attr-defined]
