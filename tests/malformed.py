"""Malformed events shared by the producer (unit) and worker (integration) tests.

Each case: (label, raw event or payload, the field the error must name).
"""

from __future__ import annotations

from typing import Any


def _deep_list(depth: int) -> list[Any]:
    """A list nested ``depth`` deep (deeper than ``repr`` can go)."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


MALFORMED: list[tuple[str, Any, str]] = [
    ("missing user", {"item": "i1"}, "user"),
    ("missing item", {"user": "u1"}, "item"),
    ("user is a number", {"user": 42, "item": "i1"}, "user"),
    ("item is null", {"user": "u1", "item": None}, "item"),
    ("item is a list", {"user": "u1", "item": ["i1"]}, "item"),
    ("empty user", {"user": "", "item": "i1"}, "user"),
    ("oversized item", {"user": "u1", "item": "x" * 257}, "item"),
    ("control character in user", {"user": "u\x001", "item": "i1"}, "user"),
    ("newline in item", {"user": "u1", "item": "i\n1"}, "item"),
    ("weight NaN", {"user": "u1", "item": "i1", "weight": float("nan")}, "weight"),
    ("weight inf", {"user": "u1", "item": "i1", "weight": float("inf")}, "weight"),
    ("weight negative play", {"user": "u1", "item": "i1", "weight": -3}, "weight"),
    ("weight zero play", {"user": "u1", "item": "i1", "weight": 0}, "weight"),
    ("weight is a string", {"user": "u1", "item": "i1", "weight": "abc"}, "weight"),
    ("weight is a bool", {"user": "u1", "item": "i1", "weight": True}, "weight"),
    ("rating without weight", {"user": "u1", "item": "i1", "kind": "rating"}, "weight"),
    ("rating above scale", {"user": "u1", "item": "i1", "kind": "rating", "weight": 9}, "weight"),
    ("rating below scale", {"user": "u1", "item": "i1", "kind": "rating", "weight": 0.1}, "weight"),
    ("unknown kind", {"user": "u1", "item": "i1", "kind": "teleport"}, "kind"),
    ("kind is a number", {"user": "u1", "item": "i1", "kind": 3}, "kind"),
    ("timestamp not a date", {"user": "u1", "item": "i1", "timestamp": "yesterday"}, "timestamp"),
    ("timestamp negative", {"user": "u1", "item": "i1", "timestamp": -5}, "timestamp"),
    ("timestamp NaN", {"user": "u1", "item": "i1", "timestamp": float("nan")}, "timestamp"),
    ("timestamp far future", {"user": "u1", "item": "i1", "timestamp": 4.1e9}, "timestamp"),
    ("timestamp is a bool", {"user": "u1", "item": "i1", "timestamp": False}, "timestamp"),
    ("event id empty", {"user": "u1", "item": "i1", "event_id": ""}, "event_id"),
    ("event id a dict", {"user": "u1", "item": "i1", "event_id": {"a": 1}}, "event_id"),
    ("unknown field", {"user": "u1", "item": "i1", "rating": 5}, "payload"),
    ("not an object", ["u1", "i1"], "payload"),
    ("non-JSON text", "user=u1&item=i1", "payload"),
    ("truncated JSON", '{"user": "u1", "item": "i', "payload"),
    ("JSON null", "null", "payload"),
    ("invalid UTF-8 bytes", b'{"user": "\xff\xfe", "item": "i1"}', "payload"),
    # Hardening: each of these raised something other than InvalidEventError, or was accepted.
    ("kind is a list", {"user": "u1", "item": "i1", "kind": ["play"]}, "kind"),
    ("kind is a dict", {"user": "u1", "item": "i1", "kind": {"play": 1}}, "kind"),
    ("weight huge int", {"user": "u1", "item": "i1", "weight": 10**400}, "weight"),
    ("weight huge negative int", {"user": "u1", "item": "i1", "weight": -(10**400)}, "weight"),
    (
        "rating huge int",
        {"user": "u1", "item": "i1", "kind": "rating", "weight": 10**400},
        "weight",
    ),
    ("timestamp huge int", {"user": "u1", "item": "i1", "timestamp": 10**400}, "timestamp"),
    ("timestamp huge negative", {"user": "u1", "item": "i1", "timestamp": -(10**400)}, "timestamp"),
    ("weight numeric string", {"user": "u1", "item": "i1", "weight": "3"}, "weight"),
    ("weight is a list", {"user": "u1", "item": "i1", "weight": [3]}, "weight"),
    ("weight is a dict", {"user": "u1", "item": "i1", "weight": {"value": 3}}, "weight"),
    ("timestamp is a list", {"user": "u1", "item": "i1", "timestamp": [100]}, "timestamp"),
    ("timestamp is a dict", {"user": "u1", "item": "i1", "timestamp": {"s": 100}}, "timestamp"),
    ("weight over max_weight", {"user": "u1", "item": "i1", "weight": 1e10}, "weight"),
    (
        "weight × kind weight over max_weight",
        {"user": "u1", "item": "i1", "weight": 1e300, "kind": "purchase"},
        "weight",
    ),
    (
        "weight × kind weight overflows",
        {"user": "u1", "item": "i1", "weight": 1e308, "kind": "purchase"},
        "weight",
    ),
    ("user is a dict", {"user": {"id": "u1"}, "item": "i1"}, "user"),
    ("user is a bool", {"user": True, "item": "i1"}, "user"),
    ("event id a list", {"user": "u1", "item": "i1", "event_id": ["e1"]}, "event_id"),
    ("event id a number", {"user": "u1", "item": "i1", "event_id": 7}, "event_id"),
    ("deeply nested JSON array", "[" * 100_000, "payload"),
    ("deeply nested JSON object", '{"user": ' * 100_000, "payload"),
    (
        "JSON integer of 5000 digits",
        '{"user": "u1", "item": "i1", "weight": ' + "9" * 5000 + "}",
        "payload",
    ),
    ("lone surrogate in JSON text", '{"user": "u\ud8001", "item": "i1"}', "payload"),
    ("lone surrogate in item", {"user": "u1", "item": "i\udc801"}, "item"),
    ("escaped lone surrogate in JSON", '{"user": "u\\ud800", "item": "i1"}', "user"),
]

#: Cases that are not JSON (RQ's serializer cannot carry them): for the unit tests only.
MALFORMED_PYTHON_ONLY: list[tuple[str, Any, str]] = [
    ("non-str key", {"user": "u1", "item": "i1", 1: 2}, "payload"),
    ("tuple key", {"user": "u1", "item": "i1", ("user",): "u2"}, "payload"),
    ("key an int of 5000 digits", {"user": "u1", "item": "i1", 10**5000: 1}, "payload"),
    ("weight an int of 5000 digits", {"user": "u1", "item": "i1", "weight": 10**5000}, "weight"),
    ("user nested too deep to repr", {"user": _deep_list(100_000), "item": "i1"}, "user"),
    ("kind a set", {"user": "u1", "item": "i1", "kind": {"play"}}, "kind"),
    ("kind a bytes", {"user": "u1", "item": "i1", "kind": b"play"}, "kind"),
    ("weight a complex", {"user": "u1", "item": "i1", "weight": 1j}, "weight"),
    ("timestamp bytes", {"user": "u1", "item": "i1", "timestamp": b"2024-01-01"}, "timestamp"),
    ("a set", {"user", "item"}, "payload"),
    ("None", None, "payload"),
    ("bytes nested too deep", b"[" * 100_000, "payload"),
]
