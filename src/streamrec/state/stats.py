"""Counters of what the state holds and what has been applied."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from streamrec import keys


@dataclass(frozen=True)
class StateCounts:
    """Sizes and counters of the state.

    Attributes:
        users: known users.
        items: known items.
        events_applied: events applied since the state was created.
        batches_applied: batches applied.
        batches_duplicate: redelivered batches that were recognised and skipped.
        dead_letters: entries now in the dead-letter list.
        dead_lettered_total: events ever dead-lettered.
        quarantined: queue entries set aside unrun (not streamrec jobs, or unreadable).
        dropped_forgotten: events dropped because their user was forgotten after they
            were sent.
        unserved: applied batches whose users no worker has served yet.
    """

    users: int
    items: int
    events_applied: int
    batches_applied: int
    batches_duplicate: int
    dead_letters: int
    dead_lettered_total: int
    quarantined: int = 0
    dropped_forgotten: int = 0
    unserved: int = 0


def read_counts(connection: redis.Redis) -> StateCounts:
    """Read every counter in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hlen(keys.vocab_key("users"))
        pipe.hlen(keys.vocab_key("items"))
        pipe.hgetall(keys.stats_key())
        pipe.llen(keys.dead_letters_key())
        pipe.llen(keys.quarantine_key())
        pipe.hlen(keys.unserved_key())
        users, items, stats, dead, quarantined, unserved = pipe.execute()

    def stat(name: str) -> int:
        return int(stats.get(name.encode(), 0))

    return StateCounts(
        users=int(users),
        items=int(items),
        events_applied=stat("events_applied"),
        batches_applied=stat("batches_applied"),
        batches_duplicate=stat("batches_duplicate"),
        dead_letters=int(dead),
        dead_lettered_total=stat("dead_letters"),
        quarantined=int(quarantined),
        dropped_forgotten=stat("dropped_forgotten"),
        unserved=int(unserved),
    )
