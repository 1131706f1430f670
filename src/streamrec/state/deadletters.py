"""The dead-letter list: events that could not be applied, each with its reason."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from streamrec import keys
from streamrec.state.histories import DeadLetter


class DeadLetterStore:
    """Read and drain the dead-letter list (entries are written by the apply script).

    Args:
        connection: a redis-py client.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def count(self) -> int:
        """Entries in the list."""
        return int(self.connection.llen(keys.dead_letters_key()))

    def recent(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` entries (all when ``limit`` ≤ 0)."""
        raw = self.connection.lrange(keys.dead_letters_key(), 0, limit - 1 if limit > 0 else -1)
        return [DeadLetter.from_json(item) for item in raw]

    def take_all(self) -> list[DeadLetter]:
        """Remove and return every entry, oldest first (for a retry)."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.lrange(keys.dead_letters_key(), 0, -1)
            pipe.delete(keys.dead_letters_key())
            raw, _ = pipe.execute()
        return [DeadLetter.from_json(item) for item in reversed(raw)]

    def put_back(self, letters: list[DeadLetter]) -> None:
        """Return entries to the list (those a retry could still not apply)."""
        if letters:
            self.connection.lpush(keys.dead_letters_key(), *(d.to_json() for d in letters))

    def scrub_user(self, user: str) -> int:
        """Delete every entry whose payload names ``user``; returns how many."""
        removed = 0
        for raw in self.connection.lrange(keys.dead_letters_key(), 0, -1):
            payload = DeadLetter.from_json(raw).payload
            if (isinstance(payload, Mapping) and payload.get("user") == user) or (
                isinstance(payload, str) and user in payload
            ):
                removed += int(self.connection.lrem(keys.dead_letters_key(), 0, raw))  # type: ignore[arg-type]
        return removed
