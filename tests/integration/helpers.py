"""Helpers for integration tests: run workers, dump state for comparisons."""

from __future__ import annotations

from typing import Any

import redis

from streamrec import keys
from streamrec.data.synthetic import SyntheticConfig
from streamrec.models.als import ALSParams
from streamrec.serving.handler import EventHandler
from streamrec.serving.online import OnlineServing
from streamrec.settings import Settings
from streamrec.state.histories import HistoryStore
from streamrec.state.stats import read_counts
from streamrec.state.vocab import Vocabulary
from streamrec.worker.jobs import prepare
from streamrec.worker.runner import run_worker

#: A small ALS model of planted tastes (the ``trained`` fixture in conftest.py).
ALS_PARAMS = ALSParams(factors=16, iterations=10, regularization=1.0, alpha=20.0)
ALS_CONFIG = SyntheticConfig(n_users=150, n_items=120, n_groups=4, events_per_user=15, in_group=0.9)


def drain(conn: redis.Redis, settings: Settings, queue_name: str = keys.EVENTS_QUEUE) -> None:
    """Run a real streamrec worker (an RQ SimpleWorker) in this process until the queue is
    empty."""
    run_worker(conn, settings, [queue_name], burst=True)


def dump_state(conn: redis.Redis, store: HistoryStore) -> dict[str, Any]:
    """Everything observable of the state, by external id (dense ids may differ by order)."""
    users = sorted(Vocabulary(conn, "users").all())
    histories = {}
    for user in users:
        h = store.get(user)
        histories[user] = (h.interactions, h.ratings, h.version, h.last_ts)
    counts = read_counts(conn)
    return {
        "histories": histories,
        "items": sorted(Vocabulary(conn, "items").all()),
        "popularity": sorted(conn.zrange(keys.popularity_key(), 0, -1, withscores=True)),
        "events_applied": counts.events_applied,
        "dead_letters": counts.dead_letters,
    }


def deferring_handler(conn: redis.Redis, settings: Settings) -> tuple[EventHandler, OnlineServing]:
    """A worker's handler that defers serving, as when more batches always wait."""
    handler = prepare(conn, settings, coalesce=True)
    online = handler.deferring[0]
    assert isinstance(online, OnlineServing)
    online.busy = lambda: True
    return handler, online
