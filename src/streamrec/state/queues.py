"""The RQ queues, always with RQ's JSON serializer (nothing in Redis is ever unpickled)."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from streamrec import keys


def queue(connection: redis.Redis, name: str = keys.EVENTS_QUEUE) -> Queue:
    """The RQ queue ``name`` with the JSON serializer."""
    return Queue(name, connection=connection, serializer=JSONSerializer)
