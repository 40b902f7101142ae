"""The numpy helper functions a rendered rule carries, as source text (only the ones it needs).

Each entry of :data:`HELPER_SOURCES` is the source of one top-level function that
:mod:`argos.rules.templates` writes into a rule module when the rule's transform or scorer calls
it (the grammar in :mod:`argos.rules.grammar` names them). The text is part of every rendered rule,
so changing it changes the rules the generator writes (and what
:mod:`argos.rules.recognise` accepts as a template rendering); the same text is compiled in-process
for the search, so the search and the exported rule compute the same numbers.

Causal and of bounded memory by construction: every value at index t is computed from points <= t,
and from at most the rule's ``LOOKBACK`` points before it (``ewma_before`` truncates the weights
below 0.1%, ``window_cusum`` restarts its sums at most ``horizon`` points back), in the same
order wherever those points sit in the input, so a stream of the last ``LOOKBACK`` points labels
exactly as a batch run does. numpy only (and ``math`` for ``ewma_before``).
"""

from __future__ import annotations

HELPER_SOURCES: dict[str, str] = {
    "window_stats": '''
def window_stats(x, width, lag):
    """Mean and std of the `width` points ending `lag` points before t (NaN until they exist).

    Every window is summarised from its own points only: blocks of 1, 2, 4, ... points are merged
    pairwise (Chan's formula for the mean and the sum of squared deviations), then the blocks
    that add up to `width` are merged. So the numbers are precise at any level of the series and
    identical wherever the window sits in the input, and a missing value spoils only the windows
    that hold it.
    """
    n = len(x)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    first = width - 1 + lag
    if n <= first:
        return mean, std
    # block_mean[i] and block_m2[i] describe the `size` points starting at index i
    size, block_mean, block_m2 = 1, np.asarray(x, dtype=float), np.zeros(n)
    blocks = []
    while size <= width:
        if width & size:
            blocks.append((size, block_mean, block_m2))
        if 2 * size > width:
            break
        d = block_mean[size:] - block_mean[:-size]
        block_m2 = block_m2[:-size] + block_m2[size:] + d * d * (size / 2)
        block_mean = block_mean[:-size] + d * 0.5
        size *= 2
    # merge the blocks of the window starting at i, largest first, each after the previous one
    windows = n - width + 1
    count, offset = 0, 0
    m = m2 = np.zeros(windows)
    for size, block_mean, block_m2 in reversed(blocks):
        bm = block_mean[offset : offset + windows]
        bq = block_m2[offset : offset + windows]
        if count == 0:
            m, m2 = bm, bq
        else:
            d = bm - m
            m2 = m2 + bq + d * d * (count * size / (count + size))
            m = m + d * (size / (count + size))
        count += size
        offset += size
    mean[first:] = m[: n - first]
    std[first:] = np.sqrt(m2[: n - first] / width)
    return mean, std
''',
    "floor_scale": '''
def floor_scale(scale, level):
    """Keep a scale strictly positive so a perfectly flat history still gives finite scores."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))
''',
    "sorted_windows": '''
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
''',
    "past_median_mad": '''
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
''',
    "ewma_before": '''
def ewma_before(x, alpha):
    """EWMA of the points before t (truncated where weights fall below 0.1%; NaN until then)."""
    n = len(x)
    span = max(1, int(math.ceil(math.log(1e-3) / math.log(1.0 - alpha))))
    out = np.full(n, np.nan)
    if n <= span:
        return out
    weights = alpha * (1.0 - alpha) ** np.arange(span)
    weights /= weights.sum()
    smooth = np.convolve(x, weights)[:n]
    out[span:] = smooth[span - 1 : n - 1]
    return out
''',
    "run_length": '''
def run_length(x):
    """How many consecutive points up to t share the value at t."""
    idx = np.arange(len(x))
    changed = np.concatenate(([True], x[1:] != x[:-1]))
    return (idx - np.maximum.accumulate(np.where(changed, idx, 0)) + 1).astype(float)
''',
    "spectral_saliency": '''
def spectral_saliency(x, width):
    """Spectral-residual saliency of the last point of each window of `width` points ending at t,
    relative to the window's mean saliency (Ren et al., 2019; 5 extrapolated points pad it)."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < width:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x, width)
    for a in range(0, len(windows), 8000):
        block = windows[a : a + 8000]
        block = block - block.mean(axis=1, keepdims=True)
        # extrapolate from the 6 points before the last one, so the last point stays the edge
        seg = block[:, -7:-1]
        slopes = (seg[:, -1:] - seg[:, :-1]) / np.arange(5, 0, -1)
        ahead = seg[:, 1] + slopes.sum(axis=1)
        ext = np.concatenate((block, np.repeat(ahead[:, None], 5, axis=1)), axis=1)
        spec = np.fft.fft(ext, axis=1)
        log_amp = np.log(np.abs(spec) + 1e-8)
        pad = np.concatenate((log_amp[:, :1], log_amp, log_amp[:, -1:]), axis=1)
        smooth = (pad[:, :-2] + pad[:, 1:-1] + pad[:, 2:]) / 3.0
        residual = np.exp(log_amp - smooth + 1j * np.angle(spec))
        sal = np.abs(np.fft.ifft(residual, axis=1))
        ref = sal[:, :width].mean(axis=1) + 1e-8
        out[width - 1 + a : width - 1 + a + len(block)] = (sal[:, width - 1] - ref) / ref
    return out
''',
    "window_cusum": '''
def window_cusum(z, horizon):
    """For each t, the larger of 0 and the largest sum of z over the last m points, m = 1 ..
    `horizon` (the CUSUM recursion max(0, c + z) restarted at most `horizon` points back; NaN until
    `horizon` points exist).

    Blocks of 1, 2, 4, ... points carry their sum and their largest suffix sum; a block merges
    with the one after it as (sum + sum after, max(suffix after, sum after + suffix)), then the
    blocks that add up to `horizon` are merged from t backwards. O(n log horizon), and the number
    at t is computed from the `horizon` points ending at t only, in the same order wherever they
    sit in the input (a stream gives the batch's numbers bit for bit).
    """
    n = len(z)
    out = np.full(n, np.nan)
    if n < horizon:
        return out
    # total[i] and best[i]: sum and largest suffix sum of the `size` points starting at index i
    size, total, best = 1, np.asarray(z, dtype=float), np.asarray(z, dtype=float)
    blocks = []
    while size <= horizon:
        if horizon & size:
            blocks.append((size, total, best))
        if 2 * size > horizon:
            break
        best = np.maximum(best[size:], total[size:] + best[:-size])
        total = total[:-size] + total[size:]
        size *= 2
    # the window starting at i: its smallest block ends it, each larger one goes before the last
    windows = n - horizon + 1
    end = horizon
    acc_total = acc_best = np.zeros(windows)
    for size, total, best in blocks:
        start = end - size
        bt = total[start : start + windows]
        bb = best[start : start + windows]
        if end == horizon:
            acc_total, acc_best = bt, bb
        else:
            acc_best = np.maximum(acc_best, acc_total + bb)
            acc_total = bt + acc_total
        end = start
    out[horizon - 1 :] = np.maximum(acc_best, 0.0)
    return out
''',
}
