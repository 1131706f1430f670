from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
import redis

from streamrec.errors import InvalidEventError
from streamrec.events import EventValidator
from streamrec.serving.handler import EventHandler
from streamrec.settings import Settings
from tests.malformed import MALFORMED, MALFORMED_PYTHON_ONLY

NOW = 1_750_000_000.0


@pytest.fixture
def validator() -> EventValidator:
    return EventValidator(Settings(), clock=lambda: NOW)


ALL_MALFORMED = MALFORMED + MALFORMED_PYTHON_ONLY


@pytest.mark.parametrize(
    ("label", "raw", "field"), ALL_MALFORMED, ids=[m[0] for m in ALL_MALFORMED]
)
def test_malformed_event_is_rejected_naming_the_field(
    validator: EventValidator, label: str, raw: Any, field: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        validator.parse(raw)
    assert info.value.field == field, label
    message = str(info.value)
    assert message.startswith(field), message
    assert "got" in message  # the observed value is shown


def test_defaults_fill_weight_kind_timestamp_and_event_id(validator: EventValidator) -> None:
    event = validator.parse({"user": "alice", "item": "song-1"})
    assert (event.weight, event.kind, event.timestamp) == (1.0, "play", NOW)
    assert len(event.event_id) == 32
    assert validator.parse({"user": "a", "item": "b"}).event_id != event.event_id


def test_iso_timestamps_are_parsed_as_utc(validator: EventValidator) -> None:
    naive = validator.make("u", "i", timestamp="2024-01-02T03:04:05")
    aware = validator.make("u", "i", timestamp="2024-01-02T04:04:05+01:00")
    assert naive.timestamp == aware.timestamp == 1704164645.0


def test_json_text_and_bytes_are_accepted(validator: EventValidator) -> None:
    text = '{"user": "u1", "item": "i1", "weight": 2, "kind": "click", "timestamp": 100}'
    for raw in (text, text.encode()):
        event = validator.parse(raw)
        assert (event.user, event.item, event.weight, event.kind, event.timestamp) == (
            "u1", "i1", 2.0, "click", 100.0,
        )  # fmt: skip


def test_rating_bounds_come_from_settings() -> None:
    validator = EventValidator(Settings(rating_min=1, rating_max=10), clock=lambda: NOW)
    assert validator.make("u", "i", 9, "rating").weight == 9
    with pytest.raises(InvalidEventError, match="between 1 and 10"):
        validator.make("u", "i", 0.5, "rating")


def test_custom_kinds_are_accepted_only_when_configured() -> None:
    settings = Settings(kind_weights={"play": 1.0, "share": 2.0})
    validator = EventValidator(settings, clock=lambda: NOW)
    assert validator.make("u", "i", kind="share").kind == "share"
    with pytest.raises(InvalidEventError) as info:
        validator.make("u", "i", kind="click")
    assert info.value.field == "kind"


def test_ids_may_hold_any_printable_text(validator: EventValidator) -> None:
    event = validator.make("ü{ser}: 1", "Sigur Rós – Hoppípolla", 3)
    assert event.user == "ü{ser}: 1" and math.isclose(event.weight, 3)
    assert validator.make("u" * 256, "i").user == "u" * 256


def test_contribution_is_bounded_by_max_weight() -> None:
    validator = EventValidator(Settings(max_weight=100.0), clock=lambda: NOW)
    assert validator.make("u", "i", 25, "purchase").weight == 25.0  # 25 × 4 = 100
    assert validator.make("u", "i", 100, "play").weight == 100.0
    with pytest.raises(InvalidEventError) as info:
        validator.make("u", "i", 25.5, "purchase")
    assert info.value.field == "weight" and info.value.value == 25.5
    message = str(info.value)
    assert "'purchase' (4)" in message and "max_weight 100" in message
    assert "STREAMREC_MAX_WEIGHT" in message and "got 25.5" in message
    # ratings are bounded by the scale, not by max_weight
    assert EventValidator(Settings(max_weight=1.0)).make("u", "i", 5, "rating").weight == 5.0


@pytest.mark.parametrize("multiplier", [0.1, 0.3, 0.7, 1.0, 3.0, 4.0, 1 / 3, 1e-300, 1e300])
@pytest.mark.parametrize("max_weight", [1e9, 1.0, 0.1, 123.456, 1e15])
def test_weights_are_accepted_exactly_when_their_contribution_fits(
    multiplier: float, max_weight: float
) -> None:
    settings = Settings(kind_weights={"play": multiplier}, max_weight=max_weight)
    validator = EventValidator(settings, clock=lambda: NOW)
    weight = max_weight / multiplier
    for _ in range(3):  # the floats around the quotient, where rounding decides
        weight = math.nextafter(weight, 0.0)
    for _ in range(7):
        if math.isfinite(weight):
            fits = weight * multiplier <= max_weight
            try:
                accepted = validator.make("u", "i", weight).weight == weight
            except InvalidEventError as exc:
                assert "max_weight" in str(exc)
                accepted = False
            assert accepted == fits, weight
        weight = math.nextafter(weight, math.inf)


def test_default_weight_counts_against_max_weight() -> None:
    validator = EventValidator(Settings(max_weight=2.0), clock=lambda: NOW)
    assert validator.make("u", "i", kind="view").weight == 1.0
    with pytest.raises(InvalidEventError, match="max_weight 2"):
        validator.make("u", "i", kind="purchase")  # the default weight 1 adds 4


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (True, "must be a number, not a boolean"),
        ("3", "must be a number, not a string"),
        ("3.5", "must be a number, not a string"),
        ([3], "must be a number (not a list)"),
        ({"w": 3}, "must be a number (not a dict)"),
        (float("nan"), "must be a finite number"),
        (float("-inf"), "must be a finite number"),
        (10**400, "max_weight"),
        (-(10**400), "must be > 0"),
    ],
    ids=["bool", "numeric str", "float str", "list", "dict", "nan", "-inf", "1e400", "-1e400"],
)
def test_weight_type_policy(validator: EventValidator, weight: Any, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        validator.make("u", "i", weight)
    assert info.value.field == "weight" and reason in str(info.value)


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (True, "not a bool"),
        ([1], "not a list"),
        ({"t": 1}, "not a dict"),
        (float("inf"), "must be a finite number"),
        (10**400, "in the future"),
        (-(10**400), "after 1970"),
        ("not a date", "ISO 8601"),
    ],
    ids=["bool", "list", "dict", "inf", "1e400", "-1e400", "text"],
)
def test_timestamp_type_policy(validator: EventValidator, timestamp: Any, reason: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        validator.make("u", "i", timestamp=timestamp)
    assert info.value.field == "timestamp" and reason in str(info.value)


def test_integral_floats_and_number_subclasses_are_stored_as_plain_floats(
    validator: EventValidator,
) -> None:
    np = pytest.importorskip("numpy")
    event = validator.make("u", "i", 3.0, "play", 1_700_000_000)
    assert (event.weight, event.timestamp) == (3.0, 1_700_000_000.0)
    assert type(event.weight) is float and type(event.timestamp) is float
    event = validator.make(np.str_("u"), np.str_("i"), np.float64(2), np.str_("click"))
    assert (event.user, event.item, event.weight, event.kind) == ("u", "i", 2.0, "click")
    assert {type(event.user), type(event.item), type(event.weight), type(event.kind)} == {
        str,
        float,
    }


def test_unshowable_values_still_give_the_error(validator: EventValidator) -> None:
    huge = 10**5000  # repr() refuses ints of more than 4300 digits
    with pytest.raises(InvalidEventError) as info:
        validator.make("u", "i", huge)
    assert info.value.value is huge
    assert "got <an int that cannot be shown>" in str(info.value)


def test_any_mapping_is_accepted_and_an_unreadable_one_is_a_payload_error(
    validator: EventValidator,
) -> None:
    assert validator.parse(MappingProxyType({"user": "u", "item": "i"})).user == "u"

    class Broken(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("broken")

        def __len__(self) -> int:
            return 2

    with pytest.raises(InvalidEventError) as info:
        validator.parse(Broken())
    assert info.value.field == "payload"


def test_a_validator_bug_dead_letters_the_event_and_keeps_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = EventHandler(redis.Redis(), Settings())  # parse() never talks to Redis
    real_parse = handler.validator.parse

    def buggy(raw: Any) -> Any:
        if raw.get("item") == "bug":
            raise ZeroDivisionError("division by zero")
        return real_parse(raw)

    monkeypatch.setattr(handler.validator, "parse", buggy)
    batch = handler.parse(
        "b1",
        [{"user": "u", "item": "a"}, {"user": "u", "item": "bug"}, {"user": "u", "item": ""}],
    )
    assert [e.item for e in batch.events] == ["a"]
    bug, invalid = batch.dead_letters
    assert bug.field == "payload" and bug.payload == {"user": "u", "item": "bug"}
    assert "ZeroDivisionError: division by zero" in bug.reason
    assert invalid.field == "item"
