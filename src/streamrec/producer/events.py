"""The event schema and its validation, shared by the producer, the importers and the worker.

An event is one interaction: ``user`` and ``item`` (strings of 1–256 printable characters),
``weight`` (a finite number whose meaning is set by ``kind``: a play count, a rating, ...),
``kind`` (``play`` by default; additive kinds add up, ``rating`` replaces older ratings),
``timestamp`` (epoch seconds or ISO 8601; now by default) and ``event_id`` (assigned if
absent). Every check raises :class:`~streamrec.errors.InvalidEventError` naming the field,
the value and the remedy.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from streamrec.errors import InvalidEventError
from streamrec.settings import RATING_KIND, Settings

MAX_ID_LENGTH = 256
MAX_EVENT_ID_LENGTH = 128
FIELDS = ("user", "item", "weight", "kind", "timestamp", "event_id")
_FIELD_SET = frozenset(FIELDS)


class Event(NamedTuple):
    """A validated interaction (a named tuple: immutable and cheap to build in bulk).

    Attributes:
        user: external user id.
        item: external item id.
        weight: the event's weight as sent (a rating for ``rating``, a count otherwise).
        kind: event kind.
        timestamp: epoch seconds (UTC).
        event_id: unique id of the event.
    """

    user: str
    item: str
    weight: float
    kind: str
    timestamp: float
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (the wire format of a batch)."""
        return self._asdict()


class EventValidator:
    """Turns raw input into :class:`Event` objects, or raises a clear error.

    Args:
        settings: accepted kinds, their weights and the rating scale.
        clock: seconds since the epoch (injectable for tests).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.kinds = settings.kinds
        self.rating_min = settings.rating_min
        self.rating_max = settings.rating_max
        self.max_future_skew = settings.max_future_skew
        self.clock = clock

    def make(
        self,
        user: Any,
        item: Any,
        weight: Any = None,
        kind: Any = "play",
        timestamp: Any = None,
        event_id: Any = None,
    ) -> Event:
        """Validate the fields of one event.

        Raises:
            InvalidEventError: a field is missing, of the wrong type or out of range.
        """
        # The checks run for every event a worker applies, so the common case is kept to a
        # few type tests; the helpers produce the error messages.
        if not (type(user) is str and 0 < len(user) <= MAX_ID_LENGTH and user.isprintable()):
            user = _check_id("user", user, MAX_ID_LENGTH)
        if not (type(item) is str and 0 < len(item) <= MAX_ID_LENGTH and item.isprintable()):
            item = _check_id("item", item, MAX_ID_LENGTH)
        if kind not in self.kinds or type(kind) is not str:
            self._check_kind(kind)
        weight = self._check_weight(weight, kind)
        ts = self._check_timestamp(timestamp)
        if event_id is None:
            event_id = uuid.uuid4().hex
        elif not (
            type(event_id) is str
            and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH
            and event_id.isprintable()
        ):
            event_id = _check_id("event_id", event_id, MAX_EVENT_ID_LENGTH)
        return Event(user, item, weight, kind, ts, event_id)

    def parse(self, raw: Any) -> Event:
        """Validate one event given as a mapping or as a JSON object (str or bytes).

        Raises:
            InvalidEventError: ``payload`` when the event is not a JSON object or has unknown
                fields; otherwise the field at fault.
        """
        if type(raw) is not dict:
            raw = _decode(raw)
        if not _FIELD_SET.issuperset(raw):
            unknown = next(k for k in raw if k not in _FIELD_SET)
            raise InvalidEventError(
                "payload", raw, f"has unknown field {unknown!r}; fields are {', '.join(FIELDS)}"
            )
        if "user" not in raw:
            raise InvalidEventError("user", None, "is required")
        if "item" not in raw:
            raise InvalidEventError("item", None, "is required")
        return self.make(
            raw["user"],
            raw["item"],
            raw.get("weight"),
            raw.get("kind", "play"),
            raw.get("timestamp"),
            raw.get("event_id"),
        )

    def _check_kind(self, kind: Any) -> str:
        if not isinstance(kind, str) or kind not in self.kinds:
            raise InvalidEventError("kind", kind, f"must be one of {', '.join(sorted(self.kinds))}")
        return kind

    def _check_weight(self, weight: Any, kind: str) -> float:
        if type(weight) is float or type(weight) is int:
            value = float(weight)
            if math.isfinite(value) and (
                (kind != RATING_KIND and value > 0)
                or (kind == RATING_KIND and self.rating_min <= value <= self.rating_max)
            ):
                return value
        if weight is None:
            if kind == RATING_KIND:
                raise InvalidEventError(
                    "weight", weight, "is required for kind 'rating' (the rating)"
                )
            return 1.0
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidEventError("weight", weight, "must be a number")
        value = float(weight)
        if not math.isfinite(value):
            raise InvalidEventError("weight", weight, "must be a finite number")
        if kind == RATING_KIND:
            if not self.rating_min <= value <= self.rating_max:
                raise InvalidEventError(
                    "weight",
                    weight,
                    f"must be a rating between {self.rating_min:g} and {self.rating_max:g}",
                )
        elif value <= 0:
            raise InvalidEventError("weight", weight, f"must be > 0 for kind {kind!r}")
        return value

    def _check_timestamp(self, timestamp: Any) -> float:
        now = self.clock()
        if timestamp is None:
            return now
        if type(timestamp) is float or type(timestamp) is int:
            value = float(timestamp)
            if 0 <= value <= now + self.max_future_skew:  # False for NaN
                return value
        if isinstance(timestamp, bool):
            raise InvalidEventError("timestamp", timestamp, "must be epoch seconds or ISO 8601")
        if isinstance(timestamp, int | float):
            value = float(timestamp)
        elif isinstance(timestamp, str):
            try:
                parsed = datetime.fromisoformat(timestamp)
            except ValueError:
                raise InvalidEventError(
                    "timestamp", timestamp, "must be epoch seconds or an ISO 8601 date-time"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            value = parsed.timestamp()
        else:
            raise InvalidEventError("timestamp", timestamp, "must be epoch seconds or ISO 8601")
        if not math.isfinite(value) or value < 0:
            raise InvalidEventError("timestamp", timestamp, "must be a finite time after 1970")
        if value > now + self.max_future_skew:
            raise InvalidEventError(
                "timestamp", timestamp, f"lies more than {self.max_future_skew:g} s in the future"
            )
        return value


def _decode(raw: Any) -> Mapping[str, Any]:
    """An event given as JSON text or bytes, or any mapping, as a mapping."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEventError("payload", raw, "must be UTF-8 encoded JSON") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEventError(
                "payload", raw, f"is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
    if not isinstance(raw, Mapping):
        raise InvalidEventError(
            "payload", raw, f"must be a JSON object with user and item (got a {type(raw).__name__})"
        )
    return raw


def _check_id(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(field, value, "must be a string")
    if not 1 <= len(value) <= limit:
        raise InvalidEventError(
            field, value, f"must have 1 to {limit} characters (has {len(value)})"
        )
    if not value.isprintable():
        raise InvalidEventError(field, value, "must not contain control characters")
    return value
