"""Online serving: fold users in from their full history and cache their top-k per model.

Used by the worker after every batch (:meth:`OnlineServing.after_batches`, an
:data:`~streamrec.serving.handler.AfterApply` hook) and by a retrain to refresh every
user. Each model (:mod:`~streamrec.serving.served`) is reloaded only when the registry
publishes a newer version; models never trained are skipped. ALS refreshes every touched
user; KernelMF only the users whose batch carried a rating (plays do not change it).

Coalescing: when the worker says more batches are already waiting (``busy``), the users of
a batch are kept pending instead of served at once, and served together when the queue is
empty (:meth:`OnlineServing.flush`, called by the worker before it blocks for the next job)
or when the pending set grows too large or too old. Folding in is a per-batch fixed cost
plus a small per-user cost, so a worker that falls behind catches up with larger, cheaper
refreshes instead of piling up latency. A user's entry is computed from their newest
mirrored history, so deferring never serves an older one.

Durable deferral: while a model is served, the apply script records each batch's users
under its id in the unserved-batches hash, and the cache write that serves them takes
the id off. A worker that dies with users pending leaves their batches there;
:meth:`OnlineServing.recover` (run by every worker between jobs) serves the users of
batches that stayed there from one call to the next.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import redis

from streamrec import keys, metrics
from streamrec.events import Event
from streamrec.serving.latency import LatencyTracker, SentBatch
from streamrec.serving.registry import REGISTRY
from streamrec.serving.reranking import link_rerankers
from streamrec.serving.served import ServedModel
from streamrec.settings import RATING_KIND, Settings
from streamrec.state.cache import Entry, RecommendationCache, popular_size
from streamrec.state.freshness import FreshnessLog
from streamrec.state.matrices import HistoryRows, MatrixReader, StoredHistory, history_rows
from streamrec.state.mirror import HistoryMirror
from streamrec.state.outcome import BatchOutcome
from streamrec.state.registry import ModelRegistry

logger = logging.getLogger(__name__)

#: Seconds between refreshes of the popular-items entry by a worker.
POPULAR_EVERY = 5.0
#: Pending users beyond which a busy worker serves anyway.
MAX_PENDING = 2000
#: Seconds a pending user may wait while the worker is busy.
MAX_DEFER = 0.05
#: Seconds for which the batch path trusts its last look at the published versions.
VERSIONS_EVERY = 0.05


class OnlineServing:
    """Keeps the served models and writes users' cache entries.

    Args:
        connection: a redis-py client.
        settings: registry location, ``top_k``, mirror size.
        busy: returns True when more batches are already queued for this worker; None
            serves every batch at once (see the module doc on coalescing).
        models: the models to serve (default: every model of the registry).
    """

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        busy: Callable[[], bool] | None = None,
        models: Sequence[ServedModel[Any]] | None = None,
    ) -> None:
        self.reader = MatrixReader(connection)
        self.registry = ModelRegistry(connection, settings)
        self.mirror = HistoryMirror(self.reader, settings.mirror_users)
        self.cache = RecommendationCache(connection)
        self.k = settings.top_k
        self.models: list[ServedModel[Any]] = (
            list(models)
            if models is not None
            else [model.served(connection, settings) for model in REGISTRY.values()]
        )
        link_rerankers(self.models, connection, settings)  # settings.rerank
        self.busy = busy
        self._popular_at = 0.0
        self._pending: dict[str, StoredHistory] = {}
        self._rated: set[str] = set()
        self._pending_since = 0.0
        self._marks: list[str] = []  # batches whose users are pending
        self._sent: list[SentBatch] = []  # the applied batches whose users are pending
        self.freshness = FreshnessLog(connection)  # the worker's thread writes it (run)
        self.latency = LatencyTracker(self.freshness)
        self._unserved_seen: set[bytes] = set()
        self._checked = (-VERSIONS_EVERY, False)  # (when, whether a model was trained)
        self.serves = 0  # batched refreshes run (a coalesced one serves several batches)
        self.recovered = 0  # users served for a worker that did not

    def served(self, name: str) -> ServedModel[Any]:
        """The served model called ``name``."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def after_batches(self, applied: Sequence[tuple[BatchOutcome, Sequence[Event]]]) -> None:
        """Worker hook: refresh the cache entries of the users the batches touched (now, or
        with the next batches while the worker is busy)."""
        for outcome, events in applied:
            self._after_batch(outcome, events)
        if self._pending and not self._may_defer():
            self.flush()
        if time.monotonic() - self._popular_at > POPULAR_EVERY:
            self.cache.write_popular(self.cache.popular_from_counts(popular_size(self.k)))
            self._popular_at = time.monotonic()

    def _after_batch(self, outcome: BatchOutcome, events: Sequence[Event]) -> None:
        self.reader.learn_items(outcome.new_items)
        if not outcome.detailed:  # applied while no model was served: one is, since? (ask
            users = Counter(e.user for e in events)
            if users and self.current():  # now: a cached "no" could leave them unserved)
                at = outcome.sent_at
                sent = [SentBatch(at, outcome.events, users)] if at and outcome.applied else []
                self._serve(self.reader.rows(sorted(users)), None, [], sent)
        elif outcome.users:
            if self._current_now():
                if not self._pending:
                    self._pending_since = time.monotonic()
                stored = self.mirror.histories(outcome.users)
                for user, history in zip(outcome.users, stored, strict=True):
                    self._pending[user.user] = history  # the newest: later batches advance it
                self._marks += outcome.marks
                batch = SentBatch.of(outcome)
                if batch is not None:
                    self._sent.append(batch)
                self._rated.update(e.user for e in events if e.kind == RATING_KIND)
        else:  # a redelivered batch: its users as stored now
            self.refresh(sorted({e.user for e in events}))

    @property
    def serving(self) -> bool:
        """Whether a model is served (then applied batches record their users as unserved
        until this worker serves them)."""
        return any(model.model is not None for model in self.models)

    def recover(self) -> int:
        """Serve the users of batches a worker that died left unserved.

        A batch counts as left behind when the unserved-batches hash held it at the previous
        call too (the caller spaces calls beyond the deferral bound, :data:`MAX_DEFER`) and
        this worker does not hold its users pending. Returns the users served.
        """
        unserved: dict[bytes, bytes] = self.cache.connection.hgetall(keys.unserved_key())  # type: ignore[assignment]
        mine = {mark.encode() for mark in self._marks}
        stale = [mark for mark in unserved if mark in self._unserved_seen and mark not in mine]
        self._unserved_seen = set(unserved)
        if not stale:
            return 0
        users = sorted({u for mark in stale for u in unserved[mark].decode().split("\n") if u})
        marks = [mark.decode() for mark in stale]
        logger.warning(
            "serving %d users of %d batches a stopped worker left unserved", len(users), len(marks)
        )
        if not self.current():
            self.cache.write_encoded([], marks)
            return 0
        self._serve(self.reader.rows(users), None, marks)
        self.recovered += len(users)
        return len(users)

    @property
    def pending(self) -> int:
        """Users whose refresh is deferred (see the module doc on coalescing)."""
        return len(self._pending)

    def flush(self) -> int:
        """Serve every pending user; returns the entries written."""
        if not self._pending:
            return 0
        users, stored = list(self._pending), list(self._pending.values())
        rated, marks, sent = self._rated, self._marks, self._sent
        self._pending, self._rated, self._marks, self._sent = {}, set(), [], []
        return self._serve(history_rows(users, stored), rated, marks, sent)

    def refresh(self, users: Sequence[str]) -> int:
        """Fold ``users`` in from their full histories and write their entries in every
        trained model.

        Users with no history a model can use keep reading the popular entry.

        Returns:
            Entries written (older-history writes are refused by the cache).
        """
        if not users or not self.current():
            return 0
        return self._serve(self.reader.rows(users), None, [])

    def current(self) -> bool:
        """Load any newer published versions; True when at least one model is trained."""
        versions = self.registry.active_versions([served.name for served in self.models])
        synced = [served.sync(v) for served, v in zip(self.models, versions, strict=True)]
        self._checked = (time.monotonic(), any(model is not None for model in synced))
        return self._checked[1]

    def _current_now(self) -> bool:
        """:meth:`current`, or its answer of less than :data:`VERSIONS_EVERY` seconds ago (a
        worker applying several batches at once asks once)."""
        at, trained = self._checked
        return trained if time.monotonic() - at < VERSIONS_EVERY else self.current()

    def _may_defer(self) -> bool:
        return (
            self.busy is not None
            and len(self._pending) < MAX_PENDING
            and time.monotonic() - self._pending_since < MAX_DEFER
            and self.busy()
        )

    def _serve(
        self,
        rows: HistoryRows,
        rated: set[str] | None,
        marks: Sequence[str],
        sent: Sequence[SentBatch] = (),
    ) -> int:
        """Entries of every trained model; a rating model only for ``rated`` users (all
        users when None). ``marks``: the unserved batches whose users these are; ``sent``:
        the applied batches whose events these entries make visible (their latency is
        recorded, see :mod:`~streamrec.serving.latency`)."""
        self.serves += 1
        entries: list[Entry] = []
        by_model: dict[str, list[Entry]] = {}
        for served in self.models:
            if served.model is None:
                continue
            subset = rows
            if served.ratings_only and rated is not None:
                picked = [n for n, user in enumerate(rows.users) if user in rated]
                if not picked:
                    continue
                subset = rows.subset(np.array(picked))
            started = time.perf_counter()
            by_model[served.name] = served.entries(subset)
            fold_in = metrics.labelled(metrics.FOLD_IN_SECONDS, served.name)
            fold_in.observe(time.perf_counter() - started)
            entries += by_model[served.name]
        written = self.cache.write_encoded(entries, marks)
        self.latency.written(len(rows.users), by_model, sent)
        return written
