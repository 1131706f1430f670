"""The compiled writer of cache entries' items (:class:`~streamrec.state.encoding.NameTable`):
names copied from one buffer of JSON-encoded names, scores printed as ``np.round(x, 6)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(func: F) -> F:
    """numba's ``njit`` (cached, no interpreter lock), typed as the function it compiles."""
    return cast(F, numba.njit(cache=True, nogil=True)(func))


@numba.njit(cache=True, nogil=True)
def _put(out: np.ndarray, pos: int, source: np.ndarray, start: int, end: int) -> int:
    for s in range(start, end):
        out[pos] = source[s]
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def _number(out: np.ndarray, pos: int, x: float) -> int:
    """``x`` rounded to 6 decimals (as ``np.round``), ``whole.fraction``, no trailing zero
    beyond the first fraction digit."""
    m = np.rint(x * 1e6)
    if m < 0:
        out[pos] = 45  # -
        pos += 1
        m = -m
    whole, fraction = divmod(np.int64(m), np.int64(1_000_000))
    digits = 1
    while whole >= 10**digits:
        digits += 1
    for d in range(digits - 1, -1, -1):
        out[pos + d] = 48 + whole % 10
        whole //= 10
    pos += digits
    out[pos] = 46  # .
    pos += 1
    places = 6
    while places > 1 and fraction % 10 == 0:
        fraction //= 10
        places -= 1
    for d in range(places - 1, -1, -1):
        out[pos + d] = 48 + fraction % 10
        fraction //= 10
    return pos + places


@_compiled
def write_items(
    ids: np.ndarray,
    scores: np.ndarray,
    because: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    blob: np.ndarray,
    item: np.ndarray,
    score: np.ndarray,
    reasons: np.ndarray,
    out: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Each row's items, comma-separated, into ``out``; row ``r`` ends at ``ends[r + 1]``.

    Args:
        ids: dense item ids ``(n, k)`` int64, ``-1`` skipped.
        scores: ``(n, k)`` float64, finite, below 10¹² in magnitude.
        because: ``(n, k, b)`` int64, ``-1`` skipped.
        start, end: where each dense id's JSON name lies in ``blob`` (uint8).
        item, score, reasons: the literals before the name, the score and the reasons.
        out: uint8, large enough; ``ends``: ``(n + 1,)`` int64, ``ends[0] == 0``.
    """
    pos = 0
    for r in range(ids.shape[0]):
        first = True
        for j in range(ids.shape[1]):
            i = ids[r, j]
            if i < 0:
                continue
            if not first:
                out[pos] = 44  # ,
                pos += 1
            first = False
            pos = _put(out, pos, item, 0, len(item))
            pos = _put(out, pos, blob, start[i], end[i])
            pos = _put(out, pos, score, 0, len(score))
            pos = _number(out, pos, scores[r, j])
            pos = _put(out, pos, reasons, 0, len(reasons))
            named = False
            for h in range(because.shape[2]):
                w = because[r, j, h]
                if w < 0:
                    continue
                if named:
                    out[pos] = 44
                    pos += 1
                named = True
                pos = _put(out, pos, blob, start[w], end[w])
            out[pos] = 93  # ]
            out[pos + 1] = 125  # }
            pos += 2
        ends[r + 1] = pos
