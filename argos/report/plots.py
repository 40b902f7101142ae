"""Matplotlib figures for reports and ``argos datasets plot`` (Agg backend, PNG bytes).

Every function here returns PNG bytes drawn on a private :class:`~matplotlib.figure.Figure` with the
Agg canvas (no pyplot state, no display needed, safe in worker processes). :func:`png_data_uri`
turns them into ``data:image/png;base64,...`` strings for self-contained HTML.

Large series are drawn from a subset of their points chosen by :func:`downsample_indices`: the
minimum and maximum of every pixel-wide bucket (so spikes and dips survive) plus every point that is
labeled anomalous or detected (so no anomaly or detection disappears from the picture). Anomaly
spans and detection markers are computed on the full arrays, never on the subset.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from argos._types import BoolArray, FloatArray, IntArray
from argos.metrics import events

EPOCH_MIN = 100_000_000
"""Timestamps at or above this (1973-03-03) are drawn as dates; smaller ones as an index."""

COLOR_VALUE = "#3b6ea5"
COLOR_ANOMALY = "#f4a6a6"
COLOR_MISSED = "#f5a623"
COLOR_TP = "#1a9850"
COLOR_FP = "#d73027"
COLOR_SPLIT = "#555555"
DPI = 100


@dataclass(frozen=True)
class Boundary:
    """A vertical line at point index ``index`` with ``label`` written right of it (a split)."""

    index: int
    label: str


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding ``png`` in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def downsample_indices(values: FloatArray, buckets: int, keep: BoolArray | None = None) -> IntArray:
    """Indices of the points to draw for ``values`` on about ``buckets`` pixel columns.

    Every point when ``len(values) <= 2 * buckets``; otherwise the first and last point, the
    positions of the minimum and maximum of each of ``buckets`` equal slices, and every index where
    ``keep`` is True (labeled or detected points), sorted and unique.
    """
    n = len(values)
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    if keep is not None and len(keep) != n:
        raise ValueError(f"keep has {len(keep)} points, values {n}")
    if n <= 2 * buckets:
        return np.arange(n, dtype=np.int64)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    finite = np.where(np.isfinite(values), values, np.nan)
    picks: list[IntArray] = [np.array([0, n - 1], dtype=np.int64)]
    # Equal-width buckets, padded to a rectangle so argmin/argmax run vectorised.
    width = int(np.max(np.diff(edges)))
    starts = edges[:-1]
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx < edges[1:, None]
    idx = np.minimum(idx, n - 1)
    block = np.where(valid, finite[idx], np.nan)
    has_value = ~np.all(np.isnan(block), axis=1)
    lo = np.where(np.isnan(block), np.inf, block).argmin(axis=1)
    hi = np.where(np.isnan(block), -np.inf, block).argmax(axis=1)
    rows = np.flatnonzero(has_value)
    picks.append(idx[rows, lo[rows]].astype(np.int64))
    picks.append(idx[rows, hi[rows]].astype(np.int64))
    if keep is not None:
        picks.append(np.flatnonzero(keep).astype(np.int64))
    return np.unique(np.concatenate(picks))


def _x_axis(timestamps: IntArray) -> tuple[FloatArray, bool]:
    """X coordinates: matplotlib date numbers for Unix-second timestamps, else the raw index."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) and int(ts.min()) >= EPOCH_MIN:
        nums = mdates.date2num(ts.astype("datetime64[s]"))  # type: ignore[no-untyped-call]
        return np.asarray(nums, dtype=np.float64), True
    return ts.astype(np.float64), False


def _merge_spans(starts: IntArray, ends: IntArray, min_gap: int) -> list[tuple[int, int]]:
    """Merge [start, end) spans closer than ``min_gap`` points (cheaper to draw, same picture)."""
    out: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and s - out[-1][1] < min_gap:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _span_x(x: FloatArray, a: int, b: int, min_width: float) -> tuple[float, float]:
    """Left x and width of points [a, b), at least ``min_width`` wide (a few pixels) and centred
    on the span, so a one-point anomaly on a long series stays visible."""
    left = float(x[a])
    right = float(x[min(b, len(x)) - 1])
    if right - left < min_width:
        mid = (left + right) / 2
        return mid - min_width / 2, min_width
    return left, right - left


def _render(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


@dataclass(frozen=True)
class SeriesPanel:
    """What one series panel shows (see :func:`series_figure`)."""

    values: FloatArray
    timestamps: IntArray
    labels: BoolArray | None
    detections: BoolArray | None = None
    boundaries: Sequence[Boundary] = ()
    title: str = ""


def series_figure(
    values: FloatArray,
    timestamps: IntArray,
    labels: BoolArray | None,
    detections: BoolArray | None = None,
    *,
    boundaries: Sequence[Boundary] = (),
    title: str = "",
    width_px: int = 1300,
    height_px: int = 270,
) -> bytes:
    """One series over time as PNG bytes.

    Draws the values (downsampled without losing labeled or detected points), the labeled anomaly
    events shaded (orange and hatched when no detection touches them: *missed*), detections inside
    an event as true positives and outside every event as false positives, and ``boundaries``
    (train / validation / test) as vertical lines.
    """
    panel = SeriesPanel(values, timestamps, labels, detections, boundaries, title)
    return stacked_series_figure([panel], width_px=width_px, panel_height_px=height_px)


def stacked_series_figure(
    panels: Sequence[SeriesPanel], *, width_px: int = 1300, panel_height_px: int = 270
) -> bytes:
    """Several series panels (as :func:`series_figure` draws them) stacked in one PNG."""
    if not panels:
        raise ValueError("no series to draw")
    k = len(panels)
    fig = Figure(figsize=(width_px / DPI, k * panel_height_px / DPI), dpi=DPI)
    for i, p in enumerate(panels):
        bottom = (k - 1 - i) / k
        _draw_series(fig, bottom, 1 / k, p, width_px)
    return _render(fig)


def _draw_series(fig: Figure, bottom: float, height: float, p: SeriesPanel, width_px: int) -> None:
    """Draw panel ``p`` in the horizontal band [bottom, bottom + height] of ``fig``."""
    values = np.asarray(p.values, dtype=np.float64)
    timestamps, labels, detections = p.timestamps, p.labels, p.detections
    boundaries, title = p.boundaries, p.title
    n = len(values)
    if len(timestamps) != n:
        raise ValueError(f"{len(timestamps)} timestamps for {n} values")
    truth = np.zeros(n, dtype=bool) if labels is None else np.asarray(labels, dtype=bool)
    pred = None if detections is None else np.asarray(detections, dtype=bool)
    if len(truth) != n or (pred is not None and len(pred) != n):
        raise ValueError("labels and detections must have one entry per value")
    x, is_date = _x_axis(timestamps)
    plot_px = max(width_px - 140, 100)
    keep = truth if pred is None else (truth | pred)
    idx = downsample_indices(np.asarray(values, dtype=np.float64), plot_px, keep)

    ax = fig.add_axes((0.055, bottom + 0.2 * height, 0.745, 0.66 * height))
    ax.plot(x[idx], values[idx], color=COLOR_VALUE, linewidth=0.8, zorder=2)

    starts, ends = events(truth)
    min_gap = max(1, n // plot_px)
    min_w = 3 * (float(x[-1]) - float(x[0])) / plot_px if n > 1 else 1.0
    hit = np.zeros(len(starts), dtype=bool)
    if pred is not None and len(starts):
        csum = np.concatenate(([0], np.cumsum(pred)))
        hit = (csum[ends] - csum[starts]) > 0
    handles: list[Line2D | Patch] = [Line2D([], [], color=COLOR_VALUE, lw=1, label="value")]
    if len(starts):
        found = _merge_spans(starts[hit], ends[hit], min_gap) if pred is not None else []
        spans = _merge_spans(starts, ends, min_gap) if pred is None else found
        tf = ax.get_xaxis_transform()

        def shade(bands: list[tuple[int, int]], **style: Any) -> None:
            """Full-height bands over index ranges ``bands``, behind the values."""
            ax.broken_barh(
                [_span_x(x, a, b, min_w) for a, b in bands],
                (0, 1),
                transform=tf,
                zorder=1,
                linewidth=0,
                **style,
            )

        shade(spans, color=COLOR_ANOMALY, alpha=0.6)
        handles.append(Patch(color=COLOR_ANOMALY, alpha=0.6, label="labeled anomaly"))
        if pred is not None and (~hit).any():
            missed = _merge_spans(starts[~hit], ends[~hit], min_gap)
            shade(missed, facecolor=COLOR_MISSED, alpha=0.55, hatch="///", edgecolor="#a0620a")
            mx = [x[a] for a, _ in missed]
            ax.scatter(
                mx,
                np.full(len(mx), 1.0),
                transform=tf,
                marker="v",
                s=40,
                color=COLOR_MISSED,
                edgecolor="#a0620a",
                zorder=4,
                clip_on=False,
            )
            handles.append(
                Patch(
                    facecolor=COLOR_MISSED,
                    hatch="///",
                    edgecolor="#a0620a",
                    label=f"missed ({int((~hit).sum())} events)",
                )
            )
    if pred is not None:
        tp = np.flatnonzero(pred & truth)
        fp = np.flatnonzero(pred & ~truth)
        ax.scatter(x[tp], values[tp], s=9, color=COLOR_TP, zorder=3, linewidths=0)
        ax.scatter(x[fp], values[fp], s=16, color=COLOR_FP, marker="x", zorder=3, linewidths=1)
        handles.append(
            Line2D(
                [],
                [],
                color=COLOR_TP,
                marker="o",
                lw=0,
                ms=4,
                label=f"true positive ({len(tp)} pts)",
            )
        )
        handles.append(
            Line2D(
                [],
                [],
                color=COLOR_FP,
                marker="x",
                lw=0,
                ms=5,
                label=f"false positive ({len(fp)} pts)",
            )
        )
    for b in boundaries:
        if 0 < b.index < n:
            ax.axvline(float(x[b.index]), color=COLOR_SPLIT, linestyle="--", linewidth=1, zorder=3)
    edges = [0, *[b.index for b in boundaries if 0 < b.index < n], n]
    names = ["", *[b.label for b in boundaries if 0 < b.index < n]]
    if boundaries:
        names[0] = "train"
        for i in range(len(edges) - 1):
            mid = (float(x[edges[i]]) + float(x[edges[i + 1] - 1])) / 2
            ax.text(
                mid,
                1.02,
                names[i],
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=9,
                color=COLOR_SPLIT,
            )
    if is_date:
        locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(formatter)
    else:
        ax.set_xlabel("index")
    if n:
        ax.set_xlim(float(x[0]), float(x[-1]))
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.6, zorder=0)
    if title:
        top = bottom + height - 0.005 * height
        fig.text(0.055, top, title, fontsize=10, va="top", ha="left", weight="bold")
    fig.legend(
        handles=handles,
        loc="center left",
        bbox_to_anchor=(0.81, bottom + 0.55 * height),
        fontsize=8,
        frameon=False,
    )


def progress_figure(
    iterations: Sequence[int],
    best_f1: Sequence[float | None],
    accepted: Sequence[int],
    rejected: Sequence[int],
    *,
    title: str = "",
    width_px: int = 640,
    height_px: int = 260,
) -> bytes:
    """Training progress of one unit: best validation F1 per iteration (line) over the candidates
    accepted and rejected in that iteration (stacked bars)."""
    if not len(iterations) == len(best_f1) == len(accepted) == len(rejected):
        raise ValueError("iterations, best_f1, accepted and rejected must have the same length")
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    ax = fig.add_axes((0.1, 0.18, 0.78, 0.68))
    it = np.asarray(iterations, dtype=np.float64)
    acc = np.asarray(accepted, dtype=np.float64)
    rej = np.asarray(rejected, dtype=np.float64)
    ax.bar(it, acc, color=COLOR_TP, alpha=0.5, width=0.6, label="candidates accepted")
    ax.bar(it, rej, bottom=acc, color=COLOR_FP, alpha=0.35, width=0.6, label="rejected")
    ax.set_ylabel("candidates", fontsize=8)
    ax.set_xlabel("iteration", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_xticks(it)
    ax2 = ax.twinx()
    f1 = np.array([np.nan if v is None else v for v in best_f1], dtype=np.float64)
    ax2.plot(it, f1, color=COLOR_VALUE, marker="o", linewidth=1.5, label="best validation F1")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("validation F1", fontsize=8)
    ax2.tick_params(labelsize=8)
    handles = [
        Patch(color=COLOR_TP, alpha=0.5, label="accepted"),
        Patch(color=COLOR_FP, alpha=0.35, label="rejected"),
        Line2D([], [], color=COLOR_VALUE, marker="o", label="best validation F1"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", frameon=False)
    if title:
        fig.text(0.1, 0.97, title, fontsize=9, va="top", ha="left", weight="bold")
    return _render(fig)
