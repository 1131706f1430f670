"""Per-user interaction histories and the atomic application of event batches.

A user's history is two hashes: ``history`` (item -> summed weight of additive kinds, each
event's weight times its kind's multiplier) and ``ratings`` (item -> the newest rating, by
timestamp then event id, so the result does not depend on arrival order). A counter holds
the history ``version`` (the number of events applied to the user, so it only grows); a
sorted set holds each user's newest event time. A batch, its ledger entry and its dead
letters are written by one Lua script: a redelivered batch finds its id in the ledger and
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from streamrec import keys
from streamrec.events import Event
from streamrec.settings import MAX_STORED_WEIGHT, RATING_KIND, Settings
from streamrec.state.deadletters import DeadLetter
from streamrec.state.outcome import BatchOutcome, merge, parse_reply
from streamrec.state.scripts import script

_GLOBAL_KEYS = (
    keys.ledger_key(),
    keys.stats_key(),
    keys.popularity_key(),
    keys.dead_letters_key(),
    keys.last_seen_key(),
    keys.vocab_key("users"),
    keys.vocab_reverse_key("users"),
    keys.vocab_counter_key("users"),
    keys.vocab_key("items"),
    keys.vocab_reverse_key("items"),
    keys.vocab_counter_key("items"),
    keys.forgotten_key(),
    keys.forgotten_expiry_key(),
    keys.unserved_key(),
)


@dataclass(frozen=True)
class UserHistory:
    """A user's stored history.

    Attributes:
        user: external id.
        interactions: item -> summed weight of additive events.
        ratings: item -> newest rating.
        version: history version: the number of events applied to the user.
        last_ts: newest event timestamp, epoch seconds (None if no events).
    """

    user: str
    interactions: dict[str, float]
    ratings: dict[str, float]
    version: int
    last_ts: float | None

    @property
    def items(self) -> set[str]:
        """Every item the user interacted with in any way."""
        return set(self.interactions) | set(self.ratings)


class HistoryStore:
    """Reads and atomically changes per-user histories.

    Args:
        connection: a redis-py client.
        settings: kind weights, ledger retention and dead-letter limit.
    """

    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings
        self._apply = script(connection, "apply_batch")
        self._forget = script(connection, "forget_user")

    def apply(
        self,
        batch_id: str,
        events: Sequence[Event],
        dead_letters: Sequence[DeadLetter] = (),
        *,
        serving: bool = False,
        sent_at: float | None = None,
    ) -> BatchOutcome:
        """Apply a batch of validated events and its dead letters, exactly once.

        A batch larger than ``settings.max_call_events`` is applied in parts, each atomic
        with its own ledger entry; the part size is fixed at the first delivery, so a
        redelivery splits it the same way and applies only the parts still missing.

        Args:
            batch_id: the batch's id (the ledger's key).
            events: its valid events.
            dead_letters: its invalid events, with their reasons.
            serving: the caller serves models: record the users changed in the
                unserved-batches hash until they are served, and return them with what
                changed (without, the outcome only counts them: ``detailed`` is False).
            sent_at: when the batch was sent, epoch seconds (default now): the events of a
                user forgotten after that are dropped.
        """
        size = len(events) + len(dead_letters)
        if size <= self.settings.max_call_events:
            return self.apply_many(
                [(batch_id, events, dead_letters)], serving=serving, sent_at=sent_at
            )[0]
        part = self._part_size(batch_id)
        n_events = len(events)
        parts = []
        for n, start in enumerate(range(0, size, part)):
            end = start + part
            dead = dead_letters[max(0, start - n_events) : max(0, end - n_events)]
            parts.append((f"{batch_id}:{n}", events[start:end], dead))
        outcomes = []
        for start in range(0, len(parts), 4):  # a few parts per round trip
            outcomes += self.apply_many(parts[start : start + 4], serving=serving, sent_at=sent_at)
        return merge(batch_id, outcomes)

    def apply_many(
        self,
        batches: Iterable[tuple[str, Sequence[Event], Sequence[DeadLetter]]],
        *,
        serving: bool = False,
        sent_at: float | Sequence[float | None] | None = None,
    ) -> list[BatchOutcome]:
        """Apply several batches in one round trip; each is atomic on its own (and must hold
        at most ``settings.max_call_events`` events and dead letters together).

        ``sent_at`` is one time for all the batches or one per batch (see :meth:`apply`).
        """
        now = time.time()
        batches = list(batches)
        sent_ats = list(sent_at) if isinstance(sent_at, Sequence) else [sent_at] * len(batches)
        sents = [str(round((now if t is None else t) * 1000)) for t in sent_ats]
        if len(batches) == 1:  # no pipeline: it would ask SCRIPT EXISTS first, a round trip
            batch_id, events, dead = batches[0]
            keys_, args = self._script_args(batch_id, events, dead, now, serving, sents[0])
            return [parse_reply(batch_id, self._apply(keys=keys_, args=args), serving)]
        calls = [
            self._script_args(batch_id, events, dead, now, serving, sent)
            for (batch_id, events, dead), sent in zip(batches, sents, strict=True)
        ]
        try:
            replies = self._evalsha_all(calls)
        except redis.exceptions.NoScriptError:  # a restarted or flushed server: load, retry
            self.connection.script_load(self._apply.script)  # (applied batches are ledgered)
            replies = self._evalsha_all(calls)
        pairs = zip((batch_id for batch_id, _, _ in batches), replies, strict=True)
        return [parse_reply(batch_id, reply, serving) for batch_id, reply in pairs]

    def _evalsha_all(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The apply script's replies to ``calls`` in one round trip (plain EVALSHA: a
        pipeline given the script object would ask SCRIPT EXISTS first, another one)."""
        with self.connection.pipeline(transaction=False) as pipe:
            for keys_, args in calls:
                pipe.evalsha(self._apply.sha, len(keys_), *keys_, *args)
            return pipe.execute()

    def apply_all(
        self,
        batches: Sequence[tuple[str, Sequence[Event], Sequence[DeadLetter], float | None]],
        *,
        serving: bool = False,
    ) -> list[BatchOutcome]:
        """Apply batches ``(id, events, dead letters, sent_at)`` in order, exactly once each,
        as :meth:`apply` does one: the batches that fit one call go in one round trip."""
        outcomes: list[BatchOutcome] = []
        small: list[tuple[str, Sequence[Event], Sequence[DeadLetter]]] = []
        sent: list[float | None] = []

        def flush() -> None:
            if small:
                outcomes.extend(self.apply_many(small, serving=serving, sent_at=sent))
                small.clear()
                sent.clear()

        for batch_id, events, dead, sent_at in batches:
            if len(events) + len(dead) <= self.settings.max_call_events:
                small.append((batch_id, events, dead))
                sent.append(sent_at)
            else:
                flush()
                outcomes.append(
                    self.apply(batch_id, events, dead, serving=serving, sent_at=sent_at)
                )
        flush()
        return outcomes

    def _part_size(self, batch_id: str) -> int:
        """Events per part of an oversized batch: the size its first delivery chose."""
        key = keys.batch_split_key(batch_id)
        retention = max(1, int(self.settings.ledger_retention))
        part = self.settings.max_call_events
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.set(key, part, nx=True, ex=retention)
            pipe.get(key)
            _, chosen = pipe.execute()
        return int(chosen)

    def get(self, user: str) -> UserHistory:
        """The stored history of ``user`` (empty if unknown)."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.user_history_key(user))
            pipe.hgetall(keys.user_ratings_key(user))
            pipe.get(keys.user_version_key(user))
            pipe.zscore(keys.last_seen_key(), user)
            interactions, ratings, version, last_ts = pipe.execute()
        return UserHistory(
            user=user,
            interactions={k.decode(): float(v) for k, v in interactions.items()},
            ratings={k.decode(): float(v) for k, v in ratings.items()},
            version=int(version or 0),
            last_ts=float(last_ts) / 1000 if last_ts is not None else None,
        )

    def forget(self, user: str, extra_keys: Sequence[str] = (), *, tombstone: bool = False) -> bool:
        """Delete every key of ``user`` and its share of the popularity counts, and leave a
        tombstone (see ``lua/forget_user.lua``) when anything of the user existed.

        Args:
            user: external id.
            extra_keys: further per-user keys to delete in the same transaction.
            tombstone: leave the tombstone even if nothing of the user is stored (their
                events were found in queued jobs).

        Returns:
            True if anything of the user existed.
        """
        keys_ = [
            *keys.user_keys(user),
            keys.popularity_key(),
            keys.vocab_key("users"),
            keys.vocab_reverse_key("users"),
            keys.last_seen_key(),
            keys.forgotten_key(),
            keys.forgotten_expiry_key(),
            keys.unserved_key(),
            *extra_keys,
        ]
        args = [user, str(round(time.time() * 1000)), "1" if tombstone else "0"]
        return bool(self._forget(keys=keys_, args=args))

    def _script_args(
        self,
        batch_id: str,
        events: Sequence[Event],
        dead: Sequence[DeadLetter],
        now: float,
        serving: bool,
        sent: str,
    ) -> tuple[list[str], list[Any]]:
        users: dict[str, int] = {}
        newest: dict[str, float] = {}
        weights = self.settings.kind_weights
        rows = []
        for ev in events:
            index = users.setdefault(ev.user, len(users) + 1)
            if ev.timestamp > newest.get(ev.user, -1.0):
                newest[ev.user] = ev.timestamp
            if ev.kind == RATING_KIND:
                stamp = f"{ev.timestamp:020.6f} {ev.event_id}"
                rows.append((index, ev.item, "r", repr(ev.weight), stamp))
            else:
                value = repr(ev.weight * weights[ev.kind])
                rows.append((index, ev.item, "s", value, ""))
        keys_ = list(_GLOBAL_KEYS)
        for user in users:
            keys_ += keys.user_keys(user)
        args: list[Any] = [
            batch_id,
            str(round(now * 1000)),
            str(round((now - self.settings.ledger_retention) * 1000)),
            self.settings.dead_letter_limit,
            len(users),
            len(dead),
            "1" if serving else "0",
            _CAP,
            sent,
            *users,
            *(str(round(newest[user] * 1000)) for user in users),
            *(d.to_json() for d in dead),
            orjson.dumps(rows),
        ]
        return keys_, args


#: The most a history value holds, as the apply script receives it.
_CAP = repr(MAX_STORED_WEIGHT)
