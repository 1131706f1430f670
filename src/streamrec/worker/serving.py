"""Online ALS serving: fold users in from their full history and cache their top-k.

Used by the worker after every batch (:meth:`OnlineALS.after_batch`, an
:data:`~streamrec.worker.handlers.AfterApply` hook) and by a retrain to refresh every
user. The model is reloaded only when the registry publishes a newer version.

Coalescing: when the worker says more batches are already waiting (``busy``), the users of
a batch are kept pending instead of served at once, and served together when the queue is
empty (:meth:`OnlineALS.flush`, called by the worker before it blocks for the next job) or
when the pending set grows too large or too old. Folding in is a per-batch fixed cost plus
a small per-user cost, so a worker that falls behind catches up with larger, cheaper
refreshes instead of piling up latency. A user's entry is computed from their newest
mirrored history, so deferring never serves an older one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import redis
import scipy.sparse as sp

from streamrec import keys
from streamrec.models.als import ImplicitALS, with_width
from streamrec.producer.events import Event
from streamrec.settings import Settings
from streamrec.state.cache import RecommendationCache, encode_entry
from streamrec.state.histories import BatchOutcome
from streamrec.state.matrices import HistoryRows, MatrixReader, StoredHistory, history_rows
from streamrec.state.mirror import HistoryMirror
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary

logger = logging.getLogger(__name__)

MODEL = "als"
#: Seconds between refreshes of the popular-items entry by a worker.
POPULAR_EVERY = 5.0
#: Pending users beyond which a busy worker serves anyway.
MAX_PENDING = 2000
#: Seconds a pending user may wait while the worker is busy.
MAX_DEFER = 0.2


class OnlineALS:
    """Keeps the active ALS model and writes users' cache entries.

    Args:
        connection: a redis-py client.
        settings: where the registry lives; ``top_k`` items per cached list.
        because: history items named per recommended item.
        busy: returns True when more batches are already queued for this worker; None
            serves every batch at once (see the module doc on coalescing).
    """

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        because: int = 2,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.registry = ModelRegistry(connection, settings)
        self.reader = MatrixReader(connection)
        self.mirror = HistoryMirror(self.reader, settings.mirror_users)
        self.cache = RecommendationCache(connection)
        self.item_vocab = Vocabulary(connection, "items")
        self.k = settings.top_k
        self.because = because
        self.model: ImplicitALS | None = None
        self.version: int | None = None
        self.busy = busy
        self._names = np.zeros(0, dtype=object)
        self._popular_at = 0.0
        self._pending: dict[str, StoredHistory] = {}
        self._pending_since = 0.0
        self.serves = 0  # batched refreshes run (a coalesced one serves several batches)

    def current(self) -> ImplicitALS | None:
        """The active model, reloaded if a newer version was published (None if untrained)."""
        active = self.registry.active_version(MODEL)
        if active is None:
            return None
        if self.version is None or active > self.version:
            version, folder = self.registry.active_folder(MODEL)
            self.model = ImplicitALS.load(folder)
            self.version = version
            logger.info("serving als version %d (%d items)", version, self.model.n_items)
        return self.model

    def serve(self, model: ImplicitALS, version: int) -> None:
        """Use ``model`` as version ``version`` (a trainer that holds it skips the reload)."""
        self.model, self.version = model, version

    def after_batch(self, outcome: BatchOutcome, events: Sequence[Event]) -> None:
        """Worker hook: refresh the cache entries of the users the batch touched (now, or
        with the next batches while the worker is busy)."""
        self.reader.learn_items(outcome.new_items)
        if outcome.users:
            if self.current() is not None:
                if not self._pending:
                    self._pending_since = time.monotonic()
                stored = self.mirror.histories(outcome.users)
                for user, history in zip(outcome.users, stored, strict=True):
                    self._pending[user.user] = history  # the newest: later batches advance it
                if not self._may_defer():
                    self.flush()
        else:  # a redelivered batch: its users as stored now
            self.refresh(sorted({e.user for e in events}))
        if time.monotonic() - self._popular_at > POPULAR_EVERY:
            self.cache.write_popular(self.cache.popular_from_counts(self.k))
            self._popular_at = time.monotonic()

    @property
    def pending(self) -> int:
        """Users whose refresh is deferred (see the module doc on coalescing)."""
        return len(self._pending)

    def flush(self) -> int:
        """Serve every pending user; returns the entries written."""
        if not self._pending or self.model is None:
            return 0
        users, stored = list(self._pending), list(self._pending.values())
        self._pending.clear()
        return self._serve(history_rows(users, stored))

    def _may_defer(self) -> bool:
        return (
            self.busy is not None
            and len(self._pending) < MAX_PENDING
            and time.monotonic() - self._pending_since < MAX_DEFER
            and self.busy()
        )

    def refresh(self, users: Sequence[str]) -> int:
        """Fold ``users`` in from their full histories and write their entries.

        Users with no item the model knows keep reading the popular entry.

        Returns:
            Entries written (older-history writes are refused by the cache).
        """
        if self.current() is None or not users:
            return 0
        return self._serve(self.reader.rows(users))

    def _serve(self, rows: HistoryRows) -> int:
        model, version = self.model, self.version
        assert model is not None and version is not None
        self.serves += 1
        self._add_new_items(model, rows)
        matrix = with_width(rows.matrix, model.n_items)
        active = np.flatnonzero(matrix.getnnz(axis=1) > 0)
        if len(active) == 0:
            return 0
        rows_active = matrix[active]
        systems = model.solve_users(rows_active)
        indptr, indices = rows_active.indptr, rows_active.indices
        seen = [indices[indptr[n] : indptr[n + 1]] for n in range(len(active))]
        ids, scores = model.recommend(systems.vectors, self.k, seen)
        because = model.because(systems, ids, self.because)
        names = self._names_of(max(int(ids.max()), int(because.max())) + 1)
        rounded = np.round(scores.astype(np.float64), 6)
        entries = []
        for n, r in enumerate(active):
            found = ids[n] >= 0
            reasons = because[n][found]
            why = names[reasons].tolist()
            if (reasons < 0).any():  # a history shorter than the reasons asked for
                why = [
                    [w for w, j in zip(ws, js, strict=True) if j >= 0]
                    for ws, js in zip(why, reasons, strict=True)
                ]
            user = rows.users[r]
            entries.append(
                (
                    keys.recommendations_key(user, MODEL),
                    encode_entry(
                        user,
                        MODEL,
                        version,
                        int(rows.versions[r]),
                        names[ids[n][found]].tolist(),
                        rounded[n][found].tolist(),
                        why,
                    ),
                )
            )
        return self.cache.write_encoded(entries)

    def _add_new_items(self, model: ImplicitALS, rows: HistoryRows) -> None:
        """Give items first seen after training a vector, from the users of this batch."""
        matrix = rows.matrix
        if matrix.shape[1] <= model.n_items:
            return
        known = with_width(matrix, model.n_items)
        fans = np.flatnonzero(known.getnnz(axis=1) > 0)
        if len(fans) == 0:
            return
        user_vectors = model.fold_in_users(known[fans])
        item_users = sp.csr_matrix(matrix[fans][:, model.n_items :].T)
        new = np.flatnonzero(item_users.getnnz(axis=1) > 0)
        if len(new):
            vectors = model.fold_in_items(item_users[new], user_vectors)
            model.add_items(new + model.n_items, vectors)
            logger.info("folded in %d new items", len(new))

    def _names_of(self, n: int) -> np.ndarray:
        """External names of dense items ``0 .. n-1`` (an object array, grown as needed)."""
        have = len(self._names)
        if n > have:
            found = self.item_vocab.externals(list(range(have, n)))
            extra = [name if name is not None else str(have + i) for i, name in enumerate(found)]
            self._names = np.concatenate([self._names, np.array(extra, dtype=object)])
        return self._names
