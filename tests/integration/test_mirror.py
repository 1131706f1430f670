"""The worker's history mirror must equal what Redis stores, whatever happens in between."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import redis

from streamrec.events import Event, EventValidator
from streamrec.settings import Settings
from streamrec.state.histories import HistoryStore
from streamrec.state.matrices import HistoryRows, MatrixReader
from streamrec.state.mirror import HistoryMirror
from streamrec.state.outcome import BatchOutcome

USERS = [f"u{n}" for n in range(6)]
ITEMS = [f"i{n}" for n in range(15)]
KINDS = ["play", "click", "view", "purchase", "rating"]


def random_batch(validator: EventValidator, rng: random.Random, size: int) -> list[Event]:
    events = []
    for _ in range(size):
        kind = rng.choice(KINDS)
        weight = rng.choice([0.5, 1, 2.5, 4, 5]) if kind == "rating" else rng.choice([1, 2, 3.7])
        # ratings arrive out of time order: the newest by timestamp must win
        events.append(
            validator.make(
                rng.choice(USERS),
                rng.choice(ITEMS),
                weight,
                kind,
                timestamp=1_000 + rng.randrange(500),
            )
        )
    return events


class ServingStore(HistoryStore):
    """Applies batches as a worker serving a model does: the outcome details each user."""

    def apply(
        self, batch_id: str, events: Sequence[Event], dead_letters: Sequence[Any] = (), **kw: Any
    ) -> BatchOutcome:
        return super().apply(batch_id, events, dead_letters, serving=True, **kw)


Parts = tuple[HistoryStore, EventValidator, MatrixReader]


@pytest.fixture
def parts(redis_conn: redis.Redis, settings: Settings) -> Parts:
    """A store to apply batches, a validator to make events, a reader of the truth."""
    return ServingStore(redis_conn, settings), EventValidator(settings), MatrixReader(redis_conn)


def assert_same(mirrored: HistoryRows, stored: HistoryRows) -> None:
    assert mirrored.users == stored.users
    np.testing.assert_array_equal(mirrored.versions, stored.versions)
    width = max(mirrored.matrix.shape[1], stored.matrix.shape[1])
    a = mirrored.matrix.toarray()
    b = stored.matrix.toarray()
    a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    np.testing.assert_array_equal(a, b)


def check(mirror: HistoryMirror, reader: MatrixReader, outcome: BatchOutcome) -> None:
    rows = mirror.rows(outcome.users)
    assert_same(rows, reader.rows([t.user for t in outcome.users]))


def test_mirror_equals_the_stored_histories_batch_after_batch(
    parts: Parts, redis_conn: redis.Redis
) -> None:
    store, validator, reader = parts
    mirror = HistoryMirror(MatrixReader(redis_conn), capacity=100)
    rng = random.Random(5)
    for n in range(60):
        outcome = store.apply(f"b{n}", random_batch(validator, rng, rng.randrange(1, 12)))
        check(mirror, reader, outcome)
    assert mirror.misses == len(USERS)  # each user read once, then kept current in memory
    assert mirror.hits > 200


def test_mirror_rereads_users_another_worker_changed(parts: Parts, redis_conn: redis.Redis) -> None:
    store, validator, reader = parts
    mirror = HistoryMirror(MatrixReader(redis_conn), capacity=100)
    rng = random.Random(6)
    for n in range(40):
        outcome = store.apply(f"mine-{n}", random_batch(validator, rng, 6))
        check(mirror, reader, outcome)
        if n % 3 == 0:  # applied by another worker: this mirror never sees the outcome
            store.apply(f"other-{n}", random_batch(validator, rng, 4))
    assert mirror.misses > len(USERS)


def test_mirror_survives_a_forgotten_user_coming_back(
    parts: Parts, redis_conn: redis.Redis
) -> None:
    store, validator, reader = parts
    mirror = HistoryMirror(MatrixReader(redis_conn), capacity=100)
    check(mirror, reader, store.apply("b1", [validator.make("u0", "i1", 2)]))
    store.forget("u0")
    # back, and at the version the mirror holds (1) after an event it did not see: only
    # the new dense id tells that its copy is of the user before forget
    store.apply("b2", [validator.make("u0", "i2", 1)])
    check(mirror, reader, store.apply("b3", [validator.make("u0", "i3", 1)]))
    assert reader.rows(["u0"]).matrix.nnz == 2


def test_mirror_capacity_drops_the_least_recently_touched(
    parts: Parts, redis_conn: redis.Redis
) -> None:
    store, validator, reader = parts
    mirror = HistoryMirror(MatrixReader(redis_conn), capacity=2)
    for n, user in enumerate(["a", "b", "c", "a"]):
        check(mirror, reader, store.apply(f"b{n}", [validator.make(user, "i", 1)]))
    assert len(mirror) == 2
    assert mirror.misses == 4  # "a" was dropped when "c" came, so it is read again
    disabled = HistoryMirror(MatrixReader(redis_conn), capacity=0)
    check(disabled, reader, store.apply("b9", [validator.make("a", "i", 1)]))
    assert len(disabled) == 0
