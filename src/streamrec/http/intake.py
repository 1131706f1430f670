"""``POST /events`` without any web framework: a JSON body of one event or a list, each
validated by the event schema (:mod:`streamrec.events`) and sent through the producer.

Every valid event of the body is accepted and delivered to Redis before the reply, even
when others of the same body are rejected; each rejected one is reported with its index,
field, value and reason. Only a body that is not JSON at all, or too large, is refused
whole.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import redis

from streamrec.errors import InvalidEventError
from streamrec.http.problems import RequestError, shown
from streamrec.producer import Producer
from streamrec.settings import MAX_BATCH_SIZE, Settings

#: Most events one request may carry (a producer batch at most).
MAX_EVENTS = MAX_BATCH_SIZE
#: Largest body read, bytes (well above MAX_EVENTS events of usual size).
MAX_BODY_BYTES = 8 * 1024 * 1024


class EventIntake:
    """Validates event bodies and delivers the valid events (one shared producer;
    thread-safe).

    Args:
        settings: the validation rules and the producer's delivery settings.
        connection: a redis-py client of the queue Redis.
    """

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.connection = connection
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    @property
    def producer(self) -> Producer:
        """The producer (made on first use; ``linger=0``: each request flushes its own)."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.settings, connection=self.connection, linger=0)
            return self._producer

    def submit(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Validate and deliver the events of a request body.

        Returns:
            ``(status, reply)``: 202 when at least one event was accepted (or the list was
            empty), 422 when every event was rejected; the reply holds ``accepted``,
            ``rejected``, ``event_ids`` (of the accepted events, in order) and ``errors``
            (``index``, ``field``, ``value``, ``reason``, ``error`` per rejected event).

        Raises:
            RequestError: the body is not UTF-8 JSON (400) or is too large (413).
            DeliveryError: Redis did not take the accepted events within
                ``settings.delivery_timeout`` (they stay buffered and are retried).
        """
        raws = _events_of(body)
        producer = self.producer
        accepted: list[str] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(raws):
            try:
                if isinstance(raw, str):  # the validator would read a string as JSON text
                    raise InvalidEventError(
                        "payload", raw, "must be a JSON object with user and item (got a string)"
                    )
                accepted.append(producer.send_raw(raw).event_id)
            except InvalidEventError as exc:
                errors.append(
                    {
                        "index": index,
                        "field": exc.field,
                        "value": shown(exc.value),
                        "reason": exc.reason,
                        "error": str(exc),
                    }
                )
        if accepted:
            producer.flush()
        reply = {
            "accepted": len(accepted),
            "rejected": len(errors),
            "event_ids": accepted,
            "errors": errors,
        }
        return (422 if errors and not accepted else 202), reply

    def close(self) -> None:
        """Deliver what is still buffered and stop the producer's thread."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()


def _events_of(body: bytes) -> list[Any]:
    """The raw events of a body: a JSON list, or one JSON value (checked per event)."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(
            413, "body", f"{len(body)} bytes", f"must be at most {MAX_BODY_BYTES} bytes"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, "body", body[:40], f"must be UTF-8 JSON (bad byte at {exc.start})"
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, "body", text, f"is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    except RecursionError:
        raise RequestError(400, "body", text, "is JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise RequestError(400, "body", text, f"is not readable JSON ({exc})") from None
    events = value if isinstance(value, list) else [value]
    if len(events) > MAX_EVENTS:
        raise RequestError(
            413, "body", f"{len(events)} events", f"must hold at most {MAX_EVENTS} events"
        )
    return events
