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
        self.items = Vocabulary(connection, "items")
        self._item_ids: dict[str, int] = {}

    def learn_items(self, pairs: Sequence[tuple[str, int]]) -> None:
        """Add known (item, dense id) pairs to the cache (e.g. a batch's new items)."""
        self._item_ids.update(pairs)

    def rows(self, users: Sequence[str], n_items: int | None = None) -> HistoryRows:
        """The full histories of ``users`` (unknown users give empty rows).

        Args:
            users: external user ids.
            n_items: matrix width; default: one more than the largest dense item id seen.
        """
        data: list[float] = []
        cols: list[int] = []
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
                weights: dict[str, float] = {k.decode(): float(v) for k, v in history.items()}
                for k, v in ratings.items():
                    item = k.decode()
                    weights[item] = weights.get(item, 0.0) + float(v.split(b" ", 1)[0])
                ids = self._ids(list(weights))
                for item, weight in weights.items():
                    cols.append(ids[item])
                    data.append(weight)
                indptr.append(len(cols))
                versions[start + offset] = int(version or 0)
        width = n_items if n_items is not None else (max(cols) + 1 if cols else 0)
        keep = np.asarray(cols, dtype=np.int64) < width
        matrix = _csr(
            np.asarray(data, dtype=np.float32),
            np.asarray(cols, dtype=np.int64),
            np.asarray(indptr),
            keep,
            len(users),
            width,
        )
        return HistoryRows(list(users), matrix, versions)

    def all_users(self) -> list[str]:
        """Every known user, in dense-id order."""
        vocab = Vocabulary(self.connection, "users").all()
        return sorted(vocab, key=vocab.__getitem__)

    def _ids(self, items: list[str]) -> dict[str, int]:
        missing = [i for i in items if i not in self._item_ids]
        if missing:
            for item, dense in zip(missing, self.items.ids_of(missing), strict=True):
                if dense is not None:
                    self._item_ids[item] = dense
        return self._item_ids


def _csr(
    data: np.ndarray,
    cols: np.ndarray,
    indptr: np.ndarray,
    keep: np.ndarray,
    n_rows: int,
    width: int,
) -> sp.csr_matrix:
    if not keep.all():
        rows = np.repeat(np.arange(n_rows), np.diff(indptr))[keep]
        return sp.csr_matrix(
            (data[keep], (rows, cols[keep])), shape=(n_rows, width), dtype=np.float32
        )
    return sp.csr_matrix(
        (data, cols.astype(np.int32), indptr.astype(np.int32)),
        shape=(n_rows, width),
        dtype=np.float32,
    )
