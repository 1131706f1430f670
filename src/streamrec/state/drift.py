"""What a drift check reads and leaves in Redis: the cached lists of the users seen last, and
each model's last report.

The users whose lists workers folded in last are found from what the apply script already
keeps (``streamrec:users:last-seen``, user -> time of their newest event): the worker's
path makes no extra Redis call for drift. Reports carry means and counts only, never a user
id (forgetting a user has nothing to remove here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from streamrec import keys

#: Users looked at, as a multiple of the sample wanted (users without a list of the model,
#: e.g. a rating model's users who only played, read the popular list and are skipped).
LOOK_FURTHER = 10


@dataclass(frozen=True)
class CachedList:
    """A user's cached list as a drift check compares it.

    Attributes:
        user: the user's id.
        version: the model version that produced it.
        history_version: the user's history version it was computed from.
        computed_at: when, epoch seconds.
        items: item ids, best first.
        scores: their scores, as cached.
    """

    user: str
    version: int
    history_version: int
    computed_at: float
    items: list[str]
    scores: list[float]


def recent_lists(connection: redis.Redis, model: str, n: int) -> list[CachedList]:
    """The cached lists of ``model`` of up to ``n`` users, those with the newest events first
    (the users workers folded in last). Two round trips per page of users looked at.

    Args:
        connection: a redis-py client.
        model: the model's name.
        n: lists wanted.
    """
    found: list[CachedList] = []
    page = max(2 * n, 50)
    for start in range(0, LOOK_FURTHER * n, page):
        seen: list[bytes] = connection.zrevrange(  # type: ignore[assignment]
            keys.last_seen_key(), start, start + page - 1
        )
        users = [_text(u) for u in seen]
        if not users:
            break
        raws = connection.mget([keys.recommendations_key(u, model) for u in users])
        for user, raw in zip(users, raws, strict=True):
            if raw is not None and len(found) < n:
                entry = orjson.loads(raw)
                found.append(
                    CachedList(
                        user,
                        int(entry["version"]),
                        int(entry["history_version"]),
                        float(entry["computed_at"]),
                        [str(i["item"]) for i in entry["items"]],
                        [float(i["score"]) for i in entry["items"]],
                    )
                )
        if len(found) >= n or len(users) < page:
            break
    return found


class DriftReports:
    """The last drift report of each model (JSON objects in one hash).

    Args:
        connection: a redis-py client.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def write(self, model: str, report: Mapping[str, Any]) -> None:
        """Keep ``report`` as ``model``'s last one."""
        self.connection.hset(keys.drift_key(), model, json.dumps(report))

    def read(self, models: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The last report of each of ``models`` that has one."""
        if not models:
            return {}
        raws = self.connection.hmget(keys.drift_key(), list(models))
        return {
            model: json.loads(raw)
            for model, raw in zip(models, raws, strict=True)
            if raw is not None
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
