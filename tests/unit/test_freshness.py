"""The rolling latency histogram's buckets and quantiles, and the weighted observe."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from streamrec.metrics import LATENCY_BUCKETS, observe_many
from streamrec.state.freshness import (
    N_BUCKETS,
    PER_DOUBLING,
    SMALLEST,
    bucket_of,
    quantile,
    upper_bound,
)

#: Largest ratio between a quantile read back and the true one: one bucket's width.
WIDTH = 2 ** (1 / PER_DOUBLING)


def histogram(samples: np.ndarray) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s in samples:
        b = bucket_of(float(s))
        counts[b] = counts.get(b, 0) + 1
    return counts


def test_each_latency_falls_in_the_bucket_whose_bounds_hold_it() -> None:
    rng = np.random.default_rng(3)
    for seconds in np.exp(rng.uniform(np.log(1e-4), np.log(400.0), 2000)):
        b = bucket_of(float(seconds))
        assert seconds <= upper_bound(b) * (1 + 1e-12)
        assert b == 0 or seconds > upper_bound(b - 1) * (1 - 1e-12)
    assert bucket_of(0.0) == 0 and bucket_of(-1.0) == 0 and bucket_of(SMALLEST) == 0
    assert bucket_of(1e6) == N_BUCKETS - 1  # everything slower shares the last bucket
    assert bucket_of(upper_bound(7)) == 7  # a bound belongs to its own bucket


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: rng.lognormal(np.log(0.08), 0.6, 5000),  # a worker keeping up
        lambda rng: rng.uniform(0.002, 3.0, 5000),  # a backlog draining
        lambda rng: np.concatenate([rng.normal(0.05, 0.005, 4900), rng.uniform(5, 9, 100)]),
    ],
    ids=["lognormal", "uniform", "tail"],
)
def test_quantiles_are_within_one_bucket_of_the_exact_ones(draw: object, q: float) -> None:
    samples = np.abs(draw(np.random.default_rng(11)))  # type: ignore[operator]
    exact = float(np.quantile(samples, q))
    found = quantile(histogram(samples), q)
    assert found is not None
    assert exact / WIDTH <= found <= exact * WIDTH, (exact, found)


def test_quantiles_of_a_few_equal_samples_and_of_none() -> None:
    assert quantile({}, 0.5) is None
    counts = {bucket_of(0.2): 3}
    for q in (0.01, 0.5, 0.99):
        found = quantile(counts, q)
        assert found is not None and 0.2 / WIDTH <= found <= 0.2 * WIDTH


def test_a_weighted_observe_equals_that_many_observes() -> None:
    weighted = Histogram("w", "w", ["model"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    repeated = Histogram("r", "r", ["model"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for value, count in [(0.003, 4), (0.01, 2), (0.7, 5), (2.5, 1), (400.0, 3), (0.04, 0)]:
        observe_many(weighted.labels("als"), value, count)
        for _ in range(count):
            repeated.labels("als").observe(value)

    def samples(h: Histogram) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name[1:], s.labels, round(s.value, 9))
            for metric in h.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples(weighted) == samples(repeated)
    assert ("_count", {"model": "als"}, 15.0) in samples(weighted)
