"""Queue entries set aside: whatever reached a queue that RQ cannot load or that is not a
streamrec job. Such an entry is never run and never pushed back; its worker goes on.

Each entry of the quarantine list is JSON ``{"at", "queue", "job_id", "reason", "job"}``,
newest first, where ``job`` is a snapshot of what the job key held (its hash fields as
text, the job data decompressed), so an operator can see what arrived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import Mapping
from typing import Any

import redis
from rq.job import Job

from streamrec import keys
from streamrec.state.deadletters import pages

logger = logging.getLogger(__name__)

#: Text kept of one job field in a snapshot.
FIELD_LIMIT = 1 << 20


class Quarantine:
    """The list of queue entries set aside.

    Args:
        connection: a redis-py client.
        limit: newest entries kept.
    """

    def __init__(self, connection: redis.Redis, limit: int = 100_000) -> None:
        self.connection = connection
        self.limit = limit

    def set_aside(
        self, queue_name: str, job_id: str, reason: str, *, lists: tuple[str, ...] = ()
    ) -> None:
        """Record the job ``job_id`` with ``reason``, delete its key and take it off
        ``lists`` (e.g. the queue's intermediate list), in one transaction."""
        key = Job.key_for(job_id)
        entry = {
            "at": time.time(),
            "queue": queue_name,
            "job_id": job_id,
            "reason": reason,
            "job": self._snapshot(key),
        }
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.quarantine_key(), json.dumps(entry, separators=(",", ":")))
            pipe.ltrim(keys.quarantine_key(), 0, self.limit - 1)
            for name in lists:
                pipe.lrem(name, 0, job_id)
            pipe.delete(key)
            pipe.execute()
        logger.warning("queue %s: job %r set aside: %s", queue_name, job_id, reason)

    def count(self) -> int:
        """Entries in the list."""
        return int(self.connection.llen(keys.quarantine_key()))

    def entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (all when ``limit`` ≤ 0); unreadable ones as
        ``{"unreadable": text}``."""
        raw = self.connection.lrange(keys.quarantine_key(), 0, limit - 1 if limit > 0 else -1)
        return [_parse(item) for item in raw]

    def scrub_user(self, user: str) -> int:
        """Delete every entry whose job data holds an event of ``user``; returns how many."""
        matching = []
        for raw in pages(self.connection, keys.quarantine_key()):
            entry = _parse(raw)
            data = entry.get("job", {}).get("data") if isinstance(entry.get("job"), dict) else None
            if isinstance(data, str) and _names_user(data, user):
                matching.append(raw)
        removed = 0
        for raw in matching:
            removed += int(self.connection.lrem(keys.quarantine_key(), 0, raw))  # type: ignore[arg-type]
        return removed

    def _snapshot(self, key: str) -> dict[str, Any]:
        kind = self.connection.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "hash":
            fields: Mapping[bytes, bytes] = self.connection.hgetall(key)  # type: ignore[assignment]
            return {"type": kind, **{_text(k): _field(k, v) for k, v in fields.items()}}
        if kind == "string":
            return {"type": kind, "value": _text(self.connection.getrange(key, 0, FIELD_LIMIT))}
        return {"type": kind}


def _field(name: bytes, value: bytes) -> str:
    if name == b"data":
        with contextlib.suppress(zlib.error):
            value = zlib.decompress(value)
    return _text(value[:FIELD_LIMIT])


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _parse(raw: bytes | str) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": _text(raw)[:200]}
    return entry if isinstance(entry, dict) else {"unreadable": _text(raw)[:200]}


def _names_user(data: str, user: str) -> bool:
    """Whether job data (RQ's JSON ``[func, instance, args, kwargs]``) holds an event of
    ``user`` (undecodable data is searched as text for the user's JSON string)."""
    try:
        _, _, args, _ = json.loads(data)
        return any(
            isinstance(event, dict) and event.get("user") == user
            for arg in args
            if isinstance(arg, list)
            for event in arg
        )
    except (ValueError, TypeError):
        return json.dumps(user) in data
