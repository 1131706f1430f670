"""Histories as sparse user × item matrices (rows for fold-in, the whole state for training).

Columns are item dense ids from the vocabulary, so a model's item rows line up with them.
An item's weight in a row is its summed additive weight plus its rating (for implicit
models a rating is one more sign of interest; the confidence transform decides how much).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, pairwise

import numpy as np
import redis
import scipy.sparse as sp

from streamrec import keys
from streamrec.data.item_features import ItemFeatures
from streamrec.state.vocab import Vocabulary

CHUNK = 500


@dataclass(frozen=True)
class HistoryRows:
    """Histories of some users.

    Attributes:
        users: external ids, one per row.
        matrix: ``(len(users), n_items)`` float32 CSR of raw weights (additive weights plus
            ratings: what implicit-feedback models read).
        versions: history version per row, int64.
        ratings: ``(len(users), n_items)`` float32 CSR of the newest ratings only (what rating
            models read); every stored entry is a rating, a rating of 0 included.
        item_features: per item column, its features (tags, name words), when they were
            read for a model that learns from them
            (:meth:`~streamrec.state.vocab.ItemCatalog.features`); else None.
    """

    users: list[str]
    matrix: sp.csr_matrix
    versions: np.ndarray
    ratings: sp.csr_matrix
    item_features: ItemFeatures | None = None

    def subset(self, rows: np.ndarray) -> HistoryRows:
        """The rows numbered ``rows`` (int array), in that order."""
        return HistoryRows(
            [self.users[r] for r in rows.tolist()],
            self.matrix[rows],
            self.versions[rows],
            self.ratings[rows],
            self.item_features,
        )


@dataclass
class StoredHistory:
    """One user's stored history by item dense id, as read at one history version.

    Attributes:
        version: the history version the values belong to.
        history: item -> summed weight of additive events.
        ratings: item -> newest rating.
    """

    version: int
    history: dict[int, float]
    ratings: dict[int, float]


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

    def read(self, users: Sequence[str]) -> list[StoredHistory]:
        """The stored histories of ``users`` (unknown users are empty at version 0).

        Each user's hashes and version are read in one transaction, so the values belong
        to the version returned even while other workers apply events.
        """
        # Values are collected as bytes and parsed by numpy in one go, and items are looked
        # up by their raw bytes (no decoding per entry): this is every training read.
        out: list[StoredHistory] = []
        for start in range(0, len(users), CHUNK):
            chunk = users[start : start + CHUNK]
            with self.connection.pipeline(transaction=True) as pipe:
                for user in chunk:
                    pipe.hgetall(keys.user_history_key(user))
                    pipe.hgetall(keys.user_ratings_key(user))
                    pipe.get(keys.user_version_key(user))
                replies = pipe.execute()
            hashes = [replies[n] for n in range(len(replies)) if n % 3 != 2]
            cols = self._ids(list(chain.from_iterable(h.keys() for h in hashes)))
            values = np.array(list(chain.from_iterable(h.values() for h in hashes)), np.float64)
            owner = np.repeat(np.arange(len(hashes)), [len(h) for h in hashes])
            known = cols >= 0  # items missing from the vocabulary are skipped
            bounds = np.searchsorted(owner[known], np.arange(len(hashes) + 1)).tolist()
            col_list, value_list = cols[known].tolist(), values[known].tolist()
            parsed = [
                dict(zip(col_list[lo:hi], value_list[lo:hi], strict=True))
                for lo, hi in pairwise(bounds)
            ]
            for n in range(len(chunk)):
                version = replies[3 * n + 2]
                out.append(StoredHistory(int(version or 0), parsed[2 * n], parsed[2 * n + 1]))
        return out

    def rows(self, users: Sequence[str], n_items: int | None = None) -> HistoryRows:
        """The full histories of ``users`` (unknown users give empty rows).

        Args:
            users: external user ids.
            n_items: matrix width; default: one more than the largest dense item id seen.
        """
        return history_rows(users, self.read(users), n_items)

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


def history_rows(
    users: Sequence[str], stored: Sequence[StoredHistory], n_items: int | None = None
) -> HistoryRows:
    """Rows of a CSR matrix from stored histories (one per user, in order).

    Args:
        users: external ids, one per history.
        stored: the histories.
        n_items: matrix width; default: one more than the largest dense item id seen.
    """
    parts = [d for s in stored for d in (s.history, s.ratings)]
    lengths = np.fromiter((len(d) for d in parts), np.int64, count=len(parts))
    total = int(lengths.sum())
    cols = np.fromiter(chain.from_iterable(parts), np.int64, count=total)
    data = np.fromiter(chain.from_iterable(d.values() for d in parts), np.float32, count=total)
    width = n_items if n_items is not None else (int(cols.max()) + 1 if total else 0)
    n = len(stored)
    # Built from (data, indices, indptr) directly: the entries are already grouped by row,
    # and going through COO costs more than the model's work for one user.
    owner = np.repeat(np.arange(len(parts)), lengths)
    keep = cols < width
    matrix = _csr(data[keep], cols[keep], owner[keep] // 2, (n, width))
    matrix.sum_duplicates()  # an item both played and rated appears twice: sum the two
    rated = keep & (owner % 2 == 1)
    ratings = _csr(data[rated], cols[rated], owner[rated] // 2, (n, width))  # 0 stays stored
    versions = np.fromiter((s.version for s in stored), np.int64, count=n)
    return HistoryRows(list(users), matrix, versions, ratings)


def _csr(
    data: np.ndarray, cols: np.ndarray, rows: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """A CSR matrix from entries already ordered by (non-decreasing) row."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return sp.csr_matrix((data, cols.astype(np.int32), indptr), shape=shape)
