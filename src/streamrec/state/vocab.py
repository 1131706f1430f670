"""Id vocabularies: external string ids <-> dense integer ids (rows of the model matrices),
and what is known of items: display names and tags.

The apply script hands out ids; this module only reads them. Ids of forgotten users are
not reused, so a dense id never silently changes owner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from streamrec import keys
from streamrec.data.item_features import ItemFeatures, item_features
from streamrec.keys import Space

#: Joins an item's tags in :func:`~streamrec.keys.item_tags_key` (a tag holding it is
#: stored with ``/`` instead).
TAG_SEPARATOR = "|"


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

    def ids(self, externals: list[str]) -> list[int | None]:
        """The dense ids of several external ids, in one round trip (None where unknown)."""
        if not externals:
            return []
        values = self.connection.hmget(keys.vocab_key(self.space), externals)
        return [None if v is None else int(v) for v in values]

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
    """Display names of items (movie titles, artist names) and their tags (genres)."""

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

    def set_tags(self, tags: Mapping[str, Sequence[str]]) -> None:
        """Store tags, item -> tags (replacing the item's earlier tags; an item given no
        tags keeps its earlier ones)."""
        cleaned = {
            item: [t.strip().replace(TAG_SEPARATOR, "/") for t in found]
            for item, found in tags.items()
        }
        joined = {
            item: TAG_SEPARATOR.join(t for t in found if t)
            for item, found in cleaned.items()
            if any(found)
        }
        if joined:
            self.connection.hset(keys.item_tags_key(), mapping=joined)  # type: ignore[arg-type]

    def tags(self, items: list[str]) -> dict[str, tuple[str, ...]]:
        """Tags of ``items`` that have some."""
        if not items:
            return {}
        values = self.connection.hmget(keys.item_tags_key(), items)
        return {item: _split(v) for item, v in zip(items, values, strict=True) if v is not None}

    def features(self, n_items: int) -> ItemFeatures:
        """Features (:mod:`streamrec.data.item_features`) of dense items ``0 … n_items-1``
        from every stored name and tag (three whole-hash reads: a training read)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.vocab_key("items"))
            pipe.hgetall(keys.item_names_key())
            pipe.hgetall(keys.item_tags_key())
            vocab, names, tags = pipe.execute()
        items = [""] * n_items  # "" is never an item id: no name, no tags
        for external, dense in vocab.items():
            if int(dense) < n_items:
                items[int(dense)] = _text(external)
        return item_features(
            items,
            {_text(k): _text(v) for k, v in names.items()},
            {_text(k): _split(v) for k, v in tags.items()},
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split(value: bytes | str) -> tuple[str, ...]:
    return tuple(t for t in _text(value).split(TAG_SEPARATOR) if t)
