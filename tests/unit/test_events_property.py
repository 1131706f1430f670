"""Property tests of the event validator: whatever comes in, either a sound event comes out or
an InvalidEventError naming a field; never any other exception."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamrec.errors import InvalidEventError
from streamrec.events import FIELDS, Event, EventValidator
from streamrec.settings import RATING_KIND, Settings

NOW = 1_750_000_000.0
SETTINGS = [
    Settings(),
    Settings(kind_weights={"play": 0.1, "like": 1 / 3, "buy": 1e-300}, max_weight=123.456),
    Settings(kind_weights={"play": 1e300}, max_weight=1.0, rating_min=-1, rating_max=1),
]
#: (settings, validator) pairs: the properties are stated in terms of the settings.
VALIDATORS = [(s, EventValidator(s, clock=lambda: NOW)) for s in SETTINGS]
ERROR_FIELDS = {*FIELDS, "payload"}

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every code point, lone surrogates included (text() leaves them out by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
# Ints that overflow a float; not beyond 4300 digits, which hypothesis cannot repr (those
# are in tests/malformed.py).
huge_ints = st.sampled_from(
    [2**1023, 2**1024, 10**308, 10**309, 10**400, -(10**400), 10**4000, 1 << 5000]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()  # NaN and ±inf included
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

# Values that are often right, so that accepted events are explored as well as rejections.
printable = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=12)
edge_ids = st.sampled_from(["u i", "x" * 256, "x" * 257, "", "\t", "\u2028"])
ids = st.one_of(printable, printable, printable, edge_ids)  # mostly valid
numbers = (
    st.floats()
    | st.integers(min_value=-10, max_value=10**10)
    | huge_ints
    | st.sampled_from([1e9, 2.5e8, 1e9 / 3, 1e308, 5e-324, 370.368, 0.5, 5.0, 1, 2**53 + 1])
)
kinds = st.sampled_from(["play", "click", "view", "purchase", "rating", "like", "buy"])
timestamps = (
    st.floats(min_value=-1.0, max_value=NOW + 100_000.0)
    | st.integers(min_value=-1, max_value=int(NOW) + 100_000)
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(["2024-01-02T03:04:05+01:00", "9999-12-31T23:59:59-23:59", "0001-01-01"])
)
plausible = {
    "user": ids,
    "item": ids,
    "weight": numbers,
    "kind": kinds,
    "timestamp": timestamps,
    "event_id": ids,
}
# Events of plausible values (mostly accepted) and events whose fields may hold anything.
near_events = st.fixed_dictionaries(
    {"user": ids, "item": ids},
    optional={field: plausible[field] for field in ("weight", "kind", "timestamp", "event_id")},
)
wild_events = st.fixed_dictionaries(
    {}, optional={field: plausible[field] | json_values for field in FIELDS}
)
events = near_events | wild_events
anything = st.one_of(json_values, wild_events, near_events, near_events)


Case = tuple[Settings, EventValidator]


def check(case: Case, raw: Any) -> None:
    """``parse(raw)`` gives a sound event or an InvalidEventError naming a field."""
    config, validator = case
    try:
        parsed = validator.parse(raw)
    except InvalidEventError as exc:
        assert exc.field in ERROR_FIELDS, exc.field
        message = str(exc)
        assert message.startswith(exc.field) and "(got " in message, message
        event(f"rejected: {exc.field}")  # shown by --hypothesis-show-statistics
        return
    event("accepted")
    assert type(parsed) is Event
    for text in (parsed.user, parsed.item, parsed.kind, parsed.event_id):
        assert type(text) is str and text.isprintable()
    assert parsed.kind in config.kinds
    assert type(parsed.weight) is float and math.isfinite(parsed.weight)
    assert type(parsed.timestamp) is float and math.isfinite(parsed.timestamp)
    assert 0 <= parsed.timestamp <= NOW + config.max_future_skew
    if parsed.kind == RATING_KIND:
        assert config.rating_min <= parsed.weight <= config.rating_max
    else:
        contribution = parsed.weight * config.kind_weights[parsed.kind]
        assert parsed.weight > 0 and math.isfinite(contribution)
        assert contribution <= config.max_weight
    json.dumps(parsed.to_dict(), allow_nan=False)  # what goes on the wire is plain JSON


@PROPERTY
@given(case=st.sampled_from(VALIDATORS), raw=anything)
def test_any_value_gives_an_event_or_an_invalid_event_error(case: Case, raw: Any) -> None:
    check(case, raw)


@PROPERTY
@given(case=st.sampled_from(VALIDATORS), raw=anything, as_bytes=st.booleans())
def test_any_json_text_gives_an_event_or_an_invalid_event_error(
    case: Case, raw: Any, as_bytes: bool
) -> None:
    try:
        text = json.dumps(raw)  # NaN and Infinity are written as such
    except ValueError:  # an int of more than 4300 digits has no JSON text
        return
    check(case, text.encode() if as_bytes else text)


@PROPERTY
@given(case=st.sampled_from(VALIDATORS), raw=st.binary(max_size=64) | any_text)
def test_arbitrary_bytes_and_text_give_an_invalid_event_error(case: Case, raw: bytes | str) -> None:
    check(case, raw)


@PROPERTY
@given(case=st.sampled_from(VALIDATORS), raw=near_events)
def test_an_event_is_the_same_from_a_dict_and_from_its_json(
    case: Case, raw: dict[str, Any]
) -> None:
    raw.setdefault("event_id", "e")  # else each parse assigns a fresh one
    try:
        text = json.dumps(raw, allow_nan=False)
    except ValueError:  # NaN or infinity: no strict JSON text
        return
    outcomes: list[Event | str] = []
    for given_as in (raw, text, text.encode()):
        check(case, given_as)
        try:
            outcomes.append(case[1].parse(given_as))
        except InvalidEventError as exc:
            outcomes.append(exc.field)
    assert outcomes[0] == outcomes[1] == outcomes[2]
