"""Malformed events shared by the producer (unit) and worker (integration) tests.

Each case: (label, raw event or payload, the field the error must name).
"""

from __future__ import annotations

from typing import Any

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
]
