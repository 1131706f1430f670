"""The producer: validates events at once and delivers them as micro-batches (one RQ job each).

Delivery contract:

- :meth:`Producer.send` either buffers the event and returns it, or raises without
  buffering it: :class:`~streamrec.errors.InvalidEventError` for a malformed event,
  :class:`~streamrec.errors.DeliveryError` when ``max_buffered`` events are already waiting
  for a Redis that does not take them. It never talks to Redis itself. A user's events go
  to the events queue of the user's shard (:func:`~streamrec.keys.shard_of`).
- A background thread delivers batches in order. A batch is sealed (its id and events
  fixed) before its first delivery attempt and only ever retried whole under that id, so
  an enqueue whose reply was lost (Redis may have executed it) is retried safely: the
  worker's ledger applies a batch id once. Events sent meanwhile open a new batch.
- Failed deliveries are retried with bounded exponential backoff, across lost replies,
  timeouts and server restarts. When the server turns out to have restarted (its run id
  changed), the batches delivered in the last :data:`RESEND_WINDOW` seconds are sent
  again, in case the server lost them with its last unsynced writes.
- :meth:`Producer.flush` waits for every accepted event to be delivered and raises
  :class:`~streamrec.errors.DeliveryError` (naming how many were not) after
  ``settings.delivery_timeout``; the events stay buffered and later flushes retry them.
  :meth:`Producer.close` flushes, then drops what it could not deliver and says so.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
from rq import Queue, Retry
from rq.queue import EnqueueData

from streamrec import keys
from streamrec.errors import DeliveryError
from streamrec.events import Event, EventValidator
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.queues import APPLY_EVENTS, PUSHED_AT, queue

logger = logging.getLogger(__name__)

JOB_FUNCTION = APPLY_EVENTS
#: Sealed batches enqueued together in one transaction when a backlog built up.
MAX_BATCHES_PER_CALL = 20
#: Backoff between delivery attempts: first and largest wait, seconds.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0
#: Seconds delivered batches are kept to be sent again if the Redis server restarted: a
#: server that crashed may have lost the last second of writes it acknowledged (AOF with
#: ``appendfsync everysec``); the ledger makes a batch sent twice count once.
RESEND_WINDOW = 5.0


#: A sealed batch: its id, its events and the queue it goes to.
Batch = tuple[str, list[dict[str, Any]], str]


@dataclass
class _Open:
    """The open batch of one queue; ``oldest``: when it got its first event (monotonic)."""

    batch_id: str
    events: list[dict[str, Any]]
    oldest: float


class Producer:
    """Buffers validated events and enqueues one ``apply_events`` job per micro-batch.

    A batch is sealed when it holds ``batch_size`` events, when its oldest event has waited
    ``linger`` seconds, on :meth:`flush` and on :meth:`close`; a background thread delivers
    sealed batches (see the module doc for the delivery contract). The connection is made
    by that thread, on the first delivery. Thread-safe.

    Args:
        settings: Redis location, batch size, linger, retries, timeouts and validation rules
            (default: ``Settings()``; :meth:`from_env` reads ``STREAMREC_*``).
        connection: a redis-py client to use instead of connecting (with socket timeouts:
            see :func:`~streamrec.state.connection.connect`).
        batch_size: overrides ``settings.batch_size``.
        linger: overrides ``settings.linger`` (seconds; 0 seals only full batches and on
            flush).
        queue_name: RQ queue to send every event to (default: the events queue of each
            event's user's shard).

    Raises:
        ConfigError: ``batch_size`` out of range.

    Example::

        with Producer(Settings.from_env(os.environ)) as producer:
            producer.send("alice", "song-42", weight=3)
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connection: redis.Redis | None = None,
        batch_size: int | None = None,
        linger: float | None = None,
        queue_name: str | None = None,
    ) -> None:
        settings = Settings() if settings is None else settings
        self.settings = settings
        self.batch_size = settings.with_(batch_size=batch_size or settings.batch_size).batch_size
        self.linger = settings.linger if linger is None else linger
        self.validator = EventValidator(settings)
        self.queue_name = keys.EVENTS_QUEUE if queue_name is None else queue_name
        shards = keys.events_queues(settings.event_shards)
        self._names = shards if queue_name is None else [queue_name]  # the queue of each shard
        self._connection = connection
        self._queues: dict[str, Queue] = {}
        self.batches_sent = 0
        self.events_sent = 0
        self.attempts_failed = 0
        self.batches_resent = 0
        self._recent: deque[tuple[float, Batch]] = deque()
        self._run_id: str | None = None
        self._open: dict[str, _Open] = {}  # queue name -> its open batch
        self._sealed: deque[Batch] = deque()
        # when each batch not yet out of the resend window got its first event (epoch s):
        # carried in the job's meta as ``pushed_at``, the start of the event→cache latency
        self._pushed_at: dict[str, float] = {}
        self._buffered = 0  # open + sealed events
        self._last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def queue(self) -> Queue:
        """The (first shard's) RQ queue batches go to; connects on first use."""
        return self._queue_of(self._names[0])

    def _queue_of(self, name: str) -> Queue:
        if name not in self._queues:
            if self._connection is None:
                self._connection = connect(self.settings)
            self._queues[name] = queue(self._connection, name)
        return self._queues[name]

    @property
    def buffered(self) -> int:
        """Events accepted by :meth:`send` and not yet delivered to Redis."""
        return self._buffered

    def send(
        self,
        user: Any,
        item: Any,
        weight: Any = None,
        kind: Any = "play",
        timestamp: Any = None,
        event_id: Any = None,
    ) -> Event:
        """Validate one event and buffer it for delivery.

        Raises:
            InvalidEventError: the event is invalid (nothing is buffered).
            DeliveryError: ``max_buffered`` events already wait for delivery and none was
                delivered within ``delivery_timeout`` (nothing is buffered).
        """
        event = self.validator.make(user, item, weight, kind, timestamp, event_id)
        self._add(event)
        return event

    def send_raw(self, raw: Mapping[str, Any] | str | bytes) -> Event:
        """Like :meth:`send`, for an event given as a dict or a JSON object."""
        event = self.validator.parse(raw)
        self._add(event)
        return event

    def flush(self, timeout: float | None = None) -> str | None:
        """Seal the current batch and wait until every accepted event is delivered.

        Args:
            timeout: seconds to wait (default ``settings.delivery_timeout``).

        Returns:
            The id of the batch sealed now (None if none was open).

        Raises:
            DeliveryError: events were still undelivered at the deadline; they stay
                buffered and are retried.
        """
        with self._lock:
            batch_id = self._seal_locked()
            self._wait_delivered_locked(timeout)
            return batch_id

    def close(self) -> None:
        """Deliver what is buffered and stop the delivery thread.

        Raises:
            DeliveryError: events could not be delivered within ``delivery_timeout``;
                they are dropped (the error says how many).
        """
        error: DeliveryError | None = None
        with self._lock:
            if self._closed:
                return
            self._seal_locked()
            try:
                self._wait_delivered_locked(None)
            except DeliveryError as exc:
                error = exc
            self._closed = True  # the delivery thread drops what is still sealed
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
        if error is not None:
            raise error

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("producer is closed")
            if self._buffered >= self.settings.max_buffered:
                self._start_thread()
                deadline = time.monotonic() + self.settings.delivery_timeout
                while self._buffered >= self.settings.max_buffered:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        raise DeliveryError(
                            self._buffered,
                            f"{self._buffered} events already wait for a Redis that does not "
                            f"take them ({self._last_error!r}); event {event.event_id} was "
                            "not accepted",
                        )
                    self._changed.wait(left)
            name = self._names[keys.shard_of(event.user, len(self._names))]
            batch = self._open.get(name)
            if batch is None:
                batch = self._open[name] = _Open(uuid.uuid4().hex, [], time.monotonic())
                self._pushed_at[batch.batch_id] = time.time()
            batch.events.append(event.to_dict())
            self._buffered += 1
            if len(batch.events) >= self.batch_size:
                self._seal_locked(name)
            elif self.linger > 0 and len(batch.events) == 1:
                self._start_thread()
                self._changed.notify_all()

    def _seal_locked(self, name: str | None = None) -> str | None:
        """Seal queue ``name``'s open batch (default: all); returns the last id sealed."""
        names = list(self._open) if name is None else [name]
        batch_id = None
        for queue_name in names:
            batch = self._open.pop(queue_name)
            self._sealed.append((batch.batch_id, batch.events, queue_name))
            batch_id = batch.batch_id
        if batch_id is not None:
            self._start_thread()
            self._changed.notify_all()
        return batch_id

    def _wait_delivered_locked(self, timeout: float | None) -> None:
        wait = self.settings.delivery_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while self._sealed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeliveryError(
                    self._buffered,
                    f"Redis did not take them within {wait:g} s (last error: {self._last_error!r})",
                )
            self._changed.wait(left)

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._deliver_loop, name="producer-delivery", daemon=True
            )
            self._thread.start()

    def _deliver_loop(self) -> None:
        backoff = BACKOFF_FIRST
        suspect = False  # the last attempt failed: the server may have restarted
        with self._lock:
            while True:
                if not self._sealed:
                    if self._closed:
                        return
                    if self._open and self.linger > 0:
                        name, batch = min(self._open.items(), key=lambda nb: nb[1].oldest)
                        left = batch.oldest + self.linger - time.monotonic()
                        if left <= 0:
                            self._seal_locked(name)
                            continue
                        self._changed.wait(left)
                    else:
                        self._changed.wait()
                    continue
                if self._closed:  # close() gave up on these and raised DeliveryError
                    self._sealed.clear()
                    self._buffered = 0
                    self._changed.notify_all()
                    return
                n = min(len(self._sealed), MAX_BATCHES_PER_CALL)
                batches = [self._sealed[i] for i in range(n)]
                self._lock.release()
                run_id, restarted = self._run_id, False
                try:
                    if suspect or run_id is None:
                        run_id = str(self.queue.connection.info("server")["run_id"])
                        restarted = self._run_id is not None and run_id != self._run_id
                    if not restarted:
                        self._enqueue(batches)
                    error = None
                except Exception as exc:  # reported by flush() as DeliveryError
                    error = exc
                finally:
                    self._lock.acquire()
                if error is None and restarted:
                    self._resend_recent_locked(run_id)
                    continue
                if error is None:
                    self._run_id, suspect = run_id, False
                    now = time.monotonic()
                    for sent in batches:
                        self._sealed.popleft()
                        self._recent.append((now, sent))
                    while self._recent and self._recent[0][0] < now - RESEND_WINDOW:
                        self._pushed_at.pop(self._recent.popleft()[1][0], None)
                    delivered = sum(len(events) for _, events, _ in batches)
                    self._buffered -= delivered
                    self.batches_sent += len(batches)
                    self.events_sent += delivered
                    self._last_error = None
                    backoff = BACKOFF_FIRST
                    self._changed.notify_all()
                    continue
                self.attempts_failed += 1
                suspect = True
                self._last_error = error
                logger.warning(
                    "producer: delivering %d batches failed (%r); retrying in %.2f s",
                    len(batches),
                    error,
                    backoff,
                )
                self._changed.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _resend_recent_locked(self, run_id: str | None) -> None:
        """The server restarted: queue the recently delivered batches again (first)."""
        now = time.monotonic()
        again = [batch for at, batch in self._recent if at >= now - RESEND_WINDOW]
        self._recent.clear()
        self._run_id = run_id
        for batch in reversed(again):
            self._sealed.appendleft(batch)
            self._buffered += len(batch[1])
        self.batches_resent += len(again)
        logger.warning(
            "producer: the Redis server restarted; sending the last %d batches again", len(again)
        )

    def _enqueue(self, batches: list[Batch]) -> None:
        """Enqueue sealed batches in one transaction, each under its fixed id on its queue."""
        with self.queue.connection.pipeline() as pipe:
            for name in dict.fromkeys(name for _, _, name in batches):
                jobs = [self._job(batch_id, events) for batch_id, events, n in batches if n == name]
                self._queue_of(name).enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
        for batch_id, events, name in batches:
            logger.debug("producer: sent batch %s (%d events) to %s", batch_id, len(events), name)

    def _job(self, batch_id: str, events: list[dict[str, Any]]) -> EnqueueData:
        return Queue.prepare_data(
            JOB_FUNCTION,
            args=(batch_id, events),
            job_id=batch_id,
            meta={PUSHED_AT: self._pushed_at.get(batch_id)},
            description=f"apply_events {batch_id} ({len(events)} events)",
            result_ttl=0,
            timeout=self.settings.job_timeout,
            retry=Retry(max=self.settings.job_retries),
        )
