"""What the HTTP API says about a request it refuses: a status and a JSON body naming the
field at fault, its value and the reason."""

from __future__ import annotations

import math
from typing import Any

from streamrec.errors import StreamrecError

#: Longest string value echoed back in an error body (longer ones are cut).
MAX_SHOWN = 200
#: Integers JSON readers take exactly (JavaScript's safe integers).
_SAFE_INT = 2**53


class RequestError(StreamrecError):
    """A request the HTTP API refuses (the server edge maps it to its ``status``).

    Attributes:
        status: the HTTP status (400, 404, 413, 422).
        field: the parameter at fault (``model``, ``k``, ``item``, ``user``, ``body``).
        value: the value that was seen.
        reason: what is wrong and how to fix it.
    """

    def __init__(self, status: int, field: str, value: Any, reason: str) -> None:
        self.status = status
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field} {reason} (got {shown_text(value)})")

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the reply."""
        return {
            "error": str(self),
            "field": self.field,
            "value": shown(self.value),
            "reason": self.reason,
        }


def shown(value: Any) -> Any:
    """``value`` as it can go into a JSON reply: a JSON scalar as is (a long string cut),
    anything else (a list, an object, NaN, a huge int) as its shortened ``repr``."""
    if value is None or isinstance(value, bool):
        return value
    if type(value) is str:
        if not value.isascii() and not _encodable(value):  # a lone surrogate
            return shown_text(value)
        return value if len(value) <= MAX_SHOWN else value[: MAX_SHOWN - 3] + "..."
    if type(value) is int and -_SAFE_INT <= value <= _SAFE_INT:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return shown_text(value)


def shown_text(value: Any) -> str:
    """``repr(value)``, shortened, or a description when it cannot be computed (an int of
    more than 4300 digits, a structure nested too deeply)."""
    try:
        text = repr(value)
    except Exception:
        return f"<a {type(value).__name__} that cannot be shown>"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
