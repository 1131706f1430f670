from __future__ import annotations

import math
from typing import Any

import pytest

from streamrec.errors import InvalidEventError
from streamrec.producer.events import EventValidator
from streamrec.settings import Settings
from tests.malformed import MALFORMED

NOW = 1_750_000_000.0


@pytest.fixture
def validator() -> EventValidator:
    return EventValidator(Settings(), clock=lambda: NOW)


@pytest.mark.parametrize(("label", "raw", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_event_is_rejected_naming_the_field(
    validator: EventValidator, label: str, raw: Any, field: str
) -> None:
    with pytest.raises(InvalidEventError) as info:
        validator.parse(raw)
    assert info.value.field == field, label
    message = str(info.value)
    assert message.startswith(field), message
    assert "got" in message  # the observed value is shown


def test_there_are_at_least_twenty_kinds_of_malformed_events() -> None:
    assert len(MALFORMED) >= 20


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
