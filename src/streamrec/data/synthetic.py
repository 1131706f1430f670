"""A deterministic synthetic interaction generator with planted structure.

Users belong to taste groups; every item belongs to one group; item popularity follows a
power law. Each event picks, with probability ``in_group``, an item of the user's own group
(popularity-weighted), otherwise any item (popularity-weighted). A model that learns
anything should therefore recommend a user items of their group; tests and the demo rely
on that. Same ``seed``, same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamrec.events import Event

_NAME_PARTS = (
    "Velvet", "Neon", "Quiet", "Iron", "Golden", "Paper", "Electric", "Hollow", "Crimson",
    "Silver", "Wild", "Broken", "Lunar", "Static", "Amber", "Glass",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the generated data.

    Attributes:
        n_users: users.
        n_items: items.
        n_groups: taste groups (users and items are spread evenly over them).
        events_per_user: mean events per user (Poisson, at least 3).
        in_group: probability that an event picks an item of the user's group.
        popularity_exponent: Zipf exponent of item popularity.
        kind: ``play`` (weights are play counts) or ``rating`` (high for in-group items).
        start: epoch seconds of the first event.
        span: seconds covered by the events.
        seed: random seed.
    """

    n_users: int = 500
    n_items: int = 400
    n_groups: int = 8
    events_per_user: float = 20.0
    in_group: float = 0.8
    popularity_exponent: float = 1.0
    kind: str = "play"
    start: float = 1_700_000_000.0
    span: float = 30 * 86_400.0
    seed: int = 42


@dataclass(frozen=True)
class SyntheticData:
    """Generated events (sorted by time) and the planted truth.

    Attributes:
        events: the events, oldest first.
        item_names: item id -> display name.
        user_group: user id -> group index.
        item_group: item id -> group index.
    """

    events: list[Event]
    item_names: dict[str, str]
    user_group: dict[str, int] = field(repr=False)
    item_group: dict[str, int] = field(repr=False)

    def users(self) -> list[str]:
        """User ids in order of first appearance."""
        return list(dict.fromkeys(e.user for e in self.events))


def user_id(index: int) -> str:
    """External id of synthetic user ``index``."""
    return f"user-{index:05d}"


def item_id(index: int) -> str:
    """External id of synthetic item ``index``."""
    return f"item-{index:05d}"


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    """Generate a data set; identical for identical configs."""
    cfg = config or SyntheticConfig()
    if cfg.kind not in ("play", "rating"):
        raise ValueError(f"kind must be 'play' or 'rating' (got {cfg.kind!r})")
    rng = np.random.default_rng(cfg.seed)
    item_groups = np.arange(cfg.n_items) % cfg.n_groups
    ranks = rng.permutation(cfg.n_items) + 1
    popularity = 1.0 / ranks**cfg.popularity_exponent
    overall = popularity / popularity.sum()
    by_group = []
    for g in range(cfg.n_groups):
        members = np.flatnonzero(item_groups == g)
        by_group.append((members, popularity[members] / popularity[members].sum()))

    rows: list[tuple[float, int, int, float]] = []
    user_groups = rng.integers(0, cfg.n_groups, size=cfg.n_users)
    for u in range(cfg.n_users):
        n = max(3, int(rng.poisson(cfg.events_per_user)))
        members, weights = by_group[user_groups[u]]
        own = rng.random(n) < cfg.in_group
        picks = np.where(
            own,
            rng.choice(members, size=n, p=weights),
            rng.choice(cfg.n_items, size=n, p=overall),
        )
        times = cfg.start + np.sort(rng.random(n)) * cfg.span
        in_group = item_groups[picks] == user_groups[u]
        if cfg.kind == "rating":
            values = np.where(in_group, rng.integers(4, 6, size=n), rng.integers(1, 4, size=n))
        else:
            values = 1 + rng.geometric(0.5, size=n) * np.where(in_group, 2, 1)
        rows += zip(
            times.tolist(), [u] * n, picks.tolist(), values.astype(float).tolist(), strict=True
        )

    rows.sort()
    events = [
        Event(user_id(u), item_id(i), w, cfg.kind, round(ts, 3), f"syn-{cfg.seed}-{n}")
        for n, (ts, u, i, w) in enumerate(rows)
    ]
    parts = len(_NAME_PARTS)
    names = {
        item_id(i): f"{_NAME_PARTS[i % parts]} {_NAME_PARTS[(i // parts) % parts]} #{i}"
        for i in range(cfg.n_items)
    }
    return SyntheticData(
        events=events,
        item_names=names,
        user_group={user_id(u): int(g) for u, g in enumerate(user_groups)},
        item_group={item_id(i): int(g) for i, g in enumerate(item_groups)},
    )
