"""What applying a batch did: its outcome, and each user's changes (the apply script's
reply, parsed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class HistoryChange(NamedTuple):
    """A value a batch left in a user's history: item dense id, which hash, stored value."""

    item: int
    rating: bool
    value: float


@dataclass(frozen=True)
class TouchedUser:
    """A user whose history a batch changed.

    Attributes:
        user: external id.
        dense_id: the user's dense id.
        version: history version after the batch.
        events: events of the batch applied to the user (``version - events`` is the
            version before it).
        stored: the values the batch stored, in order, as the apply script returns them
            (flat: item dense id, ``b"s"`` or ``b"r"``, value); :meth:`changes` parses
            them. Kept raw because only a worker serving a model needs them.
    """

    user: str
    dense_id: int
    version: int
    events: int = 0
    stored: Sequence[Any] = ()

    def changes(self) -> list[HistoryChange]:
        """The values the batch stored, in order."""
        flat = self.stored
        return [
            HistoryChange(int(flat[n]), flat[n + 1] == b"r", float(flat[n + 2]))
            for n in range(0, len(flat), 3)
        ]


@dataclass(frozen=True)
class BatchOutcome:
    """What applying a batch did.

    Attributes:
        batch_id: the batch.
        applied: False when the batch id was already in the ledger (nothing changed).
        events: events applied.
        dead_letters: entries added to the dead-letter list.
        users: users whose history changed, with what changed (only when the batch was
            applied with ``detail``; see ``detailed``).
        new_items: (item, dense id) of items first seen in this batch.
        n_users: how many users the batch changed.
        detailed: whether ``users`` lists them.
        marks: the ids under which the batch's users wait in the unserved-batches hash
            until a worker serves them (applied with ``serving`` only).
        sent_at: when the batch was sent, epoch seconds, as the worker got it (None when
            unknown); the clock of the event→cache latency.
    """

    batch_id: str
    applied: bool
    events: int = 0
    dead_letters: int = 0
    users: tuple[TouchedUser, ...] = ()
    new_items: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    n_users: int = 0
    detailed: bool = True
    marks: tuple[str, ...] = ()
    sent_at: float | None = None


def merge(batch_id: str, parts: Sequence[BatchOutcome]) -> BatchOutcome:
    """One outcome for the parts of a split batch (a user's changes in part order: a worker
    mirrors them only if no other batch came between, see ``HistoryMirror``)."""
    users: dict[str, TouchedUser] = {}
    for outcome in parts:
        for t in outcome.users:
            before = users.get(t.user)
            if before is not None and before.dense_id == t.dense_id:
                t = TouchedUser(
                    t.user, t.dense_id, t.version, before.events + t.events,
                    [*before.stored, *t.stored],
                )  # fmt: skip
            users[t.user] = t
    return BatchOutcome(
        batch_id=batch_id,
        applied=any(p.applied for p in parts),
        events=sum(p.events for p in parts),
        dead_letters=sum(p.dead_letters for p in parts),
        users=tuple(users.values()),
        new_items=tuple(pair for p in parts for pair in p.new_items),
        n_users=len(users) if all(p.detailed for p in parts) else sum(p.n_users for p in parts),
        detailed=all(p.detailed for p in parts),
        marks=tuple(mark for p in parts for mark in p.marks),
    )


def parse_reply(batch_id: str, reply: list[Any], serving: bool) -> BatchOutcome:
    applied, n_events, n_dead, users, new_items = reply
    touched = (
        tuple(TouchedUser(u.decode(), int(i), int(v), int(n), c) for u, i, v, n, c in users)
        if isinstance(users, list)
        else ()
    )
    return BatchOutcome(
        batch_id=batch_id,
        applied=bool(applied),
        events=int(n_events),
        dead_letters=int(n_dead),
        users=touched,
        new_items=tuple((name.decode(), int(i)) for name, i in new_items),
        n_users=len(touched) if isinstance(users, list) else int(users),
        detailed=isinstance(users, list) or not applied,
        marks=(batch_id,) if serving and touched else (),
    )
