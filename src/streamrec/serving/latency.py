"""Event→cache latency: which events a refresh makes visible, and how long after they were sent.

:class:`~streamrec.serving.online.OnlineServing` gives each refresh the batches whose users
it serves (:class:`SentBatch`: when the batch was sent, its events per user); after the
cache write, :meth:`LatencyTracker.written` records, per model, one latency per batch
weighted by the events of the users that model wrote an entry for — in the Prometheus
histogram ``streamrec_event_to_cache_seconds`` and in the rolling per-minute histogram in
Redis that ``streamrec status`` reads (:mod:`~streamrec.state.freshness`, written by a
thread at most once a second). The cost is a few operations per batch and model, plus one
per user only for a model that served some of the users (a rating model).

"Events refreshed" (the histogram's ``_count``) are the events of applied batches whose
user's entry of that model went to the compare-and-set write; a redelivered batch (applied
before) and users recovered for a dead worker count nothing. The clock starts when the
batch's first event was pushed (the ``pushed_at`` the producer carries in the job's meta,
its own clock, before the linger; a job without one counts from its ``created_at``) and
stops after the write.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamrec import metrics
from streamrec.state.cache import Entry
from streamrec.state.freshness import FreshnessLog
from streamrec.state.outcome import BatchOutcome, TouchedUser


@dataclass(frozen=True)
class SentBatch:
    """The events a batch applied, by user, and when it was sent.

    Attributes:
        sent_at: epoch seconds.
        events: events applied.
        users: the users it changed, as :class:`TouchedUser` (with their ``events``) or as
            a mapping user -> events.
    """

    sent_at: float
    events: int
    users: Sequence[TouchedUser] | Mapping[str, int]

    @classmethod
    def of(cls, outcome: BatchOutcome) -> SentBatch | None:
        """The batch of an outcome, if it was applied now and its send time is known."""
        if outcome.sent_at is None or not outcome.applied or not outcome.events:
            return None
        return cls(outcome.sent_at, outcome.events, outcome.users)

    def events_of(self, users: set[str]) -> int:
        """Events of this batch whose user is in ``users``."""
        if isinstance(self.users, Mapping):
            return sum(n for user, n in self.users.items() if user in users)
        return sum(t.events for t in self.users if t.user in users)


class LatencyTracker:
    """Records the event→cache latency of each refresh.

    Args:
        log: the rolling histogram in Redis (written by its own thread, see
            :meth:`FreshnessLog.run`).
    """

    def __init__(self, log: FreshnessLog) -> None:
        self.log = log

    def written(
        self, n_users: int, entries: Mapping[str, Sequence[Entry]], batches: Sequence[SentBatch]
    ) -> None:
        """Record a cache write of ``entries`` (per model) for ``n_users`` users, made of the
        users of ``batches``."""
        if not batches:
            return
        now = time.time()
        for model, written in entries.items():
            if not written:
                continue
            histogram = metrics.labelled(metrics.EVENT_TO_CACHE_SECONDS, model)
            users = None if len(written) >= n_users else {user for _, _, user in written}
            for batch in batches:
                n = batch.events if users is None else batch.events_of(users)
                if n:
                    latency = max(0.0, now - batch.sent_at)
                    metrics.observe_many(histogram, latency, n)
                    self.log.add(model, latency, n, now)
