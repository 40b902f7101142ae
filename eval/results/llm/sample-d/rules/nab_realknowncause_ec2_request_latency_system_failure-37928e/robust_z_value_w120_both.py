"""robust_z_value_w120_both: robust z-score (median/MAD) of the value, both directions.

Normal: The value stays within 5.432 robust deviations (1.4826 x MAD, at least 0.002, the data's
    resolution) of the median of the previous 120 points.
Abnormal: The value is more than 5.432 robust deviations above or below the median of the
    previous 120 points; it alarms once per burst: only when the condition was off for the 68
    points before.
"""

import numpy as np

PARAMS = {
    "window": 120,
    "min_scale": 0.0019999999999882334,
    "threshold": 5.431770575312751,
    "persistence": 1,
    "cooldown": 68,
}
LOOKBACK = 189


def sorted_windows(x, width):
    """Every window of `width` points of x (starting at 0, 1, ...) as its sorted values' ranks.

    Windows are grouped in lanes of `width` consecutive starts, whose 2 * width points are sorted
    once; each window is the sorted list of its points' ranks within the lane (small integers), and
    the next window's list is this one without the leaving point's rank (a shift) and with the
    entering one's (a min/max insertion), all lanes at once. Yields (first window, values, ranks):
    ranks[o, j, lane] is the rank of the j-th smallest point of the window starting at
    first + lane * width + o, and values[lane, rank] its value.
    """
    n_win = len(x) - width + 1
    lanes = -(-n_win // width)
    xs = np.zeros((lanes + 1) * width)
    xs[: len(x)] = x
    rows = np.lib.stride_tricks.sliding_window_view(xs, 2 * width)[::width]
    kind = np.uint8 if width <= 128 else np.int32
    # about 65k windows a chunk (numpy calls big enough, arrays cache-sized), tables <= 16 MB
    step = max(1, min(2**16 // width, 2**24 // (width * width * np.dtype(kind).itemsize)))
    for c in range(0, lanes, step):
        order = np.argsort(rows[c : c + step], axis=1)
        values = np.take_along_axis(rows[c : c + step], order, axis=1)
        rank = np.empty(order.shape, kind)
        np.put_along_axis(rank, order, np.arange(2 * width)[None, :], axis=1)
        ranks = np.empty((width, width, len(order)), kind)
        ranks[0] = np.nonzero(order < width)[1].reshape(len(order), width).T
        leave = np.ascontiguousarray(rank[:, :width].T)
        enter = np.ascontiguousarray(rank[:, width:].T)
        gap = np.empty((width - 1, len(order)), kind)
        after = np.empty(gap.shape, bool)
        kept = np.empty(gap.shape, kind)
        for o in range(width - 1):
            s, new, a = ranks[o], ranks[o + 1], enter[o]
            np.subtract(s[1:], s[:-1], out=gap)
            np.greater_equal(s[:-1], leave[o], out=after)
            np.multiply(after, gap, out=gap)
            np.add(s[:-1], gap, out=kept)
            np.maximum(kept[:-1], a, out=new[1:-1])
            np.minimum(new[1:-1], kept[1:], out=new[1:-1])
            np.minimum(kept[0], a, out=new[0])
            np.maximum(kept[-1], a, out=new[-1])
        yield c * width, values, ranks


def past_median_mad(x, width):
    """Median and median absolute deviation of the `width` points before t (NaN until then).

    Exactly np.median of each window and of its absolute deviations from that median (the mean of
    the two middle values for an even width). From the windows' sorted ranks (sorted_windows,
    O(width) small-integer operations per point, no float selection): the median is the middle
    entry, and the deviations below it (read downwards) and above it (read upwards) are two
    sorted lists, so the MAD is a k-th smallest of two sorted lists, a binary search in
    O(log width) per point. Windows holding a non-finite value, and short inputs (under four
    widths of windows, where it is cheaper), go through np.median itself.
    """
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    todo = np.arange(len(windows))
    if width > 1 and len(windows) >= 4 * width:
        h = width // 2
        j = h if width % 2 else h - 1  # the MAD is the j-th (and j+1-th) smallest deviation
        finite = np.where(np.isfinite(x[:-1]), x[:-1], 0.0)
        for first, values, ranks in sorted_windows(finite, width):
            lanes = ranks.shape[2]
            flat_v, flat_r = values.reshape(-1), ranks.reshape(-1)
            lane_v = np.arange(lanes) * (2 * width)
            slot0 = np.arange(width)[:, None] * (width * lanes) + np.arange(lanes)

            def value(at):
                """Values of the windows' sorted entries at flat positions `at` of `ranks`."""
                return np.take(flat_v, lane_v + np.take(flat_r, at))

            mid = slot0 + h * lanes
            m = value(mid) if width % 2 else (value(mid - lanes) + value(mid)) / 2.0
            # The deviations below the median, m - (h-1-k)-th smallest, and above it, (h+k)-th
            # smallest - m, are two sorted lists; `rest` = how many below are not among the j+1
            # smallest deviations, by binary lifting (the k-th of two sorted lists).
            rest = np.full(m.shape, h)
            bit = 1 << h.bit_length()
            while bit > 1:
                bit >>= 1
                at = slot0 + np.maximum(rest - bit, 0) * lanes
                less = (m - value(at)) < (value(at + (j + 1) * lanes) - m)
                rest -= bit * ((rest >= bit) & less)
            # the j-th smallest deviation: the larger of the last below and the last above taken
            # (an entry past either end is on the wrong side of the median: <= 0, never larger)
            at = slot0 + rest * lanes
            d = np.maximum(m - value(at), value(at + j * lanes) - m)
            if width % 2 == 0:
                # and the next one: the smaller of the next below and the next above
                below = np.where(rest > 0, m - value(np.maximum(at - lanes, slot0)), np.inf)
                above = value(np.minimum(at + h * lanes, slot0 + (width - 1) * lanes)) - m
                d = (d + np.minimum(below, np.where(rest < h, above, np.inf))) / 2.0
            last = min(first + width * lanes, len(windows))
            med[width + first : width + last] = m.T.reshape(-1)[: last - first]
            mad[width + first : width + last] = d.T.reshape(-1)[: last - first]
        held = np.concatenate(([0], np.cumsum(~np.isfinite(x[:-1]))))
        todo = np.nonzero((held[width:] > held[:-width]) | ~np.isfinite(med[width:]))[0]
    for a in range(0, len(todo), 20000):
        idx = todo[a : a + 20000]
        block = windows[idx]
        m = np.median(block, axis=1)
        med[width + idx] = m
        mad[width + idx] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad


def floor_scale(scale, level):
    """Keep a scale strictly positive so a perfectly flat history still gives finite scores."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = values
    median, mad = past_median_mad(x, int(params["window"]))
    spread = np.maximum(1.4826 * mad, params["min_scale"])
    s = (x - median) / floor_scale(spread, median)
    return np.asarray(s, dtype=float)


def apply_cooldown(alarm, quiet):
    """Keep an alarm only if the condition did not hold in any of the previous `quiet` points
    (one alarm at the start of each burst)."""
    held = np.concatenate(([0], np.cumsum(alarm)))
    idx = np.arange(len(alarm))
    return alarm & (held[idx] == held[np.maximum(idx - quiet, 0)])


def detect(values, timestamps, params=PARAMS):
    """True where the point is anomalous (see the module docstring)."""
    s = np.abs(score(values, timestamps, params))
    k = int(params["persistence"])
    if k > 1:
        # the smallest score of the last k points: the condition held k points in a row
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            last_k = held[k - 1 :]
            last_k[:] = s[k - 1 :]
            for j in range(1, k):
                np.minimum(last_k, s[k - 1 - j : len(s) - j], out=last_k)
        s = held
    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]
    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
    return alarm
