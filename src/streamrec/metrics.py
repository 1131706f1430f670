"""The Prometheus series streamrec records in-process (``prometheus-client``).

Workers record what they apply and serve, the :class:`~streamrec.state.client.
RecommendationClient` counts its reads. Gauges that describe Redis (queue depths, dead
letters, model versions and their age) are not here: the process serving ``/metrics``
reads them at scrape time (:mod:`~streamrec.worker.exporter`).

Multiprocess mode (``streamrec worker -n N``) is chosen by ``prometheus_client`` itself from
``PROMETHEUS_MULTIPROC_DIR``, which only the entry point sets (before a child process
imports this module); nothing here reads the environment.

=====================================  =============  ======================================
series                                 labels         what
=====================================  =============  ======================================
``streamrec_events_applied_total``     ``kind``       valid events of batches applied
``streamrec_events_rejected_total``    ``kind``       events dead-lettered (kind ``other``
                                                      when it is missing or unknown)
``streamrec_batch_apply_seconds``      —              one apply of a job's batches (the
                                                      job's own and those drained with it)
``streamrec_fold_in_seconds``          ``model``      fold-in + top-k + encoding of one
                                                      refresh (all its users)
``streamrec_event_to_cache_seconds``   ``model``      per event: batch sent → the cache
                                                      write of its user's entry
``streamrec_cache_reads_total``        ``model``,     lists read by a client (``personal``,
                                       ``result``     ``popular`` fallback, or ``none``)
=====================================  =============  ======================================
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Histogram

#: Buckets of the event→cache latency, seconds.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
#: Buckets of per-call timings (apply, fold-in), seconds.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

EVENTS_APPLIED = Counter(
    "streamrec_events_applied", "Valid events of applied batches, by kind.", ["kind"]
)
EVENTS_REJECTED = Counter(
    "streamrec_events_rejected",
    "Events sent to the dead-letter list, by kind (other: missing or unknown kind).",
    ["kind"],
)
BATCH_APPLY_SECONDS = Histogram(
    "streamrec_batch_apply_seconds",
    "Seconds one apply of a job's batches took (the job's and those drained with it).",
    buckets=CALL_BUCKETS,
)
FOLD_IN_SECONDS = Histogram(
    "streamrec_fold_in_seconds",
    "Seconds one refresh took per model: fold-in, top-k and encoding of its users.",
    ["model"],
    buckets=CALL_BUCKETS,
)
EVENT_TO_CACHE_SECONDS = Histogram(
    "streamrec_event_to_cache_seconds",
    "Per event: seconds from its batch being sent to the cache write of its user's entry.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
CACHE_READS = Counter(
    "streamrec_cache_reads",
    "Lists read through RecommendationClient (result: personal, popular or none).",
    ["model", "result"],
)


_children: dict[tuple[Any, str], Any] = {}


def labelled(metric: Any, value: str) -> Any:
    """``metric.labels(value)`` for a metric of one label, looked up once per process (the
    worker path asks per batch; ``labels`` takes a lock and builds a tuple each time)."""
    child = _children.get((metric, value))
    if child is None:
        child = _children[(metric, value)] = metric.labels(value)
    return child


def observe_many(histogram: Any, value: float, count: int) -> None:
    """Observe ``value`` ``count`` times on a (labelled) histogram, at the cost of one.

    A refresh makes many events visible at once, with a few distinct latencies (one per
    batch): this adds each latency once, weighted. It uses the histogram's value cells
    (stable across prometheus-client releases since 0.8, checked by
    ``tests/unit/test_freshness.py``) and falls back to repeated observes without them.
    """
    if count <= 0:
        return
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if buckets is None or bounds is None or total is None:
        for _ in range(count):
            histogram.observe(value)
        return
    total.inc(value * count)
    buckets[bisect_left(bounds, value)].inc(count)
