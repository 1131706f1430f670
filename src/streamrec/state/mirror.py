"""A worker's in-memory copy of recently touched users' histories.

Folding a user in needs their FULL history, and reading it back from Redis after every
batch costs more than the model's work. The apply script returns, for each user of a
batch, the version before and after and every value the batch stored; a worker that holds
the user at exactly the version before applies those values and has the stored history
without reading it. Anything else — a user it never saw, events applied by another worker
in between, a forgotten user who came back under a new dense id, a redelivered batch — is
read from Redis (one transaction per chunk, so values and version agree). The copy is
exact, not an approximation: a user is served from memory only when the version chain is
unbroken.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from streamrec.state.matrices import HistoryRows, MatrixReader, StoredHistory, history_rows
from streamrec.state.outcome import TouchedUser


class HistoryMirror:
    """Users' stored histories, kept current from the apply script's replies.

    Args:
        reader: reads the users that are missing or out of step.
        capacity: users kept (least recently touched dropped first); 0 disables the copy.
    """

    def __init__(self, reader: MatrixReader, capacity: int) -> None:
        self.reader = reader
        self.capacity = capacity
        self._held: OrderedDict[str, tuple[int, StoredHistory]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._held)

    def rows(self, touched: Sequence[TouchedUser], n_items: int | None = None) -> HistoryRows:
        """The full histories of a batch's users after the batch (see module doc).

        Args:
            touched: the users of an applied batch, from its outcome.
            n_items: matrix width (default: one more than the largest item id seen).
        """
        return history_rows([t.user for t in touched], self.histories(touched), n_items)

    def histories(self, touched: Sequence[TouchedUser]) -> list[StoredHistory]:
        """The stored histories of a batch's users after the batch, one per user, in order.

        The objects are the mirror's own: a later batch that advances a user updates its
        object in place (values and version together).
        """
        held = [self._advance(user) for user in touched]
        missing = [user for user, s in zip(touched, held, strict=True) if s is None]
        fresh = iter(self.reader.read([user.user for user in missing]) if missing else [])
        stored: list[StoredHistory] = []
        for user, s in zip(touched, held, strict=True):
            if s is None:
                s = next(fresh)
                self._keep(user, s)
            stored.append(s)
        self.misses += len(missing)
        self.hits += len(touched) - len(missing)
        return stored

    def _advance(self, user: TouchedUser) -> StoredHistory | None:
        held = self._held.pop(user.user, None)
        if held is None:
            return None
        dense, stored = held
        if dense != user.dense_id or stored.version != user.version - user.events:
            return None  # out of step: read it again
        for change in user.changes():
            (stored.ratings if change.rating else stored.history)[change.item] = change.value
        stored.version = user.version
        self._held[user.user] = held  # most recently touched last
        return stored

    def _keep(self, user: TouchedUser, stored: StoredHistory) -> None:
        if self.capacity <= 0:
            return
        self._held[user.user] = (user.dense_id, stored)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
