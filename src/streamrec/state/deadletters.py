"""The dead-letter list: events that could not be applied, each with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from streamrec import keys


@dataclass(frozen=True)
class DeadLetter:
    """An event (or payload) that could not be applied, and why.

    Attributes:
        reason: the validation message.
        field: the field at fault (``payload`` when the whole event is unreadable).
        payload: the event as received (JSON-ready).
        batch_id: the batch it came in, or the import it came from.
        at: epoch seconds when it was dead-lettered.
    """

    reason: str
    field: str
    payload: Any
    batch_id: str
    at: float

    def to_json(self) -> str:
        """The JSON stored in the dead-letter list."""
        return json.dumps(
            {
                "reason": self.reason,
                "field": self.field,
                "payload": _jsonable(self.payload),
                "batch_id": self.batch_id,
                "at": self.at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        """Parse an entry of the dead-letter list."""
        data = json.loads(text)
        return cls(data["reason"], data["field"], data["payload"], data["batch_id"], data["at"])


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
        """The newest ``limit`` entries (all when ``limit`` ≤ 0); an entry that is not a
        dead letter is shown as one whose reason says so."""
        raw = self.connection.lrange(keys.dead_letters_key(), 0, limit - 1 if limit > 0 else -1)
        return [_read(item) for item in raw]

    def take_all(self) -> list[DeadLetter]:
        """Remove and return every entry, oldest first (for a retry)."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.lrange(keys.dead_letters_key(), 0, -1)
            pipe.delete(keys.dead_letters_key())
            raw, _ = pipe.execute()
        return [_read(item) for item in reversed(raw)]

    def put_back(self, letters: list[DeadLetter]) -> None:
        """Return entries to the list (those a retry could still not apply)."""
        if letters:
            self.connection.lpush(keys.dead_letters_key(), *(d.to_json() for d in letters))

    def scrub_user(self, user: str) -> int:
        """Delete every entry whose event is one of ``user`` (its ``user`` field is exactly
        ``user``, the event given as an object or as JSON text); returns how many."""
        matching = [
            raw for raw in pages(self.connection, keys.dead_letters_key())
            if _event_user(_read(raw).payload) == user
        ]  # fmt: skip
        removed = 0
        for raw in matching:
            removed += int(self.connection.lrem(keys.dead_letters_key(), 0, raw))  # type: ignore[arg-type]
        return removed


def pages(connection: redis.Redis, key: str, size: int = 1000) -> Iterator[bytes]:
    """Every entry of the list ``key``, read a page at a time (a long list read in one call
    would hold the server; entries added or removed meanwhile may be missed or seen
    twice)."""
    start = 0
    while True:
        page: list[bytes] = connection.lrange(key, start, start + size - 1)  # type: ignore[assignment]
        yield from page
        if len(page) < size:
            return
        start += size


def _read(raw: bytes | str) -> DeadLetter:
    """A stored entry, or a stand-in naming what is wrong with it."""
    try:
        return DeadLetter.from_json(raw)
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return DeadLetter("unreadable dead-letter entry", "payload", text[:1000], "", 0.0)


def _event_user(payload: Any) -> Any:
    """The ``user`` field of an event given as a mapping or as JSON text (else None)."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    return payload.get("user") if isinstance(payload, Mapping) else None


def _jsonable(value: Any) -> Any:
    """``value`` if it is JSON, else text that shows it (never raises: a payload too deep,
    or with an int too long to print, is still dead-lettered)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except Exception:
        if isinstance(value, bytes | bytearray):
            return bytes(value[:100_000]).decode("utf-8", errors="replace")
        try:
            return repr(value)[:100_000]
        except Exception:
            return f"<a {type(value).__name__} that cannot be shown>"
