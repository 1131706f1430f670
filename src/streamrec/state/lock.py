"""A lease in Redis: one holder at a time, renewed while it lives, taken over when it dies.

The lease is a key holding its holder's token with a time to live. :meth:`Lease.acquire`
takes it when free and renews it when already held, atomically (a script compares the
token); a holder that stops renewing (killed, partitioned, paused) loses it after ``ttl``
seconds and another candidate takes it at its next try. :meth:`Lease.release` frees it
only if still held by the caller.
"""

from __future__ import annotations

import secrets

import redis

from streamrec.state.scripts import script


class Lease:
    """A named lease with a time to live.

    Args:
        connection: a redis-py client.
        key: the lease's key (from :mod:`streamrec.keys`).
        ttl: seconds the lease lasts unless renewed.
        holder: a description of the holder, stored in the token (host, pid).
    """

    def __init__(self, connection: redis.Redis, key: str, ttl: float, holder: str) -> None:
        self.connection = connection
        self.key = key
        self.ttl_ms = max(1, round(ttl * 1000))
        self.token = f"{holder}:{secrets.token_hex(8)}"
        self._take = script(connection, "lease_take")
        self._free = script(connection, "lease_free")

    def acquire(self) -> bool:
        """Take the lease if free, or renew it if this holder has it; True if held now."""
        return bool(self._take(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Free the lease if this holder has it; True if it did."""
        return bool(self._free(keys=[self.key], args=[self.token]))

    def holder(self) -> str | None:
        """The token of whoever holds the lease now (None if free)."""
        value: bytes | None = self.connection.get(self.key)  # type: ignore[assignment]
        return None if value is None else value.decode()
