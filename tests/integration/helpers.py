"""Helpers for integration tests: run workers, dump state for comparisons."""

from __future__ import annotations

import ast
import subprocess
import sys
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


#: A worker in a fresh interpreter: drains the events queue, then prints which of TensorFlow,
#: TFRS and tf-keras it ever imported (workers must import none).
TF_FREE_WORKER = """
import os
import sys
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.worker.runner import run_worker
settings = Settings.from_env(os.environ)
run_worker(connect(settings), settings, ["events"], burst=True)
print(sorted(m for m in ("tensorflow", "tensorflow_recommenders", "tf_keras") if m in sys.modules))
"""


def drain_in_a_fresh_worker(env: dict[str, str]) -> list[str]:
    """Drain the events queue with :data:`TF_FREE_WORKER`; the heavy modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", TF_FREE_WORKER], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(ast.literal_eval(done.stdout.strip().splitlines()[-1]))


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
