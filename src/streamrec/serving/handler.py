"""What a worker does with a batch of events, without RQ: validate, apply, then the hooks.

The hooks are where the models plug in: each runs after batches are in the state, with
each batch's outcome and valid events, and must be idempotent, because a redelivered batch
(recognised by the ledger, so not applied twice) still runs them: its first delivery may
have died after applying and before its hooks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any, Protocol

import redis

from streamrec import metrics
from streamrec.errors import InvalidEventError
from streamrec.events import Event, EventValidator
from streamrec.settings import Settings
from streamrec.state.deadletters import DeadLetter
from streamrec.state.histories import HistoryStore
from streamrec.state.outcome import BatchOutcome

logger = logging.getLogger(__name__)

_kind = attrgetter("kind")

#: Called after each :meth:`EventHandler.handle_many` with each batch's outcome and valid
#: events, in order.
AfterApply = Callable[[Sequence[tuple[BatchOutcome, Sequence[Event]]]], None]


class Deferring(Protocol):
    """A hook that may defer work while more batches wait (see :mod:`~streamrec.serving.online`)."""

    @property
    def pending(self) -> int:
        """Deferred units of work (0 when none)."""
        ...

    @property
    def serving(self) -> bool:
        """Whether work may be deferred (the batch's users are then recorded as unserved in the
        state until the work is done)."""
        ...

    def flush(self) -> int:
        """Do the deferred work now."""
        ...


@dataclass(frozen=True)
class ParsedBatch:
    """A raw batch split into valid events and dead letters."""

    batch_id: str
    events: list[Event]
    dead_letters: list[DeadLetter]


class EventHandler:
    """Applies raw batches to the state; never raises on bad data.

    Args:
        connection: a redis-py client.
        settings: validation rules and state settings.
        hooks: run after each batch (fold-in plugs in here).
        deferring: hooks that may defer work; the worker calls :meth:`flush` when its queue
            is empty and before it stops.
    """

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        hooks: Sequence[AfterApply] = (),
        deferring: Sequence[Deferring] = (),
    ) -> None:
        self.validator = EventValidator(settings)
        self.kinds = settings.kinds
        self.store = HistoryStore(connection, settings)
        self.hooks = list(hooks)
        self.deferring = list(deferring)

    @property
    def pending(self) -> bool:
        """Whether a hook holds deferred work."""
        return any(d.pending for d in self.deferring)

    def flush(self) -> None:
        """Do every hook's deferred work."""
        for d in self.deferring:
            d.flush()

    def parse(self, batch_id: Any, events: Any) -> ParsedBatch:
        """Validate a raw batch; anything invalid becomes a dead letter with its reason.

        A missing or malformed batch id is replaced by a digest of the payload, so that a
        redelivery of the same payload is still recognised.
        """
        now = time.time()
        if not isinstance(batch_id, str) or not batch_id or len(batch_id) > 200:
            digest = hashlib.sha256(_canonical(events).encode()).hexdigest()[:32]
            logger.warning("batch without a usable id (%r): using content id %s", batch_id, digest)
            batch_id = f"content-{digest}"
        if not isinstance(events, list):
            letter = DeadLetter(
                f"batch must be a list of events (got a {type(events).__name__})",
                "payload",
                events,
                batch_id,
                now,
            )
            return ParsedBatch(batch_id, [], [letter])
        valid: list[Event] = []
        dead: list[DeadLetter] = []
        for raw in events:
            try:
                valid.append(self.validator.parse(raw))
            except InvalidEventError as exc:
                dead.append(DeadLetter(str(exc), exc.field, raw, batch_id, now))
            except Exception as exc:  # a validator bug must not lose the rest of the batch
                logger.exception("batch %s: the validator failed on an event", batch_id)
                reason = f"payload could not be validated ({type(exc).__name__}: {exc})"
                dead.append(DeadLetter(reason, "payload", raw, batch_id, now))
        return ParsedBatch(batch_id, valid, dead)

    def handle(self, batch_id: Any, events: Any, *, sent_at: float | None = None) -> BatchOutcome:
        """Validate, apply atomically with the batch id, then run the hooks.

        Args:
            batch_id: the producer's batch id (a digest of the payload replaces a bad one).
            events: the raw events.
            sent_at: when the batch was sent, epoch seconds (default now); the events of a
                user forgotten after that are dropped.
        """
        return self.handle_many([(batch_id, events, sent_at)])[0]

    def handle_many(self, batches: Sequence[tuple[Any, Any, float | None]]) -> list[BatchOutcome]:
        """:meth:`handle` for several raw batches ``(batch_id, events, sent_at)`` in order:
        applied in as few round trips as they fit, then the hooks, batch by batch."""
        parsed = [self.parse(batch_id, events) for batch_id, events, _ in batches]
        started = time.perf_counter()
        outcomes = self.store.apply_all(
            [
                (batch.batch_id, batch.events, batch.dead_letters, sent_at)
                for batch, (_, _, sent_at) in zip(parsed, batches, strict=True)
            ],
            serving=any(d.serving for d in self.deferring),
        )
        metrics.BATCH_APPLY_SECONDS.observe(time.perf_counter() - started)
        outcomes = [
            replace(outcome, sent_at=sent_at) if sent_at is not None else outcome
            for outcome, (_, _, sent_at) in zip(outcomes, batches, strict=True)
        ]
        self._count(parsed, outcomes)
        for outcome in outcomes:
            if outcome.applied:
                logger.info(
                    "batch %s: applied %d events, %d dead letters, %d users",
                    outcome.batch_id,
                    outcome.events,
                    outcome.dead_letters,
                    outcome.n_users,
                )
            else:
                logger.info("batch %s: already applied, skipped", outcome.batch_id)
        applied = [(outcome, batch.events) for batch, outcome in zip(parsed, outcomes, strict=True)]
        for hook in self.hooks:
            hook(applied)
        return outcomes

    def _count(self, parsed: Sequence[ParsedBatch], outcomes: Sequence[BatchOutcome]) -> None:
        """Events applied and rejected per kind, of the batches applied now."""
        applied: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for batch, outcome in zip(parsed, outcomes, strict=True):
            if outcome.applied:
                applied.update(map(_kind, batch.events))
                rejected.update(self._kind_of(d.payload) for d in batch.dead_letters)
        for kind, n in applied.items():
            metrics.labelled(metrics.EVENTS_APPLIED, kind).inc(n)
        for kind, n in rejected.items():
            metrics.labelled(metrics.EVENTS_REJECTED, kind).inc(n)

    def _kind_of(self, payload: Any) -> str:
        """A rejected event's kind as a label: one of the settings' kinds, or ``other``
        (labels stay few whatever the input)."""
        kind = payload.get("kind", "play") if isinstance(payload, dict) else None
        return kind if isinstance(kind, str) and kind in self.kinds else "other"


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)
