"""Every Redis key and RQ queue name streamrec uses, and nowhere else.

All keys start with ``streamrec:`` so that ``SCAN streamrec:*`` accounts for every one
(RQ's own keys start with ``rq:``). Per-user keys carry the user id in a hash tag
(``{...}``) so that a Redis Cluster keeps one user's keys in one slot.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

PREFIX = "streamrec"

#: The events queue of shard 0 (shard ``n`` > 0 is ``events-<n>``, see :func:`events_queue`).
EVENTS_QUEUE = "events"
TRAINING_QUEUE = "training"
ALL_QUEUES = (EVENTS_QUEUE, TRAINING_QUEUE)
#: Most event shards (``settings.event_shards``).
MAX_EVENT_SHARDS = 64


def events_queue(shard: int = 0) -> str:
    """The events queue of ``shard``: ``events`` for shard 0, ``events-<shard>`` after."""
    return EVENTS_QUEUE if shard == 0 else f"{EVENTS_QUEUE}-{shard}"


def events_queues(shards: int) -> list[str]:
    """The events queues of ``shards`` shards, shard 0 first."""
    return [events_queue(n) for n in range(shards)]


def is_events_queue(name: str) -> bool:
    """Whether ``name`` is the events queue of some shard (``events``, ``events-1`` …
    ``events-63``)."""
    return name in _EVENTS_QUEUES


def all_queues(shards: int) -> list[str]:
    """Every queue of a deployment with ``shards`` event shards: the events queues, then
    ``training``."""
    return [*events_queues(shards), TRAINING_QUEUE]


def shard_of(user: str, shards: int) -> int:
    """The event shard of ``user``: every event of a user goes to one shard's queue, so one
    worker applies and serves them all (a stable hash: CRC-32 of the UTF-8 id)."""
    if shards <= 1:
        return 0
    return zlib.crc32(user.encode("utf-8", "surrogatepass")) % shards


_EVENTS_QUEUES = frozenset(events_queues(MAX_EVENT_SHARDS))

Space = Literal["users", "items"]


def user_history_key(user: str) -> str:
    """Hash item -> summed weight of the user's additive events (plays, clicks, ...)."""
    return f"{PREFIX}:user:{{{user}}}:history"


def user_ratings_key(user: str) -> str:
    """Hash item -> the user's newest rating of that item."""
    return f"{PREFIX}:user:{{{user}}}:ratings"


def user_rating_stamps_key(user: str) -> str:
    """Hash item -> order stamp (zero-padded time, event id) of the rating kept in ratings."""
    return f"{PREFIX}:user:{{{user}}}:rating-stamps"


def user_version_key(user: str) -> str:
    """Counter: the user's history version, i.e. the number of events applied to the user."""
    return f"{PREFIX}:user:{{{user}}}:version"


def user_keys(user: str) -> tuple[str, str, str, str]:
    """The per-user history keys, in the order the Lua scripts expect them."""
    return (
        user_history_key(user),
        user_ratings_key(user),
        user_rating_stamps_key(user),
        user_version_key(user),
    )


def vocab_key(space: Space) -> str:
    """Hash external id -> dense integer id."""
    return f"{PREFIX}:vocab:{space}"


def vocab_reverse_key(space: Space) -> str:
    """Hash dense integer id -> external id."""
    return f"{PREFIX}:vocab:{space}:reverse"


def vocab_counter_key(space: Space) -> str:
    """Counter handing out the next dense id (ids of forgotten users are not reused)."""
    return f"{PREFIX}:vocab:{space}:next"


def item_names_key() -> str:
    """Hash item id -> display name (movie title, artist name)."""
    return f"{PREFIX}:items:names"


def item_tags_key() -> str:
    """Hash item id -> the item's tags (MovieLens genres), joined by ``|``."""
    return f"{PREFIX}:items:tags"


def popularity_key() -> str:
    """Sorted set item -> number of distinct users who interacted with it."""
    return f"{PREFIX}:popularity"


def last_seen_key() -> str:
    """Sorted set user -> time of the user's newest event, epoch milliseconds."""
    return f"{PREFIX}:users:last-seen"


def ledger_key() -> str:
    """Sorted set batch id -> time applied (epoch milliseconds): the applied-batch ledger."""
    return f"{PREFIX}:ledger"


def forgotten_key() -> str:
    """Hash SHA-1 of a forgotten user's id -> ``"<forget time ms> <history version>"`` (the
    tombstones; the id itself is not kept)."""
    return f"{PREFIX}:forgotten"


def forgotten_expiry_key() -> str:
    """Sorted set SHA-1 of a forgotten user's id -> forget time, epoch ms (tombstones expire
    with the ledger's redelivery window)."""
    return f"{PREFIX}:forgotten:expiry"


def unserved_key() -> str:
    """Hash batch id -> the users it changed (one a line), from its apply until a worker
    served them (a worker that dies before serving leaves them here for the next one)."""
    return f"{PREFIX}:unserved"


def batch_split_key(batch_id: str) -> str:
    """String: events per part of a batch too large for one apply call, fixed at its first
    delivery so that every redelivery splits it the same way."""
    return f"{PREFIX}:ledger:split:{batch_id}"


def stats_key() -> str:
    """Hash of counters: events_applied, batches_applied, batches_duplicate, dead_letters,
    dropped_forgotten."""
    return f"{PREFIX}:stats"


def dead_letters_key() -> str:
    """List of JSON dead-letter entries, newest first."""
    return f"{PREFIX}:dead-letters"


def quarantine_key() -> str:
    """List of JSON entries: queue entries streamrec did not send, set aside unrun, newest
    first."""
    return f"{PREFIX}:quarantine"


def model_active_key(model: str) -> str:
    """String: the published (active) version of ``model``."""
    return f"{PREFIX}:models:{model}:active"


def model_versions_key(model: str) -> str:
    """Sorted set version -> time published, of ``model``."""
    return f"{PREFIX}:models:{model}:versions"


def model_counter_key(model: str) -> str:
    """Counter handing out the next version number of ``model``."""
    return f"{PREFIX}:models:{model}:next-version"


def recommendations_key(user: str, model: str) -> str:
    """String: the cached recommendation entry (JSON) of ``user`` by ``model``."""
    return f"{PREFIX}:recs:{{{user}}}:{model}"


def popular_key() -> str:
    """String: the popular-items entry (JSON) served to users without their own entry."""
    return f"{PREFIX}:recs:popular"


def user_cache_keys(user: str, models: Sequence[str]) -> list[str]:
    """Every cache key of ``user`` (deleted when the user is forgotten)."""
    return [recommendations_key(user, model) for model in models]


def model_published_key(model: str) -> str:
    """Hash of the last publish of ``model``: ``version``, ``at`` (epoch seconds) and
    ``events`` (events applied to the state by then), read by the scheduler."""
    return f"{PREFIX}:models:{model}:published"


def freshness_key(model: str, minute: int) -> str:
    """Hash latency bucket -> events of ``model`` whose cache entry was written in ``minute``
    (epoch minutes) that long after they were sent (see :mod:`~streamrec.state.freshness`;
    expires after a quarter of an hour)."""
    return f"{PREFIX}:freshness:{model}:{minute}"


def scheduler_lease_key() -> str:
    """String with a time to live: the token of the active scheduler."""
    return f"{PREFIX}:scheduler:lease"


def scheduler_tasks_key() -> str:
    """Hash task (``retrain:als``, ``rebuild:als``, ``drift:als``) -> JSON of its last enqueue
    (job id, time, reason)."""
    return f"{PREFIX}:scheduler:tasks"


def drift_key() -> str:
    """Hash model -> JSON of its last drift check's report (means and sample size only, no
    user ids; see :mod:`~streamrec.serving.drift`)."""
    return f"{PREFIX}:drift"
