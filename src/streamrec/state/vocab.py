"""Id vocabularies: external string ids <-> dense integer ids (rows of the model matrices).

The apply script hands out ids; this module only reads them. Ids of forgotten users are
not reused, so a dense id never silently changes owner.
"""

from __future__ import annotations

import redis

from streamrec import keys
from streamrec.keys import Space


class Vocabulary:
    """Read access to one id space (``users`` or ``items``).

    Args:
        connection: a redis-py client.
        space: ``"users"`` or ``"items"``.
    """

    def __init__(self, connection: redis.Redis, space: Space) -> None:
        self.connection = connection
        self.space = space

    def __len__(self) -> int:
        return int(self.connection.hlen(keys.vocab_key(self.space)))

    def id_of(self, external: str) -> int | None:
        """The dense id of ``external``, or None if unknown."""
        value = self.connection.hget(keys.vocab_key(self.space), external)
        return None if value is None else int(value)

    def externals(self, dense_ids: list[int]) -> list[str | None]:
        """The external ids behind several dense ids, in one round trip (None where unknown)."""
        if not dense_ids:
            return []
        values = self.connection.hmget(
            keys.vocab_reverse_key(self.space), [str(i) for i in dense_ids]
        )
        return [None if v is None else _text(v) for v in values]

    def all(self) -> dict[str, int]:
        """The whole vocabulary, external -> dense."""
        raw = self.connection.hgetall(keys.vocab_key(self.space))
        return {_text(k): int(v) for k, v in raw.items()}

    def capacity(self) -> int:
        """One more than the largest dense id ever handed out (the matrix height needed)."""
        return int(self.connection.get(keys.vocab_counter_key(self.space)) or 0)


class ItemCatalog:
    """Display names of items (movie titles, artist names)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def set_names(self, names: dict[str, str]) -> None:
        """Store display names, item -> name."""
        if names:
            self.connection.hset(keys.item_names_key(), mapping=names)  # type: ignore[arg-type]

    def names(self, items: list[str]) -> dict[str, str]:
        """Display names of ``items`` that have one."""
        if not items:
            return {}
        values = self.connection.hmget(keys.item_names_key(), items)
        return {item: _text(v) for item, v in zip(items, values, strict=True) if v is not None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
