"""Defects a new user met, each pinned where it was fixed: ``because`` naming one item twice,
the popular fallback offering a user their own items, cold users served zero scores, the
CLI's unchecked ``-k``, and warnings mixed into results (stdout is for results, stderr for
progress and warnings)."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
import redis
import scipy.sparse as sp
from click.testing import CliRunner, Result
from rq.registry import FailedJobRegistry

from streamrec import keys
from streamrec.cli import cli
from streamrec.data.synthetic import generate
from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.producer import Producer
from streamrec.serving.registry import REGISTRY
from streamrec.serving.served import ServedALS
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.client import RecommendationClient
from streamrec.state.erasure import forget_user
from streamrec.state.queues import queue
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import ItemCatalog, Vocabulary
from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS, drain

#: The warning every command prints on stderr while events wait and no worker listens.
UNATTENDED = (
    "warning: 1 batch(es) of events wait in queue 'events' and no worker listens: "
    "start one with `streamrec worker`"
)


def run(*args: str) -> Result:
    """``streamrec ARGS`` through CliRunner, stdout and stderr apart, on a wide console (so
    that rich does not wrap table cells)."""
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "250"})


def oneline(text: str) -> str:
    """``text`` with every run of whitespace (rich's line wrapping included) made one space."""
    return " ".join(text.split())


def send(settings: Settings, conn: redis.Redis, events: list[tuple[str, str, float, str]]) -> None:
    """Send (user, item, weight, kind) events as ONE batch."""
    with Producer(settings, connection=conn, linger=0, batch_size=10_000) as producer:
        for user, item, weight, kind in events:
            producer.send(user, item, weight, kind)
        assert producer.flush() is not None
        assert producer.batches_sent == 1


def popular_entry(conn: redis.Redis) -> list[tuple[str, float]]:
    raw = conn.get(keys.popular_key())
    assert raw is not None
    return [(i["item"], i["score"]) for i in orjson.loads(raw)["items"]]


# --- 1. because never names a history item twice --------------------------------------


def planted(groups: int = 4, users: int = 25, items: int = 10) -> sp.csr_matrix:
    """Users of group g play 6 of the ``items`` items of group g."""
    rng = np.random.default_rng(3)
    rows, cols = [], []
    for g in range(groups):
        for u in range(users):
            picked = rng.choice(items, size=6, replace=False) + g * items
            rows += [g * users + u] * 6
            cols += picked.tolist()
    values = np.full(len(rows), 3.0, dtype=np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(groups * users, groups * items))


@pytest.fixture(scope="module")
def als_model() -> ImplicitALS:
    return ImplicitALS(ALSParams(factors=8, iterations=10, regularization=0.1, alpha=20.0)).fit(
        planted()
    )


def test_als_because_of_a_one_item_user_solved_beside_a_longer_history_names_it_once(
    als_model: ImplicitALS,
) -> None:
    # one solve for both users, as a worker serves one batch (the padded-group code this
    # test was written for gave the one-item user's padding slots as reasons)
    rows = sp.csr_matrix(
        (np.full(4, 3.0, dtype=np.float32), ([0, 1, 1, 1], [13, 2, 5, 7])), shape=(2, 40)
    )
    systems = als_model.solve_users(rows)
    ids, _ = als_model.recommend(systems.vectors, 6, [np.array([13]), np.array([2, 5, 7])])
    assert (ids >= 0).all()
    because = als_model.because(systems, ids, n=4)  # more reasons than either user has
    assert because[0].tolist() == [[13, -1, -1, -1]] * 6  # the old code gave [13, 13, 13, 13]
    for slot, item in enumerate(ids[1]):
        hist, contrib = als_model.contributions(rows[1], np.array([item]))
        strongest = [int(hist[j]) for j in np.argsort(-contrib[:, 0])]
        assert because[1, slot].tolist() == [*strongest, -1]


def test_kmf_because_names_a_liked_item_once_beside_a_longer_history() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((40, 30)) < 0.4
    likes = (np.arange(40)[:, None] < 20) == (np.arange(30) < 15)
    values = np.where(likes, rng.integers(4, 6, mask.shape), rng.integers(1, 3, mask.shape))
    model = KernelMF(
        KernelMFParams(factors=4, epochs=30, lr=0.02, min_rating=1.0, update_epochs=30)
    ).fit(sp.csr_matrix(np.where(mask, values, 0).astype(np.float32)))
    assert 1.0 < model.global_mean < 4.0
    # user 0 likes one item (above the mean); user 1 likes three and dislikes one
    ratings = sp.csr_matrix(
        (np.array([5.0, 5.0, 5.0, 4.0, 1.0]), ([0, 1, 1, 1, 1], [3, 1, 4, 9, 20])), shape=(2, 30)
    )
    ids = np.array([[0, 2, 5, 7, 16, 25], [0, 2, 5, 7, 16, 25]])
    because = model.because(ratings, ids, n=3)
    q = model.item_factors
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    for slot, item in enumerate(ids[0]):
        alike = float(unit[3] @ unit[item]) > 0
        assert because[0, slot].tolist() == ([3, -1, -1] if alike else [-1, -1, -1])
    for slot, item in enumerate(ids[1]):
        liked = {1: 5.0, 4: 5.0, 9: 4.0}
        affinity = {
            j: (r - model.global_mean) * float(unit[j] @ unit[item]) for j, r in liked.items()
        }
        expected = [j for j in sorted(affinity, key=lambda j: -affinity[j]) if affinity[j] > 0]
        assert because[1, slot].tolist() == expected + [-1] * (3 - len(expected))
        assert 20 not in because[1, slot]  # a rating below the mean never explains


def test_online_refresh_names_a_one_item_users_item_once(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    known = sorted(Vocabulary(redis_conn, "items").all())
    plays = [item for item in known if trained[item] == 1][:5]
    solo_item = next(item for item in known if trained[item] == 2)
    events = [("solo", solo_item, 3.0, "play")] + [("multi", item, 2.0, "play") for item in plays]
    send(settings, redis_conn, events)  # one batch: one refresh solves both users together
    drain(redis_conn, settings)
    client = RecommendationClient(connection=redis_conn)
    solo, multi = client.get("solo"), client.get("multi")
    assert solo is not None and solo.personal and len(solo.items) == settings.top_k
    assert [rec.because for rec in solo.items] == [(solo_item,)] * settings.top_k
    assert multi is not None and multi.personal and len(multi.items) == settings.top_k
    for rec in multi.items:
        assert len(rec.because) == 2 and len(set(rec.because)) == 2
        assert set(rec.because) <= set(plays)


# --- 2 and 3. the fallback: popular items minus the user's own; cold users get it --------

#: Who has which item: popularity a 7 > b 6 > c 5 > d 4 > e 3 > f 2 > g 1 distinct users.
HOLDERS = {
    "pop-a": ["owner", "u0", "u1", "u2", "u3", "u4", "u5"],
    "pop-b": ["u0", "u1", "u2", "u3", "u4", "u5"],
    "pop-c": ["owner", "u0", "u1", "u2", "u3"],
    "pop-d": ["u0", "u1", "u2", "u3"],
    "pop-e": ["u0", "u1", "u2"],
    "pop-f": ["owner", "u0"],
    "pop-g": ["u0"],
}


def test_without_a_model_the_popular_list_leaves_out_the_users_own_items(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    events = [
        (user, item, 4.0, "rating" if (user, item) == ("owner", "pop-f") else "play")
        for item, users in HOLDERS.items()
        for user in users
    ]
    send(settings, redis_conn, events)
    drain(redis_conn, settings)
    assert ModelRegistry(redis_conn, settings).active_versions(list(REGISTRY)) == [None] * len(
        REGISTRY
    )
    assert popular_entry(redis_conn) == [
        ("pop-a", 7), ("pop-b", 6), ("pop-c", 5), ("pop-d", 4), ("pop-e", 3), ("pop-f", 2),
        ("pop-g", 1),
    ]  # fmt: skip
    for model in REGISTRY:
        client = RecommendationClient(connection=redis_conn, model=model)
        found = client.get("owner")  # played pop-a and pop-c, rated pop-f
        assert found is not None and not found.personal
        assert (found.user, found.model, found.version, found.history_version) == (
            "owner", "popular", 0, 0,
        )  # fmt: skip
        assert [(r.item, r.score) for r in found.items] == [
            ("pop-b", 6), ("pop-d", 4), ("pop-e", 3), ("pop-g", 1),
        ]  # fmt: skip
        top = client.get("owner", 2)  # k counts after the user's items are taken out
        assert top is not None and [r.item for r in top.items] == ["pop-b", "pop-d"]
        many = client.get_many(["u0", "owner", "nobody"], 3)
        assert {u: [r.item for r in got.items] if got else None for u, got in many.items()} == {
            "u0": [],  # u0 has every item
            "owner": ["pop-b", "pop-d", "pop-e"],
            "nobody": ["pop-a", "pop-b", "pop-c"],
        }


def test_a_user_whose_items_the_model_does_not_know_gets_popular_items_minus_their_own(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    send(
        settings,
        redis_conn,
        [("stranger", "novel-1", 5.0, "play"), ("stranger", "novel-2", 1.0, "play")],
    )
    drain(redis_conn, settings)
    assert redis_conn.get(keys.recommendations_key("stranger", "als")) is None
    popular = [item for item, _ in popular_entry(redis_conn)]
    assert {"novel-1", "novel-2"} <= set(popular)  # the worker counted them
    found = RecommendationClient(connection=redis_conn).get("stranger", 200)
    assert found is not None and not found.personal and found.model == "popular"
    assert [r.item for r in found.items] == [i for i in popular if not i.startswith("novel-")]


def test_a_cold_user_reads_the_fallback_not_a_list_of_zero_scores(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    # an item the vocabulary knows but the next model never trains on: its only user is
    # forgotten before the retrain, so its factors are zero
    send(settings, redis_conn, [("pioneer", "fresh-item", 3.0, "play")])
    drain(redis_conn, settings)
    assert forget_user(redis_conn, settings, "pioneer", list(REGISTRY)).found
    assert train_als(redis_conn, settings, ALS_PARAMS).version == 2
    model = ServedALS(redis_conn, settings).current()
    fresh = Vocabulary(redis_conn, "items").id_of("fresh-item")
    assert model is not None and fresh is not None and fresh < model.n_items
    assert not model.item_factors[fresh].any()
    warm_items = [item for item, g in sorted(trained.items()) if g == 3][:4]
    events = [("cold", "fresh-item", 3.0, "play")]
    events += [("warm", item, 3.0, "play") for item in warm_items]
    send(settings, redis_conn, events)  # served in one refresh: one placed, one not
    drain(redis_conn, settings)
    assert redis_conn.get(keys.recommendations_key("cold", "als")) is None
    cold = RecommendationClient(connection=redis_conn).get("cold", 10)
    assert cold is not None and not cold.personal and cold.model == "popular"
    expected = [item for item, _ in popular_entry(redis_conn) if item != "fresh-item"][:10]
    assert [r.item for r in cold.items] == expected
    warm = RecommendationClient(connection=redis_conn).get("warm", 10)
    assert warm is not None and warm.personal and warm.version == 2
    assert all(r.score != 0 for r in warm.items)
    send(settings, redis_conn, [("alone", "fresh-item", 3.0, "play")])  # a refresh of nobody
    drain(redis_conn, settings)
    assert len(FailedJobRegistry(queue=queue(redis_conn))) == 0
    alone = RecommendationClient(connection=redis_conn).get("alone", 10)
    assert alone is not None and not alone.personal
    assert redis_conn.get(keys.user_version_key("alone")) == b"1"


# --- 4. the command line refuses what it cannot do, saying why ---------------------------


@pytest.mark.parametrize("k", ["-3", "0"])
def test_recommend_refuses_a_k_below_one(redis_conn: redis.Redis, k: str) -> None:
    result = run("recommend", "alice", "-k", k)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"Invalid value for '-k': {k} is not in the range x>=1." in result.stderr


def test_recommend_refuses_a_k_beyond_the_cached_lists(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    result = run("recommend", "alice", "-k", "500")
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        f"Invalid value for -k: lists hold {settings.top_k} items (STREAMREC_TOP_K); got 500"
        in result.stderr
    )
    assert run("recommend", "alice", "-k", str(settings.top_k)).exit_code == 4  # allowed: no list


def test_recommend_names_the_registry_models_for_an_unknown_model(redis_conn: redis.Redis) -> None:
    result = run("recommend", "alice", "--model", "nope")
    assert result.exit_code == 2 and result.stdout == ""
    choices = ", ".join(repr(name) for name in REGISTRY)
    assert f"Invalid value for '--model': 'nope' is not one of {choices}." in result.stderr


def test_worker_refuses_an_unknown_queue(redis_conn: redis.Redis) -> None:
    result = run("worker", "--queue", "nope", "--burst")
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        f"Invalid value for --queue: nope (queues are {', '.join(keys.ALL_QUEUES)})"
        in result.stderr
    )


def test_train_als_with_no_data_fails_and_publishes_nothing(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    result = run("train", "als")
    assert result.exit_code == 4 and result.stdout == ""
    assert "Error: no interactions are stored: import or push some events first" in result.stderr
    assert ModelRegistry(redis_conn, settings).active_version("als") is None
    assert redis_conn.zcard(keys.model_versions_key("als")) == 0
    assert redis_conn.get(keys.model_counter_key("als")) is None
    folder = settings.home / "models" / "als"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["similar", "item-1", "-k", "0"], "-k"),
        (["similar", "item-1", "-k", "-2"], "-k"),
        (["explain", "alice", "item-1", "-n", "0"], "-n"),
        (["explain", "alice", "item-1", "-n", "-1"], "-n"),
    ],
)
def test_similar_and_explain_refuse_counts_below_one(
    redis_conn: redis.Redis, args: list[str], option: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"Invalid value for '{option}': {args[-1]} is not in the range x>=1." in result.stderr


# --- 5 and 6. results on stdout; progress and warnings on stderr -------------------------


def test_push_prints_what_it_queued_on_stdout_and_warns_on_stderr(
    redis_conn: redis.Redis,
) -> None:
    result = run("push", "alice", "song-1", "--weight", "3")
    assert result.exit_code == 0
    shown = re.fullmatch(
        r"queued event ([0-9a-f]{32}) in batch ([0-9a-f]{32})", oneline(result.stdout)
    )
    assert shown is not None, result.stdout
    job = queue(redis_conn).jobs[0]
    batch_id, events = job.args
    assert batch_id == shown[2] and [e["event_id"] for e in events] == [shown[1]]
    assert oneline(result.stderr) == UNATTENDED


def test_status_keeps_its_json_clean_and_warns_only_while_events_wait_unattended(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    assert run("push", "alice", "song-1").exit_code == 0
    for args in (["status", "--json"], ["status"]):
        result = run(*args)
        assert result.exit_code == 0 and oneline(result.stderr) == UNATTENDED
        assert "warning" not in result.stdout
    snapshot = json.loads(run("status", "--json").stdout)
    assert {q["name"]: q["queued"] for q in snapshot["queues"]}["events"] == 1
    drain(redis_conn, settings)
    result = run("status", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["state"]["events_applied"] == 1


def test_recommend_warns_on_stderr_when_the_users_events_wait_unattended(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(ALS_CONFIG).users()[0]
    quiet = run("recommend", user, "-k", "3")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert run("push", user, sorted(trained)[0]).exit_code == 0
    for args in ([], ["--json"]):
        result = run("recommend", user, "-k", "3", *args)
        assert result.exit_code == 0 and oneline(result.stderr) == UNATTENDED
        assert "warning" not in result.stdout
    assert json.loads(run("recommend", user, "-k", "3", "--json").stdout)["user"] == user


def test_recommend_does_not_call_a_list_up_to_date_while_the_users_events_wait(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(ALS_CONFIG).users()[0]
    before = json.loads(run("recommend", user, "--json").stdout)["freshness"]
    assert before["up_to_date"] and before["events_waiting"] == 0
    assert run("push", user, sorted(trained)[0]).exit_code == 0
    assert run("push", "someone-else", sorted(trained)[0]).exit_code == 0
    fresh = json.loads(run("recommend", user, "--json").stdout)["freshness"]
    assert not fresh["up_to_date"] and fresh["events_waiting"] == 1
    shown = oneline(run("recommend", user).stdout)
    assert "up to date" not in shown
    assert "events of the user wait in the queue, not applied yet: 1" in shown
    drain(redis_conn, settings)
    fresh = json.loads(run("recommend", user, "--json").stdout)["freshness"]
    assert fresh["up_to_date"] and fresh["events_waiting"] == 0


def test_a_result_line_piped_to_a_script_stays_one_line(redis_conn: redis.Redis) -> None:
    user, item = "u" * 70, "i" * 70
    result = CliRunner().invoke(cli, ["push", user, item], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("queued event ")


def test_train_prints_progress_on_stderr_and_the_result_on_stdout(
    redis_conn: redis.Redis, trained: dict[str, int]
) -> None:
    result = run("train", "als", "--factors", "4", "--iterations", "2")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"als version 2: 150 users, \d+ items, [\d,]+ interactions; fit \d+\.\d s, "
        r"150 lists refreshed in \d+\.\d s",
        oneline(result.stdout),
    ), result.stdout
    assert "training als, then refreshing caches" in result.stderr


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ([], "events"),
        (["-q", "training"], "training"),
        (["-q", "events", "-q", "training"], "events, training"),
    ],
)
def test_worker_says_which_queues_it_listens_to(
    redis_conn: redis.Redis, args: list[str], shown: str
) -> None:
    result = run("worker", "--burst", *args)
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"streamrec worker: 1 process(es) on queue(s) {shown}\n"


# --- 7. names for humans -----------------------------------------------------------------


def test_names_reach_the_client_the_table_and_the_json(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    user = generate(ALS_CONFIG).users()[0]
    plain = RecommendationClient(connection=redis_conn).get(user, 3)
    assert plain is not None and plain.personal
    assert all(r.name is None and r.because_names == () for r in plain.items)
    nameless = plain.items[0].because[0]  # one history item without a name shows its id
    names = {
        item: f"Film #{int(item.rsplit('-', 1)[1])}"
        for item in Vocabulary(redis_conn, "items").all()
        if item != nameless
    }
    ItemCatalog(redis_conn).set_names(names)

    found = RecommendationClient(connection=redis_conn).get(user, 3, names=True)
    assert found is not None and [r.item for r in found.items] == [r.item for r in plain.items]
    for rec in found.items:
        assert rec.name == names[rec.item]
        assert rec.because_names == tuple(names.get(b, b) for b in rec.because)
    assert found.items[0].because_names[0] == nameless

    shown = json.loads(run("recommend", user, "-k", "3", "--json").stdout)
    assert [(i["item"], i["name"], i["because_names"]) for i in shown["items"]] == [
        (r.item, r.name, list(r.because_names)) for r in found.items
    ]
    table = run("recommend", user, "-k", "3")
    assert table.exit_code == 0
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3
    for line, rec in zip(rows, found.items, strict=True):
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert cells == [rec.item, rec.name, f"{rec.score:.3f}", ", ".join(rec.because_names)]
