"""The recommendation cache: one JSON string per user and model, read with a single GET.

Entry schema (also documented in README for apps in any language)::

    {"user": "alice", "model": "als", "version": 3, "history_version": 17,
     "computed_at": 1732280000.123,
     "items": [{"item": "song-9", "score": 0.93, "because": ["song-2", "song-5"]}, ...]}

``version`` is the model version that produced the list, ``history_version`` the user's
history version it was computed from. Writes are compare-and-set on those two numbers.
Users without an entry read the popular-items entry (same schema, ``user`` null, more items
than a user's list: a reader drops the items the user already has, see
:mod:`~streamrec.state.client`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from streamrec import keys
from streamrec.state.scripts import script

#: One encoded cache entry: (key, JSON as text or UTF-8, user).
Entry = tuple[str, str | bytes, str]


def popular_size(top_k: int) -> int:
    """Items in the popular entry: enough that a reader still has ``top_k`` after dropping
    the items a user already has."""
    return max(200, 3 * top_k)


#: Entries written per script call.
WRITE_CHUNK = 250


def encode_entry(
    user: str | None,
    model: str,
    version: int,
    history_version: int,
    items: Sequence[str],
    scores: Sequence[float],
    because: Sequence[list[str]],
    computed_at: float | None = None,
) -> str:
    """The stored JSON of an entry given as parallel lists (the worker's hot path: no
    object per item)."""
    return orjson.dumps(
        {
            "user": user,
            "model": model,
            "version": version,
            "history_version": history_version,
            "computed_at": time.time() if computed_at is None else computed_at,
            "items": [
                {"item": i, "score": s, "because": b}
                for i, s, b in zip(items, scores, because, strict=True)
            ],
        }
    ).decode()


class RecommendationCache:
    """Writes cache entries (compare-and-set) and the popular entry.

    Args:
        connection: a redis-py client.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._write = script(connection, "write_recommendations")

    def write_encoded(self, entries: Sequence[Entry], served: Sequence[str] = ()) -> int:
        """Store entries that are not older than what is stored, (cache key, JSON from
        :func:`encode_entry` or :meth:`~streamrec.state.encoding.NameTable.encode`, user)
        triples, a few hundred per call (each call blocks Redis while it runs).

        Args:
            entries: the entries to write (compare-and-set; a forgotten user's entries
                computed from their old history are refused).
            served: ids of batches whose users were all served now, entries or not: they
                are taken off the unserved-batches hash with the last entries.

        Returns:
            Entries written.
        """
        written = 0
        tail = [keys.forgotten_key(), keys.unserved_key()]
        chunks = [entries[n : n + WRITE_CHUNK] for n in range(0, len(entries), WRITE_CHUNK)]
        for n, part in enumerate(chunks or [[]]):
            args: list[Any] = [len(part), *(j for _, j, _ in part), *(u for _, _, u in part)]
            if n == len(chunks or [[]]) - 1:
                args += served
            if len(args) > 1:
                written += int(self._write(keys=[*(k for k, _, _ in part), *tail], args=args))
        return written

    def write_popular(self, items: Sequence[tuple[str, float]]) -> None:
        """Replace the popular-items entry (``items``: (item, distinct users), best first)."""
        entry = encode_entry(
            None, "popular", 0, 0, [i for i, _ in items], [s for _, s in items], [[]] * len(items)
        )
        self.connection.set(keys.popular_key(), entry)

    def popular_from_counts(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` items with the most distinct users: (item, users)."""
        top: list[tuple[bytes, float]] = self.connection.zrevrange(  # type: ignore[assignment]
            keys.popularity_key(), 0, k - 1, withscores=True
        )
        return [(item.decode(), float(score)) for item, score in top]
