"""The soak's headline figures (bench/soak.py): freshness quantiles from a scraped histogram,
and lost or doubled events found pair by pair in the histories."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
NAME = "streamrec_event_to_cache_seconds"


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # it imports helpers of bench/faults.py
    return importlib.import_module("soak")


def buckets(model: str, counts: dict[str, float]) -> dict[Any, float]:
    """Cumulative bucket samples as ``scrape`` returns them."""
    return {
        (f"{NAME}_bucket", tuple(sorted({"model": model, "le": le}.items()))): n
        for le, n in counts.items()
    }


def test_quantiles_come_from_the_buckets_observed_between_two_scrapes(soak: ModuleType) -> None:
    before = buckets("als", {"0.01": 2, "0.1": 2, "+Inf": 2})
    after = buckets("als", {"0.01": 4, "0.1": 8, "+Inf": 8})
    found = soak.histogram_quantiles(before, after, NAME, (0.5, 0.99))
    count, (p50, p99) = found["als"]
    assert count == 6
    # 2 observations up to 10 ms, 4 in (10 ms, 100 ms]: linear inside the bucket
    assert p50 == pytest.approx(0.01 + 0.09 * 1 / 4)
    assert p99 == pytest.approx(0.01 + 0.09 * 3.94 / 4)


def test_a_quantile_past_the_last_finite_bucket_is_its_bound(soak: ModuleType) -> None:
    after = buckets("als", {"0.01": 0, "300.0": 1, "+Inf": 5})
    assert soak.histogram_quantiles({}, after, NAME, (0.99,))["als"] == (5, [300.0])
    assert soak.histogram_quantiles(after, after, NAME, (0.5,))["als"] == (0, [None])


def test_histories_show_missing_and_doubled_events_pair_by_pair(soak: ModuleType) -> None:
    baseline = {"u1": {"a": 1.0}, "u2": {}}
    sent = soak.Counter({("u1", "a"): 2, ("u2", "b"): 1, ("u3", "c"): 1})
    stored = {"u1": {"a": 4.0}, "u2": {}, "u3": {"c": 1.0}}
    missing, doubled, pairs, examples = soak.compare_histories(baseline, sent, stored)
    assert (missing, doubled, pairs) == (1, 1, 2)
    assert len(examples) == 2
    assert soak.compare_histories(
        baseline, sent, {"u1": {"a": 3.0}, "u2": {"b": 1.0}, "u3": {"c": 1.0}}
    )[:3] == (0, 0, 0)
