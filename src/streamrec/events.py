"""The event schema and its validation, shared by the producer, the importers and the worker.

An event is one interaction: ``user`` and ``item`` (strings of 1–256 printable characters),
``weight`` (a finite number whose meaning is set by ``kind``: a play count, a rating, ...),
``kind`` (``play`` by default; additive kinds add up, ``rating`` replaces older ratings),
``timestamp`` (epoch seconds or ISO 8601; now by default) and ``event_id`` (assigned if
absent). Every check raises :class:`~streamrec.errors.InvalidEventError` naming the field,
the value and the remedy, and nothing else, whatever the input.

Type policy (JSON types in brackets):

* ``user``, ``item``, ``event_id``: strings [string]. A number is not an id: send ``"42"``.
  A ``str`` subclass (``numpy.str_``) is stored as a plain ``str``.
* ``weight``: an int or float [number], stored as a float. ``bool`` is not a number, and
  neither is a numeric string (``"3"``: send ``3``). NaN and infinity are rejected; an
  integral float (``3.0``) is fine. Additive kinds need ``weight > 0`` and a contribution
  ``weight × kind multiplier ≤ max_weight`` (``STREAMREC_MAX_WEIGHT``); ``rating`` needs a
  value on the rating scale. An integer too large for a float is out of range, not an
  overflow.
* ``kind``: one of the configured kinds [string].
* ``timestamp``: epoch seconds as an int or float (not ``bool``) [number], or an ISO 8601
  string (UTC when it has no offset) [string]; finite, ≥ 0 and at most
  ``max_future_skew`` ahead of the clock.
* A list or dict [array, object] in any field is rejected, naming that field.
* The payload: a dict (or other mapping), or a JSON object as text or UTF-8 bytes. Keys other
  than the six field names (non-string keys included), text with lone surrogates, bytes
  that are not UTF-8, JSON too deeply nested or with numbers too long to read, and anything
  that is not an object are rejected as field ``payload``.

:meth:`EventValidator.make` runs for every event a worker applies, so its common case is a
few exact type tests and comparisons; the work of explaining a rejection is in the helpers.
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
#: The smallest float > 0: ``lo <= weight`` with this ``lo`` is ``weight > 0``.
_SMALLEST_WEIGHT = math.ulp(0.0)


class Event(NamedTuple):
    """A validated interaction (a named tuple: immutable and cheap to build in bulk).

    Attributes:
        user: external user id.
        item: external item id.
        weight: the event's weight as sent (a rating for ``rating``, a count otherwise), a
            finite float.
        kind: event kind.
        timestamp: epoch seconds (UTC), a finite float.
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
        settings: accepted kinds, their multipliers, ``max_weight`` and the rating scale.
        clock: seconds since the epoch (injectable for tests).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.kinds = settings.kinds
        self.kind_weights = dict(settings.kind_weights)
        self.max_weight = settings.max_weight
        self.rating_min = settings.rating_min
        self.rating_max = settings.rating_max
        self.max_future_skew = settings.max_future_skew
        self.clock = clock
        # kind -> (lowest, highest) accepted weight. For an additive kind the highest is the
        # largest float whose product with the multiplier stays ≤ max_weight, so the fast
        # path needs no multiplication and still bounds the stored contribution exactly.
        self._bounds: dict[str, tuple[float, float]] = {
            kind: (_SMALLEST_WEIGHT, _largest_weight(multiplier, settings.max_weight))
            for kind, multiplier in self.kind_weights.items()
        }
        self._bounds[RATING_KIND] = (settings.rating_min, settings.rating_max)

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
        # few exact type tests; the helpers produce the error messages.
        if not (type(user) is str and 0 < len(user) <= MAX_ID_LENGTH and user.isprintable()):
            user = _check_id("user", user, MAX_ID_LENGTH)
        if not (type(item) is str and 0 < len(item) <= MAX_ID_LENGTH and item.isprintable()):
            item = _check_id("item", item, MAX_ID_LENGTH)
        # The type test comes first: a list or dict must not reach the (hashing) lookup.
        bounds = self._bounds.get(kind) if type(kind) is str else None
        if bounds is None:
            kind = self._check_kind(kind)
            bounds = self._bounds[kind]
        # int-float comparisons are exact and never overflow, so a huge int fails the bounds
        # here and float() only ever sees a number in range; NaN fails every comparison.
        if (type(weight) is float or type(weight) is int) and bounds[0] <= weight <= bounds[1]:
            weight = float(weight)
        else:
            weight = self._check_weight(weight, kind)
        if timestamp is None:
            ts = self.clock()
        elif (type(timestamp) is float or type(timestamp) is int) and (
            0 <= timestamp <= self.clock() + self.max_future_skew
        ):
            ts = float(timestamp)
        else:
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
            raise _invalid(
                "payload",
                raw,
                f"has unknown field {_show(unknown)}; fields are {', '.join(FIELDS)}",
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
        kinds = ", ".join(sorted(self.kinds))
        if not isinstance(kind, str):
            raise _invalid("kind", kind, f"must be a string, one of {kinds} (not {_a(kind)})")
        name = str.__str__(kind)  # a str subclass is stored as a plain str
        if name not in self.kinds:
            raise _invalid("kind", kind, f"must be one of {kinds}")
        return name

    def _check_weight(self, weight: Any, kind: str) -> float:
        if weight is None:
            if kind == RATING_KIND:
                raise InvalidEventError(
                    "weight", weight, "is required for kind 'rating' (the rating)"
                )
            value = 1.0
        else:
            value = _number("weight", weight)
        low, high = self._bounds[kind]
        if low <= value <= high:
            return value
        if kind == RATING_KIND:
            raise _invalid(
                "weight",
                weight,
                f"must be a rating between {self.rating_min:g} and {self.rating_max:g}",
            )
        if value <= 0:
            raise _invalid("weight", weight, f"must be > 0 for kind {kind!r}")
        raise _invalid(
            "weight",
            weight,
            f"times the multiplier of kind {kind!r} ({self.kind_weights[kind]:g}) must be at "
            f"most max_weight {self.max_weight:g}; raise STREAMREC_MAX_WEIGHT to accept it",
        )

    def _check_timestamp(self, timestamp: Any) -> float:
        if isinstance(timestamp, str):
            value = _iso_seconds(str.__str__(timestamp))
        elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            value = _number("timestamp", timestamp)
        else:
            raise _invalid(
                "timestamp",
                timestamp,
                f"must be epoch seconds or an ISO 8601 string (not {_a(timestamp)})",
            )
        if value < 0:
            raise _invalid("timestamp", timestamp, "must be a time after 1970 (epoch seconds ≥ 0)")
        if value > self.clock() + self.max_future_skew:
            raise _invalid(
                "timestamp", timestamp, f"lies more than {self.max_future_skew:g} s in the future"
            )
        return value


def _decode(raw: Any) -> dict[Any, Any]:
    """An event given as JSON text or bytes, or any mapping, as a dict."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("payload", raw, "must be UTF-8 encoded JSON") from None
    elif isinstance(raw, str) and not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _invalid(
                "payload", raw, f"must be valid Unicode text (lone surrogate at char {exc.start})"
            ) from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _invalid(
                "payload", raw, f"is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
        except RecursionError:
            raise _invalid("payload", raw, "is JSON nested too deeply to be an event") from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise _invalid("payload", raw, f"is not readable JSON ({exc})") from None
    if type(raw) is dict:
        return raw
    if isinstance(raw, Mapping):
        try:
            return dict(raw)
        except Exception as exc:  # a user-defined mapping whose iteration fails
            raise _invalid(
                "payload", raw, f"is a mapping that cannot be read ({type(exc).__name__})"
            ) from None
    raise _invalid("payload", raw, f"must be a JSON object with user and item (got {_a(raw)})")


def _check_id(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise _invalid(field, value, f"must be a string (not {_a(value)})")
    text = str.__str__(value)  # a str subclass (numpy.str_, ...) is stored as a plain str
    if not 1 <= len(text) <= limit:
        raise _invalid(field, value, f"must have 1 to {limit} characters (has {len(text)})")
    if not text.isprintable():
        raise _invalid(
            field, value, "must be printable text (no control characters or lone surrogates)"
        )
    return text


def _number(field: str, value: Any) -> float:
    """``value`` as a float, or an error for a value that is not a finite number.

    An int too large for a float becomes ±inf, so that the caller's range check rejects it
    with the message about the range.
    """
    # The unbound float/int methods keep a subclass's overrides out of the conversion.
    if isinstance(value, bool):
        raise _invalid(field, value, "must be a number, not a boolean")
    if isinstance(value, float):
        number = float.__float__(value)
        if not math.isfinite(number):
            raise _invalid(field, value, "must be a finite number (not NaN or infinity)")
        return number
    if isinstance(value, int):
        try:
            return int.__float__(value)
        except OverflowError:
            return -math.inf if int.__lt__(value, 0) else math.inf
    if isinstance(value, str):
        raise _invalid(field, value, "must be a number, not a string (send 3, not '3')")
    raise _invalid(field, value, f"must be a number (not {_a(value)})")


def _iso_seconds(text: str) -> float:
    """Epoch seconds of an ISO 8601 date-time (UTC when it has no offset)."""
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        raise _invalid(
            "timestamp", text, "must be epoch seconds or an ISO 8601 date-time"
        ) from None


def _largest_weight(multiplier: float, max_weight: float) -> float:
    """The largest float ``w`` with ``w * multiplier <= max_weight`` (rounded as stored)."""
    weight = max_weight / multiplier
    while weight * multiplier > max_weight:
        weight = math.nextafter(weight, 0.0)
    while math.nextafter(weight, math.inf) * multiplier <= max_weight:
        weight = math.nextafter(weight, math.inf)
    return weight


def _invalid(field: str, value: Any, reason: str) -> InvalidEventError:
    """The error for ``value``, even when ``value`` cannot be shown.

    ``repr`` fails on an int of more than 4300 digits, a structure nested deeper than the
    recursion limit, or an object with a broken ``__repr__``; the message then describes
    the value instead, and ``.value`` still holds it.
    """
    try:
        return InvalidEventError(field, value, reason)
    except Exception:
        error = InvalidEventError(field, _Unshowable(value), reason)
        error.value = value
        return error


def _show(value: Any) -> str:
    """``repr(value)`` for a message, or a description when it cannot be computed."""
    try:
        return repr(value)
    except Exception:
        return repr(_Unshowable(value))


def _a(value: Any) -> str:
    """``value``'s type for a message: ``a list``, ``a dict``, ``an int``."""
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


class _Unshowable:
    """Stands in for a value whose ``repr`` fails, in an error message."""

    def __init__(self, value: Any) -> None:
        self.description = f"<{_a(value)} that cannot be shown>"

    def __repr__(self) -> str:
        return self.description
