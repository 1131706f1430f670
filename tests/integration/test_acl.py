"""README's read-only ACL line for apps, on a real ``redis-server`` started with it.

An admin user writes the state through the real code (bulk import, an ALS retrain that
publishes every user's list and the popular entry); the app user, through the real
``RecommendationClient`` and a ``redis://app:…@`` URL, reads lists, the popular fallback and
display names, and every other command it tries is refused with ``NOPERM``. The line is
taken from README.md, so the documented line is the tested one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from streamrec import keys
from streamrec.data.synthetic import generate
from streamrec.serving.training import train_als
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader
from streamrec.state.client import RecommendationClient
from streamrec.state.connection import connect
from streamrec.state.vocab import ItemCatalog
from tests.integration.helpers import ALS_CONFIG, ALS_PARAMS
from tests.integration.system_redis import binaries, free_port, redis_server

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_app_line(password: str) -> str:
    found = re.search(r"^user app on .*$", README.read_text(), flags=re.M)
    assert found, "README.md has no `user app on ...` ACL line"
    return re.sub(r">\S+", f">{password}", found.group(0))


@dataclass
class Deployment:
    admin: redis.Redis
    app: RecommendationClient
    users: list[str]


@pytest.fixture(scope="module", params=binaries())
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("acl")
    admin_password, app_password = secrets.token_hex(16), secrets.token_hex(16)
    acl = folder / "users.acl"
    acl.write_text(
        "user default off\n"
        f"user admin on >{admin_password} ~* &* +@all\n"
        f"{readme_app_line(app_password)}\n"
    )
    port = free_port()
    with redis_server(request.param, folder, port, "--port", str(port), "--aclfile", str(acl)):
        admin_settings = Settings(
            redis_url=f"redis://admin:{admin_password}@127.0.0.1:{port}/0", home=folder / "home"
        )
        admin = connect(admin_settings)
        data = generate(ALS_CONFIG)
        BulkLoader(admin, admin_settings).load_events(data.events, "synthetic")
        ItemCatalog(admin).set_names(data.item_names)
        assert train_als(admin, admin_settings, ALS_PARAMS).refreshed == ALS_CONFIG.n_users
        app = RecommendationClient(
            Settings(redis_url=f"redis://app:{app_password}@127.0.0.1:{port}/0"), model="als"
        )
        yield Deployment(admin, app, sorted(data.user_group))
        app.connection.close()
        admin.close()


def test_the_app_user_reads_lists_the_popular_fallback_and_names(deployment: Deployment) -> None:
    alice, bob, carol = deployment.users[:3]
    recs = deployment.app.get(alice, 10, names=True)
    assert recs is not None and recs.personal and len(recs.items) == 10
    assert all(rec.name for rec in recs.items)
    both = deployment.app.get_many([alice, bob], 5)
    assert all(r is not None and r.personal for r in both.values())

    # carol without her list: the popular items minus her own (HKEYS of her history)
    deployment.admin.delete(keys.recommendations_key(carol, "als"))
    fallback = deployment.app.get(carol, 10)
    own = {i.decode() for i in deployment.admin.hkeys(keys.user_history_key(carol))}
    assert fallback is not None and not fallback.personal and fallback.items
    assert own and not own & {rec.item for rec in fallback.items}
    stranger = deployment.app.get("nobody-knows-me", 10)
    assert stranger is not None and stranger.model == "popular"


def test_the_app_user_can_do_nothing_else(deployment: Deployment) -> None:
    user = deployment.users[0]
    cached = keys.recommendations_key(user, "als")
    history = keys.user_history_key(user)
    before = deployment.admin.get(cached)
    attempts: list[tuple[object, ...]] = [
        ("SET", cached, "{}"),
        ("APPEND", cached, "x"),
        ("DEL", cached),
        ("UNLINK", cached),
        ("EXPIRE", cached, 1),
        ("RENAME", cached, "streamrec:recs:{x}:als"),
        ("KEYS", "*"),
        ("SCAN", 0),
        ("GET", keys.user_version_key(user)),
        ("GET", keys.model_active_key("als")),
        ("MGET", cached, keys.user_version_key(user)),
        ("HGETALL", history),
        ("HSET", history, "item", 1),
        ("HGETALL", keys.stats_key()),
        ("ZRANGE", keys.popularity_key(), 0, -1),
        ("LRANGE", "rq:queue:events", 0, -1),
        ("LPUSH", "rq:queue:events", "job"),
        ("PUBLISH", "rq:pubsub:x", "x"),
        ("EVAL", "return 1", 0),
        ("SCRIPT", "FLUSH"),
        ("TIME",),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("ACL", "LIST"),
        ("CLIENT", "LIST"),
        ("INFO",),
        ("MONITOR",),
        ("FLUSHDB",),
        ("FLUSHALL",),
        ("SHUTDOWN", "NOSAVE"),
    ]
    if int(str(deployment.admin.info("server")["redis_version"]).split(".")[0]) >= 7:
        attempts.append(("FUNCTION", "LIST"))
    allowed = []
    for attempt in attempts:
        try:
            deployment.app.connection.execute_command(*attempt)
        except NoPermissionError:
            continue
        allowed.append(attempt)
    assert not allowed, f"the app user may run {allowed}"
    assert deployment.admin.get(cached) == before
