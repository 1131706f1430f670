"""Histories as sparse user × item matrices (rows for fold-in, the whole state for training).

Columns are item dense ids from the vocabulary, so a model's item rows line up with them.
An item's weight in a row is its summed additive weight plus its rating (for implicit
models a rating is one more sign of interest; the confidence transform decides how much).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis
import scipy.sparse as sp

from streamrec import keys
from streamrec.state.vocab import Vocabulary

CHUNK = 500


@dataclass(frozen=True)
class HistoryRows:
    """Histories of some users.

    Attributes:
        users: external ids, one per row.
        matrix: ``(len(users), n_items)`` float32 CSR of raw weights.
        versions: history version per row, int64.
    """

    users: list[str]
    matrix: sp.csr_matrix
    versions: np.ndarray


class MatrixReader:
    """Reads histories into CSR matrices, mapping items through a cached vocabulary.

    Args:
        connection: a redis-py client.
    """

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._item_ids: dict[bytes, int] = {}

    def learn_items(self, pairs: Sequence[tuple[str, int]]) -> None:
        """Add known (item, dense id) pairs to the cache (e.g. a batch's new items)."""
        self._item_ids.update((item.encode(), dense) for item, dense in pairs)

    def rows(self, users: Sequence[str], n_items: int | None = None) -> HistoryRows:
        """The full histories of ``users`` (unknown users give empty rows).

        Args:
            users: external user ids.
            n_items: matrix width; default: one more than the largest dense item id seen.
        """
        # Hot path of every fold-in: values are collected as bytes and parsed by numpy in
        # one go, and items are looked up by their raw bytes (no decoding per entry).
        values: list[bytes] = []
        names: list[bytes] = []
        indptr = [0]
        versions = np.zeros(len(users), dtype=np.int64)
        for start in range(0, len(users), CHUNK):
            chunk = users[start : start + CHUNK]
            with self.connection.pipeline(transaction=False) as pipe:
                for user in chunk:
                    pipe.hgetall(keys.user_history_key(user))
                    pipe.hgetall(keys.user_ratings_key(user))
                    pipe.get(keys.user_version_key(user))
                replies = pipe.execute()
            for offset in range(len(chunk)):
                history, ratings, version = replies[3 * offset : 3 * offset + 3]
                names += history.keys()
                values += history.values()
                names += ratings.keys()
                values += ratings.values()
                indptr.append(len(names))
                versions[start + offset] = int(version or 0)
        cols = self._ids(names)
        data = (
            np.array(values, dtype=np.float64).astype(np.float32)
            if values
            else np.zeros(0, np.float32)
        )
        width = n_items if n_items is not None else (int(cols.max()) + 1 if len(cols) else 0)
        rows = np.repeat(np.arange(len(users)), np.diff(indptr))
        keep = (cols >= 0) & (cols < width)
        matrix = sp.csr_matrix(
            (data[keep], (rows[keep], cols[keep])), shape=(len(users), width), dtype=np.float32
        )  # an item both played and rated appears twice: the constructor sums the two
        return HistoryRows(list(users), matrix, versions)

    def all_users(self) -> list[str]:
        """Every known user, in dense-id order."""
        vocab = Vocabulary(self.connection, "users").all()
        return sorted(vocab, key=vocab.__getitem__)

    def _ids(self, items: list[bytes]) -> np.ndarray:
        known = self._item_ids
        missing = list({i for i in items if i not in known})
        if missing:
            found = self.connection.hmget(keys.vocab_key("items"), missing)
            known.update((i, int(d)) for i, d in zip(missing, found, strict=True) if d is not None)
        return np.fromiter((known.get(i, -1) for i in items), dtype=np.int64, count=len(items))
