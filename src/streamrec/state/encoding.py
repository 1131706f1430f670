"""Cache entries of many users encoded at once (the worker's hot path).

:meth:`NameTable.encode` writes the same JSON as :func:`~streamrec.state.cache.encode_entry`
(the reference, also the test oracle) for a whole refresh: a compiled kernel copies the
items' names, already JSON-encoded once per item, and prints the scores straight into one
byte buffer, so no Python object is made per recommended item. A score is printed as
``np.round(score, 6)``: the digits of ``rint(score · 10⁶)`` with the decimal point placed,
which parses to exactly the value the reference writes. The kernel
(:mod:`~streamrec.state.entry_writer`, numba) is imported at the first encoding, so the
producer and the ingest path never load numba.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import orjson

from streamrec.state.cache import encode_entry

#: Scores printed by the kernel lie below this in magnitude (others take the reference).
LARGEST = 1e12
#: Bytes of an item's JSON besides its name, reasons and score, and of one score at most.
_ITEM_BYTES, _SCORE_BYTES = 40, 24
_ITEM, _SCORE, _BECAUSE = (
    np.frombuffer(s, dtype=np.uint8) for s in (b'{"item":', b',"score":', b',"because":[')
)


class NameTable:
    """Item names by dense id, each JSON-encoded once, in one growing buffer (the form the
    kernel copies from); a name is looked up the first time it is needed.

    Args:
        lookup: external names of dense ids (None for an id without one: its number is
            used).
    """

    def __init__(self, lookup: Callable[[list[int]], Sequence[str | None]]) -> None:
        self.lookup = lookup
        self._start = np.zeros(0, dtype=np.int64)
        self._end = np.zeros(0, dtype=np.int64)  # == start: not looked up yet
        self._blob = np.empty(1 << 16, dtype=np.uint8)
        self._used = 0

    def fill(self, ids: np.ndarray) -> None:
        """Look up the names of ``ids`` not known yet (``-1`` ignored)."""
        ids = ids[ids >= 0]
        if len(ids) == 0:
            return
        top = int(ids.max())
        if top >= len(self._start):  # grow by doubling: copies stay amortised
            size = max(top + 1, 2 * len(self._start))
            self._start = np.concatenate([self._start, np.zeros(size - len(self._start), np.int64)])
            self._end = np.concatenate([self._end, np.zeros(size - len(self._end), np.int64)])
        missing = np.unique(ids[self._end[ids] == self._start[ids]])
        if len(missing) == 0:
            return
        found = self.lookup(missing.tolist())
        parts = [
            orjson.dumps(name if name is not None else str(i))
            for i, name in zip(missing.tolist(), found, strict=True)
        ]
        data = np.frombuffer(b"".join(parts), dtype=np.uint8)
        if self._used + len(data) > len(self._blob):
            grown = np.empty(max(2 * len(self._blob), self._used + len(data)), dtype=np.uint8)
            grown[: self._used] = self._blob[: self._used]
            self._blob = grown
        self._blob[self._used : self._used + len(data)] = data
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        self._start[missing] = self._used + np.cumsum(lengths) - lengths
        self._end[missing] = self._start[missing] + lengths
        self._used += len(data)

    def name(self, item: int) -> str:
        """The external name of dense id ``item`` (looked up)."""
        self.fill(np.array([item]))
        return str(orjson.loads(self._blob[self._start[item] : self._end[item]].tobytes()))

    def encode(
        self,
        users: Sequence[str],
        model: str,
        version: int,
        history_versions: Sequence[int],
        ids: np.ndarray,
        scores: np.ndarray,
        because: np.ndarray,
        computed_at: float | None = None,
    ) -> list[bytes]:
        """The stored JSON of one entry per user.

        Args:
            users: one external id per row.
            model: the model's name; ``version`` its version.
            history_versions: per row, the history version the list was computed from.
            ids: recommended dense item ids ``(n, k)``, ``-1`` padding (skipped).
            scores: their scores ``(n, k)``.
            because: history dense item ids per recommendation ``(n, k, b)``, ``-1``
                padding.
            computed_at: the time written (default: now).
        """
        n = len(users)
        if n == 0:
            return []
        ids = np.asarray(ids, dtype=np.int64).reshape(n, -1)
        because = np.asarray(because, dtype=np.int64).reshape(*ids.shape, -1)
        values = np.asarray(scores, dtype=np.float64).reshape(ids.shape)
        at = time.time() if computed_at is None else computed_at
        self.fill(ids.ravel())
        self.fill(because.ravel())
        shown = values[ids >= 0]  # a padding slot's score is never written
        if not (np.isfinite(shown).all() and (np.abs(shown) < LARGEST).all()):
            return [  # the reference: it writes null for a score that is not a number
                self._reference(user, model, version, int(hv), ids[r], values[r], because[r], at)
                for r, (user, hv) in enumerate(zip(users, history_versions, strict=True))
            ]
        named = np.concatenate([ids[ids >= 0], because[because >= 0]])
        size = int((self._end[named] - self._start[named]).sum())  # never over every id
        size += ids.size * (_ITEM_BYTES + _SCORE_BYTES + because.shape[2])
        out = np.empty(size, dtype=np.uint8)
        ends = np.zeros(n + 1, dtype=np.int64)
        from streamrec.state.entry_writer import write_items

        names = (self._start, self._end, self._blob)
        write_items(ids, values, because, *names, _ITEM, _SCORE, _BECAUSE, out, ends)
        buffer = out.tobytes()
        head = (
            b'{"user":%b,"model":' + orjson.dumps(model) + b',"version":%d,"history_version":%d,'
            b'"computed_at":' + orjson.dumps(at) + b',"items":['
        )
        bounds = ends.tolist()
        return [
            head % (orjson.dumps(user), version, hv) + buffer[bounds[r] : bounds[r + 1]] + b"]}"
            for r, (user, hv) in enumerate(
                zip(users, np.asarray(history_versions).tolist(), strict=True)
            )
        ]

    def _reference(
        self,
        user: str,
        model: str,
        version: int,
        history_version: int,
        ids: np.ndarray,
        scores: np.ndarray,
        because: np.ndarray,
        at: float,
    ) -> bytes:
        """One user's entry through :func:`~streamrec.state.cache.encode_entry`."""
        found = ids >= 0
        items = [self.name(i) for i in ids[found].tolist()]
        why = [[self.name(w) for w in ws if w >= 0] for ws in because[found].tolist()]
        rounded = np.round(scores[found], 6).tolist()
        return encode_entry(user, model, version, history_version, items, rounded, why, at).encode()
