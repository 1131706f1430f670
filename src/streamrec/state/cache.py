"""The recommendation cache: one JSON string per user and model, read with a single GET.

Entry schema (also documented in README for apps in any language)::

    {"user": "alice", "model": "als", "version": 3, "history_version": 17,
     "computed_at": 1732280000.123,
     "items": [{"item": "song-9", "score": 0.93, "because": ["song-2", "song-5"]}, ...]}

``version`` is the model version that produced the list, ``history_version`` the user's
history version it was computed from. Writes are compare-and-set on those two numbers.
Users without an entry read the popular-items entry (same schema, ``user`` null).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from streamrec import keys
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.scripts import script

#: One encoded cache entry: (key, JSON, user).
Entry = tuple[str, str, str]
#: Entries written per script call.
WRITE_CHUNK = 250


@dataclass(frozen=True)
class RecommendedItem:
    """One recommendation: item id, score, and the history items that led to it."""

    item: str
    score: float
    because: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheEntry:
    """A cached list for one user (``user`` None for the popular list)."""

    user: str | None
    model: str
    version: int
    history_version: int
    items: list[RecommendedItem]
    computed_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """The stored JSON."""
        return encode_entry(
            self.user,
            self.model,
            self.version,
            self.history_version,
            [i.item for i in self.items],
            [round(i.score, 6) for i in self.items],
            [i.because for i in self.items],
            self.computed_at,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> CacheEntry:
        """Parse a stored entry."""
        data = orjson.loads(raw)
        return cls(
            user=data["user"],
            model=data["model"],
            version=data["version"],
            history_version=data["history_version"],
            items=[
                RecommendedItem(i["item"], i["score"], i.get("because", [])) for i in data["items"]
            ],
            computed_at=data["computed_at"],
        )


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

    def write(self, entries: Sequence[CacheEntry]) -> int:
        """Store entries that are not older than what is stored; returns how many were."""
        return self.write_encoded(
            [
                (keys.recommendations_key(e.user or "", e.model), e.to_json(), e.user or "")
                for e in entries
            ]
        )

    def write_encoded(self, entries: Sequence[Entry], served: Sequence[str] = ()) -> int:
        """Like :meth:`write`, for (cache key, JSON from :func:`encode_entry`, user) triples,
        a few hundred per call (each call blocks Redis while it runs).

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

    def read(self, user: str, model: str) -> CacheEntry | None:
        """The stored entry of ``user`` (None if there is none)."""
        raw = self.connection.get(keys.recommendations_key(user, model))
        return None if raw is None else CacheEntry.from_json(raw)

    def write_popular(self, items: list[RecommendedItem], model: str = "popular") -> None:
        """Replace the popular-items entry."""
        entry = CacheEntry(None, model, 0, 0, items)
        self.connection.set(keys.popular_key(), entry.to_json())

    def popular_from_counts(self, k: int) -> list[RecommendedItem]:
        """The ``k`` items with the most distinct users."""
        top: list[tuple[bytes, float]] = self.connection.zrevrange(  # type: ignore[assignment]
            keys.popularity_key(), 0, k - 1, withscores=True
        )
        return [RecommendedItem(item.decode(), float(score)) for item, score in top]


class RecommendationClient:
    """What an app uses: one GET per user (a second only for users without an entry).

    Args:
        source: settings (the client connects, starting the embedded server if needed) or
            an existing redis-py client.
        model: which model's lists to read.

    Example::

        client = RecommendationClient(Settings.from_env())
        entry = client.get("alice", k=10)   # {"user", "model", "version", ..., "items": [...]}
    """

    def __init__(self, source: Settings | redis.Redis, model: str = "als") -> None:
        self.connection = connect(source) if isinstance(source, Settings) else source
        self.model = model

    def get(self, user: str, k: int | None = None) -> dict[str, Any] | None:
        """The user's entry as a dict (the popular entry if the user has none; None if
        neither exists), with at most ``k`` items."""
        raw = self.connection.get(keys.recommendations_key(user, self.model))
        if raw is None:
            raw = self.connection.get(keys.popular_key())
            if raw is None:
                return None
        # orjson: parsing is most of a cached read's cost in Python (the GET is the rest).
        entry: dict[str, Any] = orjson.loads(raw)
        if k is not None:
            entry["items"] = entry["items"][:k]
        return entry
