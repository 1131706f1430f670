"""``streamrec demo``: the whole pipeline on generated data, on the embedded Redis."""

from __future__ import annotations

import os
import time

import click
import redis
from rich.table import Table
from rq import Worker

from streamrec import keys
from streamrec.cli.context import AppContext, pass_app
from streamrec.cli.ingest import progress_bar
from streamrec.cli.operate import status
from streamrec.data.synthetic import SyntheticConfig, generate
from streamrec.producer import Producer
from streamrec.serving.training import train_als, train_kmf
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.histories import HistoryStore
from streamrec.state.stats import read_counts
from streamrec.state.vocab import ItemCatalog
from streamrec.worker.processes import spawn_workers, stop_workers


@click.command()
@click.option("--users", type=int, default=500, show_default=True, help="Synthetic users.")
@click.option("--items", type=int, default=400, show_default=True, help="Synthetic items.")
@click.option(
    "--live-users", type=int, default=25, show_default=True, help="Users who arrive live."
)
@click.option(
    "--rate", type=float, default=400.0, show_default=True, help="Live events per second."
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--reset", is_flag=True, help="Delete all streamrec state and queued jobs first.")
@pass_app
def demo(
    app: AppContext, users: int, items: int, live_users: int, rate: float, seed: int, reset: bool
) -> None:
    """Generate data, import its history, train ALS, then replay live events through producer
    and worker while a newcomer's recommendations follow their plays; then the same for
    ratings and KernelMF."""
    conn = app.connection
    if reset:
        _reset(conn)
    elif conn.exists(keys.vocab_key("users")):
        raise click.ClickException(
            "this Redis already holds streamrec state; run `streamrec demo --reset` to wipe it "
            "(or point STREAMREC_HOME / STREAMREC_REDIS_URL elsewhere)"
        )
    data = generate(SyntheticConfig(n_users=users, n_items=items, seed=seed))
    newcomers = set(data.users()[-live_users:]) if live_users else set()
    cutoff = data.events[int(len(data.events) * 0.9)].timestamp
    history = [e for e in data.events if e.user not in newcomers and e.timestamp < cutoff]
    live = [e for e in data.events if e.user in newcomers or e.timestamp >= cutoff]
    app.console.rule("1. history: bulk import")
    ItemCatalog(conn).set_names(data.item_names)
    with progress_bar(app) as bar:
        task = bar.add_task("importing history", total=len(history))
        report = BulkLoader(conn, app.settings).load_events(
            history, f"demo-{seed}", progress=lambda n: bar.advance(task, n)
        )
    app.console.print(
        f"{report.events:,} events from {users - len(newcomers)} users ({report.rate:,.0f}/s)"
    )

    app.console.rule("2. train ALS on the history")
    trained = train_als(conn, app.settings)
    app.console.print(
        f"als v{trained.version}: fit {trained.fit_seconds:.1f} s, {trained.refreshed} "
        f"cached lists written in {trained.refresh_seconds:.1f} s"
    )

    app.console.rule(f"3. live: {len(live):,} events at {rate:g}/s through producer → RQ → worker")
    watched = next((e.user for e in live if e.user in newcomers), data.users()[0])
    client = RecommendationClient(app.settings, connection=conn)
    queues = keys.events_queues(app.settings.event_shards)
    workers = spawn_workers(1, queues, app.settings, environ=os.environ)
    try:
        _wait_for_worker(conn)
        target = read_counts(conn).events_applied + len(live)
        plays = 0
        start = time.monotonic()
        with Producer(app.settings, connection=conn) as producer:
            for n, e in enumerate(live, 1):
                producer.send(e.user, e.item, e.weight, e.kind, e.timestamp, e.event_id)
                if e.user == watched and plays < 5:
                    plays += 1
                    producer.flush()
                    shown = f"plays [bold]{data.item_names.get(e.item, e.item)}[/] (play {plays})"
                    _show_fresh_list(app, client, watched, plays, shown, data.item_names)
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        _wait_applied(conn, target)
        lag = time.monotonic() - start - len(live) / rate
        app.console.print(
            f"every live event applied; the worker finished {max(lag, 0):.2f} s after the last send"
        )
        _show_user(app, watched)
        _ratings(app, users, items, seed, newcomers)
        app.console.rule("5. status")
        click.get_current_context().invoke(status)
    finally:
        stop_workers(workers)


def _ratings(app: AppContext, users: int, items: int, seed: int, newcomers: set[str]) -> None:
    """Import the same people's ratings, train KernelMF, then follow a new critic's list."""
    app.console.rule("4. ratings: KernelMF learns from them, and from a new critic live")
    data = generate(SyntheticConfig(n_users=users, n_items=items, seed=seed, kind="rating"))
    history = [e for e in data.events if e.user not in newcomers]
    report = BulkLoader(app.connection, app.settings).load_events(history, f"demo-ratings-{seed}")
    trained = train_kmf(app.connection, app.settings)
    app.console.print(
        f"{report.events:,} ratings imported; kmf v{trained.version}: fit "
        f"{trained.fit_seconds:.1f} s, {trained.refreshed} cached lists written"
    )
    groups = data.item_group
    loved = [i for i in sorted(groups) if groups[i] == 1][:3]
    disliked = [i for i in sorted(groups) if groups[i] == 2][:1]
    client = RecommendationClient(app.settings, connection=app.connection, model="kmf")
    with Producer(app.settings, connection=app.connection) as producer:
        for n, (item, stars) in enumerate([(i, 5) for i in loved] + [(i, 1) for i in disliked]):
            producer.send("critic", item, stars, "rating")
            producer.flush()
            shown = f"rates [bold]{data.item_names.get(item, item)}[/] {stars}★"
            _show_fresh_list(app, client, "critic", n + 1, shown, data.item_names)
    found = client.get("critic", 5, names=True)
    if found is not None:
        table = Table("item", "name", "predicted rating", "because", title="critic: kmf list")
        for rec in found.items:
            because = ", ".join(rec.because_names)
            table.add_row(rec.item, rec.name or "", f"{rec.score:.2f}", because)
        app.console.print(table)


def _show_fresh_list(
    app: AppContext,
    client: RecommendationClient,
    user: str,
    version: int,
    did: str,
    names: dict[str, str],
) -> None:
    """Wait for the user's list to reflect their history ``version`` and print its top 5."""
    sent = time.monotonic()
    found = client.get(user, 5)
    while (found is None or not found.personal or found.history_version < version) and (
        time.monotonic() - sent < 5
    ):
        time.sleep(0.002)
        found = client.get(user, 5)
    waited = (time.monotonic() - sent) * 1000
    top = ", ".join(names.get(rec.item, rec.item) for rec in found.items) if found else "-"
    app.console.print(f"{user} {did} → list visible after {waited:.0f} ms: {top}")


def _wait_for_worker(conn: redis.Redis, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while Worker.count(connection=conn) < 1:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the worker did not start within {timeout:.0f} s")
        time.sleep(0.05)


def _wait_applied(conn: redis.Redis, target: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (applied := read_counts(conn).events_applied) < target:
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"only {applied} of {target} events were applied within {timeout:.0f} s; "
                "see `streamrec status` and `streamrec dead-letters`"
            )
        time.sleep(0.02)


def _show_user(app: AppContext, user: str) -> None:
    history = HistoryStore(app.connection, app.settings).get(user)
    names = ItemCatalog(app.connection).names(sorted(history.items))
    table = Table("item", "name", "weight", title=f"{user}: history version {history.version}")
    top = sorted(history.interactions.items(), key=lambda kv: -kv[1])[:10]
    for item, weight in top:
        table.add_row(item, names.get(item, ""), f"{weight:g}")
    app.console.print(table)


def _reset(conn: redis.Redis) -> None:
    for pattern in (f"{keys.PREFIX}:*", "rq:*"):
        batch = []
        for key in conn.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                conn.delete(*batch)
                batch = []
        if batch:
            conn.delete(*batch)
