"""What apps use to read recommendations: :class:`RecommendationClient`.

A user's list is one ``GET`` of ``streamrec:recs:{USER}:<model>``. A user without a list
(no model trained yet, or none of the user's items known to the model) gets the popular
list instead, without the items the user already has: that costs one more round trip
(the popular entry and the user's item ids, pipelined). Display names (movie titles,
artist names) come from ``streamrec:items:names`` when asked for, in one ``HMGET``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence, Set

import msgspec
import redis

from streamrec import keys, metrics
from streamrec.settings import Settings
from streamrec.state.connection import connect


class Recommendation(msgspec.Struct):
    """One recommended item (decoded straight from the cache entry's JSON).

    Attributes:
        item: the item id.
        score: the model's score (ALS: a dot product; KernelMF: a predicted rating;
            popular: the number of distinct users).
        because: ids of the user's items that led to it, strongest first.
        name: the item's display name (when asked for and known).
        because_names: display names of ``because`` (when asked for; the id where none).
    """

    item: str
    score: float
    because: tuple[str, ...] = ()
    name: str | None = None
    because_names: tuple[str, ...] = ()


class Recommendations(msgspec.Struct):
    """A user's list as an app reads it (``msgspec.to_builtins`` gives its JSON form).

    Attributes:
        user: the user asked about.
        model: the model of the list (``popular`` for the fallback).
        items: best first.
        personal: False when the user has no list of this model and these are the popular
            items (minus the user's own).
        version: the model version that produced the list (0 for popular).
        history_version: the user's history version the list was computed from (0 for
            popular): ``GET streamrec:user:{USER}:version`` tells the current one.
        computed_at: epoch seconds.
    """

    user: str
    model: str
    items: list[Recommendation]
    personal: bool
    version: int
    history_version: int
    computed_at: float


class _Entry(msgspec.Struct):
    """A cache entry as stored (see :mod:`streamrec.state.cache`)."""

    model: str
    version: int
    history_version: int
    computed_at: float
    items: list[Recommendation]


#: Decodes entries in C, straight into :class:`Recommendation` objects: a read then costs
#: little more than its ``GET``.
_decode = msgspec.json.Decoder(_Entry).decode


class RecommendationClient:
    """Reads cached lists (connecting on first use).

    Args:
        settings: where Redis is (default: ``Settings()``; :meth:`from_env` reads
            ``STREAMREC_*``).
        connection: a redis-py client to use instead of connecting.
        model: which model's lists to read (``als``, ``kmf``, ...).

    Example::

        client = RecommendationClient(Settings.from_env(os.environ))
        for rec in client.get("alice", 10, names=True).items:
            print(rec.item, rec.name, rec.score)
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connection: redis.Redis | None = None,
        model: str = "als",
    ) -> None:
        self.settings = Settings() if settings is None else settings
        self._connection = connection
        self.model = model
        # counted in this process (streamrec_cache_reads_total): the app's /metrics serves it
        self._reads = {r: metrics.CACHE_READS.labels(model, r) for r in _READ_RESULTS}

    @property
    def connection(self) -> redis.Redis:
        """The redis-py client (connecting on first use)."""
        if self._connection is None:
            self._connection = connect(self.settings)
        return self._connection

    def get(
        self, user: str, k: int | None = None, *, names: bool = False
    ) -> Recommendations | None:
        """``user``'s list (at most ``k`` items), or the popular items they do not have yet;
        None when neither exists (no model trained, no event applied). One ``GET``."""
        raw = self.connection.get(keys.recommendations_key(user, self.model))
        found = (
            _parse(user, _decode(raw), True, k, _NOTHING)
            if raw is not None
            else self._popular([user], k)[user]
        )
        self._reads[_result(found)].inc()
        return self._named({user: found})[user] if names else found

    def get_many(
        self, users: Sequence[str], k: int | None = None, *, names: bool = False
    ) -> dict[str, Recommendations | None]:
        """The lists of ``users`` in one ``MGET`` (plus one round trip for those without a
        list, and one for names)."""
        wanted = list(dict.fromkeys(users))
        if not wanted:
            return {}
        raws = self.connection.mget([keys.recommendations_key(u, self.model) for u in wanted])
        out: dict[str, Recommendations | None] = {}
        missing = []
        for user, raw in zip(wanted, raws, strict=True):
            if raw is None:
                missing.append(user)
            else:
                out[user] = _parse(user, _decode(raw), True, k, _NOTHING)
        if missing:
            out.update(self._popular(missing, k))
        self._count(out.values())
        if names:
            out = self._named(out)
        return {user: out[user] for user in users}

    def _count(self, found: Iterable[Recommendations | None]) -> None:
        counts = Counter(map(_result, found))
        for result, n in counts.items():
            self._reads[result].inc(n)

    def _popular(self, users: list[str], k: int | None) -> dict[str, Recommendations | None]:
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.get(keys.popular_key())
            for user in users:
                pipe.hkeys(keys.user_history_key(user))
                pipe.hkeys(keys.user_ratings_key(user))
            replies = pipe.execute()
        if replies[0] is None:
            return dict.fromkeys(users)
        entry = _decode(replies[0])
        out: dict[str, Recommendations | None] = {}
        for n, user in enumerate(users):
            have = {i.decode() for i in (*replies[1 + 2 * n], *replies[2 + 2 * n])}
            out[user] = _parse(user, entry, False, k, have)
        return out

    def _named(self, found: dict[str, Recommendations | None]) -> dict[str, Recommendations | None]:
        ids = sorted(
            {i for r in found.values() if r for rec in r.items for i in (rec.item, *rec.because)}
        )
        if not ids:
            return found
        values: list[bytes | None] = self.connection.hmget(keys.item_names_key(), ids)  # type: ignore[assignment]
        known = {i: v.decode() for i, v in zip(ids, values, strict=True) if v is not None}
        return {user: None if r is None else _named(r, known) for user, r in found.items()}


_NOTHING: frozenset[str] = frozenset()
#: Values of the ``result`` label of ``streamrec_cache_reads_total``.
_READ_RESULTS = ("personal", "popular", "none")


def _result(found: Recommendations | None) -> str:
    return "none" if found is None else "personal" if found.personal else "popular"


def _parse(
    user: str, entry: _Entry, personal: bool, k: int | None, skip: Set[str]
) -> Recommendations:
    items = entry.items
    if skip:
        items = [i for i in items if i.item not in skip]
    if k is not None:
        items = items[:k]
    return Recommendations(
        user, entry.model, items, personal, entry.version, entry.history_version,
        entry.computed_at,
    )  # fmt: skip


def _named(r: Recommendations, known: dict[str, str]) -> Recommendations:
    items = [_with_names(rec, known) for rec in r.items]
    return Recommendations(
        r.user, r.model, items, r.personal, r.version, r.history_version, r.computed_at
    )


def _with_names(rec: Recommendation, known: dict[str, str]) -> Recommendation:
    return Recommendation(
        rec.item,
        rec.score,
        rec.because,
        known.get(rec.item),
        tuple(known.get(i, i) for i in rec.because),
    )
