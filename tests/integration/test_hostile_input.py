"""No input stops a worker, poisons its batch or breaks training: arbitrary JSON thrown at a
worker's handler on a real server, and sums pushed past the float64 range."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import hypothesis.strategies as st
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from streamrec import keys
from streamrec.errors import InvalidEventError
from streamrec.events import EventValidator
from streamrec.models.als import ALSParams
from streamrec.serving.handler import EventHandler
from streamrec.serving.training import train_als
from streamrec.settings import MAX_STORED_WEIGHT, Settings
from streamrec.state.histories import HistoryStore
from streamrec.state.stats import read_counts

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = ["user", "item", "weight", "kind", "timestamp", "event_id"]
near_events = st.dictionaries(
    st.sampled_from(FIELDS),
    json_values | st.sampled_from(["u1", "u2", "i1", "play", "rating", "purchase", 3, 1e308]),
)
valid_events = st.builds(
    lambda u, i, w, k: {"user": f"u{u}", "item": f"i{i}", "weight": w, "kind": k},
    st.integers(0, 3),
    st.integers(0, 5),
    st.integers(1, 5),
    st.sampled_from(["play", "click", "rating"]),
)


def stored_numbers(conn: redis.Redis) -> list[float]:
    values = []
    for key in conn.scan_iter(match=f"{keys.PREFIX}:user:*"):
        name = key.decode()
        if name.endswith(":history") or name.endswith(":ratings"):
            values += [float(v) for v in conn.hvals(key)]
        elif name.endswith(":version"):
            values.append(float(conn.get(key) or 0))
    values += [score for _, score in conn.zrange(keys.popularity_key(), 0, -1, withscores=True)]
    return values


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.lists(st.one_of(valid_events, near_events, json_values), max_size=12),
    batch_id=json_values,
)
def test_a_worker_applies_the_valid_events_of_any_batch_and_stores_only_finite_numbers(
    redis_conn: redis.Redis, settings: Settings, batch: list[Any], batch_id: Any
) -> None:
    redis_conn.flushdb()
    validator = EventValidator(settings)
    expected: dict[tuple[str, str], float] = defaultdict(float)
    invalid = 0
    for raw in batch:
        try:
            event = validator.parse(raw)
        except InvalidEventError:
            invalid += 1
            continue
        if event.kind != "rating":
            expected[(event.user, event.item)] += event.weight * settings.kind_weights[event.kind]
    outcome = EventHandler(redis_conn, settings).handle(batch_id, batch)
    assert outcome.events == len(batch) - invalid and outcome.dead_letters == invalid
    store = HistoryStore(redis_conn, settings)
    for (user, item), total in expected.items():
        assert math.isclose(store.get(user).interactions[item], total, rel_tol=1e-9)
    assert all(math.isfinite(v) for v in stored_numbers(redis_conn))
    assert read_counts(redis_conn).dead_letters == invalid


def test_a_batch_that_is_not_a_list_is_one_dead_letter_and_changes_nothing_else(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    handler = EventHandler(redis_conn, settings)
    for n, payload in enumerate([None, {"user": "u"}, "text", 10**400, [[[]]]]):
        handler.handle(f"b{n}", payload)
    counts = read_counts(redis_conn)
    assert counts.dead_letters == 5  # four non-lists, and the one bad event of the last
    assert (counts.users, counts.items, counts.events_applied) == (0, 0, 0)


def test_sums_saturate_so_training_never_meets_an_infinity(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """HINCRBYFLOAT adds in long double and would store 1e4000; sums stop at the cap."""
    generous = settings.with_(max_weight=MAX_STORED_WEIGHT)
    validator = EventValidator(generous)
    store = HistoryStore(redis_conn, generous)
    for n in range(3):
        batch = [validator.make("whale", "pearl", MAX_STORED_WEIGHT / 4, "purchase")]
        batch += [validator.make(f"u{k}", f"i{(k + n) % 4}", 1) for k in range(6)]
        store.apply(f"b{n}", batch)
    assert store.get("whale").interactions == {"pearl": MAX_STORED_WEIGHT}
    assert all(math.isfinite(v) for v in stored_numbers(redis_conn))
    report = train_als(redis_conn, generous, ALSParams(factors=4, iterations=3))
    assert report.version == 1


def test_events_whose_sum_would_overflow_never_break_training(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """Each weight is finite, yet ×4 (purchase) or summed twice it is past float64: such
    events are dead-lettered and training goes on for everyone."""
    from streamrec.state.queues import APPLY_EVENTS, queue
    from tests.integration.helpers import drain

    batch = [
        {"user": "whale", "item": "pearl", "weight": 1e308, "kind": "purchase"},
        {"user": "whale", "item": "shell", "weight": 1e308},
        {"user": "whale", "item": "shell", "weight": 1e308},
    ]
    batch += [{"user": f"u{k}", "item": f"i{k % 4}"} for k in range(8)]
    queue(redis_conn).enqueue(APPLY_EVENTS, "overflow", batch)
    drain(redis_conn, settings)
    assert read_counts(redis_conn).dead_letters == 3
    assert all(math.isfinite(v) for v in stored_numbers(redis_conn))
    assert train_als(redis_conn, settings, ALSParams(factors=4, iterations=3)).version == 1
