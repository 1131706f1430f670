"""How the formats' ids are read: as each dataset defines them.

Where a format's ids are integers (MovieLens user and movie ids, HetRec user and artist
ids) the id is the integer's decimal form, as pandas or the dataset's own tools would read
it: ``" 42"``, ``"042"``, ``"+42"``, ``"42.0"`` and ``"4.2e1"`` are all ``"42"``, so that a
file re-saved by a spreadsheet or a data frame names the same users and items as the
published one; a cell that is not an integer makes its row a problem record (a dead letter
naming the line and the field) instead of a new id. Last.fm 360K user ids (SHA-1 digests)
and artist MBIDs (UUIDs) are hex strings: they are trimmed and, when they have that shape,
lower-cased, as the published file writes them; other string ids are only trimmed.
"""

from __future__ import annotations

import re

_INTEGER = re.compile(r"([+-]?)(?=\.?[0-9])([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]{1,3}))?")


def integer_id(text: str) -> str | None:
    """The decimal form of an integer id, or None when ``text`` is not an integer.

    Surrounding whitespace, a sign, leading zeros and an integral decimal or exponent form
    are read as pandas reads a number: ``" 42"``, ``"042"``, ``"+42"``, ``"42.0"`` and
    ``"4.2e1"`` give ``"42"``; ``"-7"`` gives ``"-7"``. ``"42.5"``, ``"4_2"``, ``"x42"``,
    ``""`` and non-ASCII digits give None.
    """
    if text.isdigit() and text.isascii():  # the common case, in every published file
        return text.lstrip("0") or "0"
    match = _INTEGER.fullmatch(text.strip())
    if match is None:
        return None
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    digits = whole + fraction
    shift = int(exponent or 0) - len(fraction)  # the value is int(digits) * 10**shift
    if shift < 0:
        digits, dropped = digits[:shift], digits[shift:]
        if dropped.strip("0"):
            return None
    else:
        digits += "0" * shift
    digits = digits.lstrip("0") or "0"
    return "-" + digits if sign == "-" and digits != "0" else digits


def integer_ids(
    fmt: str, user: str | None, item: str | None
) -> tuple[str | None, str | None, str | None, str]:
    """Read a row's user and item ids as integers (see :func:`integer_id`).

    Returns:
        ``(user, item, problem, problem_field)``: the canonical ids, None and ``"payload"``;
        or, when an id is not an integer, the ids as read, a problem naming the value and
        the field at fault.
    """
    canonical_user = None if user is None else integer_id(user)
    canonical_item = None if item is None else integer_id(item)
    if canonical_user is None and user is not None:
        return user, item, _not_integer(fmt, "user", user), "user"
    if canonical_item is None and item is not None:
        return user, item, _not_integer(fmt, "item", item), "item"
    return canonical_user, canonical_item, None, "payload"


def _not_integer(fmt: str, name: str, value: str) -> str:
    return (
        f"{name} id {value!r} is not an integer; {fmt} ids are integers "
        "(' 42', '042', '+42' and '42.0' all read as '42'): fix or remove the row"
    )


_HEX_ID = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def hex_id(text: str | None) -> str | None:
    """A string id trimmed of whitespace; a SHA-1 digest or a UUID is also lower-cased."""
    if text is None:
        return None
    text = text.strip()
    return text.lower() if _HEX_ID.fullmatch(text) else text
