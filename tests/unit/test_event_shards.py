"""Event shards without Redis: queue names, the user → shard hash, which process serves
which shard, and the jobs a shard's queue may carry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec import keys
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.state.queues import APPLY_EVENTS, RETRAIN_MODEL, allowed_functions
from streamrec.worker.processes import shard_queues


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=64))
def test_a_user_has_one_shard_in_range_whatever_the_id(user: str, shards: int) -> None:
    shard = keys.shard_of(user, shards)
    assert 0 <= shard < shards
    assert keys.shard_of(user, shards) == shard  # stable
    assert keys.shard_of(user, 1) == 0


def test_users_spread_over_the_shards() -> None:
    counts = [0] * 4
    for n in range(4000):
        counts[keys.shard_of(f"user-{n}", 4)] += 1
    assert min(counts) > 800, counts


def test_queue_names_of_the_shards() -> None:
    assert keys.events_queues(3) == ["events", "events-1", "events-2"]
    assert keys.all_queues(1) == list(keys.ALL_QUEUES)
    assert all(keys.is_events_queue(name) for name in keys.events_queues(64))
    for name in ("events-64", "events-01", "events-0", "events-", "training", "events-1 "):
        assert not keys.is_events_queue(name), name


@pytest.mark.parametrize(
    ("processes", "shards", "expected"),
    [
        (1, 1, [["events"]]),
        (1, 3, [["events", "events-1", "events-2"]]),
        (2, 2, [["events"], ["events-1"]]),
        (2, 5, [["events", "events-2", "events-4"], ["events-1", "events-3"]]),
        (3, 2, [["events"], ["events-1"], ["events"]]),
    ],
)
def test_every_shard_has_a_process(processes: int, shards: int, expected: list[list[str]]) -> None:
    assert shard_queues(processes, shards) == expected


def test_a_shards_queue_carries_event_batches_only() -> None:
    assert allowed_functions("events-7") == frozenset({APPLY_EVENTS})
    assert RETRAIN_MODEL in (allowed_functions("training") or ())
    assert allowed_functions("events-99") is None and allowed_functions("default") is None


@pytest.mark.parametrize("shards", ["0", "65", "-1"])
def test_event_shards_out_of_range_are_refused(shards: str) -> None:
    with pytest.raises(
        ConfigError, match=f"event_shards must be between 1 and 64 \\(got {shards}\\)"
    ):
        Settings.from_env({"STREAMREC_EVENT_SHARDS": shards})
