"""The producer: validates events at once and sends them as micro-batches (one RQ job each)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import redis
from rq import Retry

from streamrec import keys
from streamrec.producer.events import Event, EventValidator
from streamrec.settings import Settings
from streamrec.state.queues import queue

logger = logging.getLogger(__name__)

JOB_FUNCTION = "streamrec.worker.jobs.apply_events"


class Producer:
    """Buffers validated events and enqueues one ``apply_events`` job per micro-batch.

    A batch is sent when it holds ``batch_size`` events, when its oldest event has waited
    ``linger`` seconds (a background thread watches), on :meth:`flush` and on close.
    Invalid events raise :class:`~streamrec.errors.InvalidEventError` from :meth:`send`
    and never enter a batch. Thread-safe.

    Args:
        connection: a redis-py client.
        settings: batch size, linger, retries and validation rules.
        batch_size: overrides ``settings.batch_size``.
        linger: overrides ``settings.linger`` (seconds; 0 sends only full batches and on flush).
        queue_name: RQ queue to send to.

    Example::

        with Producer(connect(settings), settings) as producer:
            producer.send("alice", "song-42", weight=3)
    """

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        *,
        batch_size: int | None = None,
        linger: float | None = None,
        queue_name: str = keys.EVENTS_QUEUE,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size or settings.batch_size
        self.linger = settings.linger if linger is None else linger
        self.validator = EventValidator(settings)
        self.queue = queue(connection, queue_name)
        self.batches_sent = 0
        self.events_sent = 0
        self._buffer: list[dict[str, Any]] = []
        self._batch_id = ""
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(
        self,
        user: Any,
        item: Any,
        weight: Any = None,
        kind: Any = "play",
        timestamp: Any = None,
        event_id: Any = None,
    ) -> Event:
        """Validate one event and add it to the current batch.

        Raises:
            InvalidEventError: the event is invalid (nothing is buffered).
        """
        event = self.validator.make(user, item, weight, kind, timestamp, event_id)
        self._add(event)
        return event

    def send_raw(self, raw: Mapping[str, Any] | str | bytes) -> Event:
        """Validate one event given as a dict or JSON object and add it to the current batch."""
        event = self.validator.parse(raw)
        self._add(event)
        return event

    def flush(self) -> str | None:
        """Send the current batch now. Returns its batch id (None if it was empty)."""
        with self._lock:
            return self._send_locked()

    def close(self) -> None:
        """Send what is buffered and stop the linger thread."""
        with self._lock:
            self._send_locked()
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()

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
            if not self._buffer:
                self._oldest = time.monotonic()
                self._batch_id = uuid.uuid4().hex
            self._buffer.append(event.to_dict())
            if len(self._buffer) >= self.batch_size:
                self._send_locked()
            elif self.linger > 0:
                self._start_linger_thread()
                self._wake.notify()

    def _send_locked(self) -> str | None:
        if not self._buffer:
            return None
        # The id is fixed when the batch opens: if enqueue fails after Redis got the job, the
        # retry sends the same id again and the worker's ledger drops the duplicate.
        events, batch_id = self._buffer, self._batch_id
        self.queue.enqueue(
            JOB_FUNCTION,
            batch_id,
            events,
            job_id=batch_id,
            description=f"apply_events {batch_id} ({len(events)} events)",
            result_ttl=0,
            job_timeout=self.settings.job_timeout,
            retry=Retry(max=self.settings.job_retries),
        )
        self._buffer = []
        self.batches_sent += 1
        self.events_sent += len(events)
        logger.debug("producer: sent batch %s (%d events)", batch_id, len(events))
        return batch_id

    def _start_linger_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._linger_loop, name="producer-linger", daemon=True
            )
            self._thread.start()

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._buffer:
                    self._wake.wait()
                    continue
                remaining = self._oldest + self.linger - time.monotonic()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
                try:
                    self._send_locked()
                except redis.RedisError:
                    logger.exception("producer: sending a batch failed; will retry")
                    self._wake.wait(self.linger)
