from __future__ import annotations

from pathlib import Path

import pytest

from streamrec import keys
from streamrec.errors import ConfigError
from streamrec.settings import Settings, parse_kind_weights
from streamrec.state.connection import connect


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "STREAMREC_REDIS_URL": "rediss://app:secret@redis.example:6380/2",
            "STREAMREC_HOME": str(tmp_path),
            "STREAMREC_BATCH_SIZE": "64",
            "STREAMREC_LINGER": "0.2",
            "STREAMREC_KIND_WEIGHTS": "play=1, like=3",
            "STREAMREC_RATING_MIN": "1",
            "STREAMREC_RATING_MAX": "10",
        }
    )
    assert settings.redis_url == "rediss://app:secret@redis.example:6380/2"
    assert settings.home == tmp_path and settings.redis_dir == tmp_path / "redis"
    assert (settings.batch_size, settings.linger) == (64, 0.2)
    assert settings.kinds == {"play", "like", "rating"}
    assert (settings.rating_min, settings.rating_max) == (1.0, 10.0)


def test_unset_redis_url_means_embedded() -> None:
    assert Settings.from_env({}).redis_url is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_REDIS_URL": "http://x"}, "must start with redis://"),
        ({"STREAMREC_BATCH_SIZE": "lots"}, "STREAMREC_BATCH_SIZE must be a int"),
        ({"STREAMREC_BATCH_SIZE": "0"}, "batch_size must be between 1"),
        ({"STREAMREC_KIND_WEIGHTS": "play"}, "kind=weight"),
        ({"STREAMREC_KIND_WEIGHTS": "play=-1"}, "must be a number > 0"),
        ({"STREAMREC_KIND_WEIGHTS": "rating=2"}, "built in"),
        ({"STREAMREC_RATING_MIN": "5", "STREAMREC_RATING_MAX": "1"}, "below rating_max"),
    ],
)
def test_bad_settings_name_the_variable_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_parse_kind_weights() -> None:
    assert parse_kind_weights("a=1,b=0.5,") == {"a": 1.0, "b": 0.5}


def test_per_user_keys_share_a_cluster_hash_tag() -> None:
    tags = {key.split("{")[1].split("}")[0] for key in keys.user_keys("alice")}
    assert tags == {"alice"}
    assert all(k.startswith(f"{keys.PREFIX}:") for k in keys.user_keys("alice"))


def test_to_env_rebuilds_the_same_settings(tmp_path: Path) -> None:
    settings = Settings(
        redis_url="redis://u:pw@h:1/0",
        home=tmp_path,
        batch_size=7,
        linger=0.125,
        kind_weights={"play": 1.0, "like": 2.5},
        max_call_events=250,
        worker_ttl=11,
        delivery_timeout=3.5,
        metrics_port=9108,
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_a_bad_url_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"STREAMREC_REDIS_URL": "http://app:hunter2@redis.example:6379"})
    assert "hunter2" not in str(caught.value)
    assert "app:***@redis.example" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_MAX_CALL_EVENTS": "1000000"}, "max_call_events must be between"),
        ({"STREAMREC_BATCH_SIZE": "1000000"}, "batch_size must be between 1 and 10000"),
        ({"STREAMREC_SOCKET_TIMEOUT": "nan"}, "socket_timeout must be a finite"),
        ({"STREAMREC_WORKER_TTL": "1"}, "worker_ttl must be ≥ 5"),
        ({"STREAMREC_MAX_WEIGHT": "inf"}, "max_weight must be a number"),
        ({"STREAMREC_RATING_MAX": "inf"}, "rating scale must be finite"),
        ({"STREAMREC_METRICS_PORT": "70000"}, r"metrics_port must be 0 \(none\) to 65535"),
        ({"STREAMREC_METRICS_PORT": "http"}, "STREAMREC_METRICS_PORT must be a int"),
    ],
)
def test_limits_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_child_gets_exactly_the_parents_settings(tmp_path: Path) -> None:
    parent = {"PATH": "/bin", "STREAMREC_REDIS_URL": "redis://elsewhere:6379/0"}
    env = Settings(home=tmp_path).child_env(parent)
    assert env["PATH"] == "/bin" and "STREAMREC_REDIS_URL" not in env
    assert Settings.from_env(env) == Settings(home=tmp_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_RERANK": "kmf"}, r"rerank must be one of gmf or unset \(got 'kmf'\)"),
        ({"STREAMREC_RERANK_CANDIDATES": "0"}, r"rerank_candidates must be ≥ 1 \(got 0\)"),
        (
            {"STREAMREC_RERANK": "gmf", "STREAMREC_RERANK_CANDIDATES": "10"},
            r"rerank_candidates must be ≥ top_k \(20\) when rerank is set \(got 10\)",
        ),
        ({"STREAMREC_RERANK_CANDIDATES": "many"}, "STREAMREC_RERANK_CANDIDATES must be a int"),
        ({"STREAMREC_RERANK_DISCOUNT": "-0.5"}, r"rerank_discount must be .* ≥ 0 \(got -0.5\)"),
        ({"STREAMREC_RERANK_DISCOUNT": "inf"}, r"rerank_discount must be a finite .*\(got inf\)"),
    ],
)
def test_rerank_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_rerank_is_off_by_default_and_travels_to_children(tmp_path: Path) -> None:
    assert Settings().rerank is None and Settings.from_env({"STREAMREC_RERANK": " "}).rerank is None
    settings = Settings.from_env(
        {
            "STREAMREC_HOME": str(tmp_path),
            "STREAMREC_RERANK": "gmf",
            "STREAMREC_RERANK_CANDIDATES": "50",
            "STREAMREC_RERANK_DISCOUNT": "0.5",
        }
    )
    assert (settings.rerank, settings.rerank_candidates, settings.rerank_discount) == (
        "gmf",
        50,
        0.5,
    )
    assert Settings.from_env(settings.child_env({"PATH": "/bin"})) == settings
    # a list shorter than the cached ones is fine while nothing re-ranks
    assert Settings(rerank_candidates=5).rerank_candidates == 5


def test_the_redis_ca_certs_travel_to_children(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = Settings.from_env(
        {
            "STREAMREC_REDIS_URL": "rediss://redis.example:6380/0",
            "STREAMREC_REDIS_CA_CERTS": str(ca),
        }
    )
    assert settings.redis_ca_certs == ca
    assert Settings.from_env(settings.child_env({})) == settings
    assert Settings.from_env({"STREAMREC_REDIS_CA_CERTS": " "}).redis_ca_certs is None
    assert "STREAMREC_REDIS_CA_CERTS" not in Settings().to_env()


@pytest.mark.parametrize(
    ("url", "exists", "message"),
    [
        ("redis://:secret@redis.example:6379/0", True, r"needs a rediss:// .*redis://:\*\*\*@"),
        ("rediss://redis.example:6380/0", False, "must name a PEM file"),
    ],
)
def test_redis_ca_certs_need_tls_and_a_file(
    tmp_path: Path, url: str, exists: bool, message: str
) -> None:
    ca = tmp_path / "ca.pem"
    if exists:
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
    # refused before any connection is tried (redis.example is never resolved)
    with pytest.raises(ConfigError, match=message):
        connect(Settings(redis_url=url, redis_ca_certs=ca))


def test_drift_checks_are_off_by_default_and_read_per_model() -> None:
    default = Settings.from_env({})
    assert dict(default.drift_every) == {}
    assert (default.drift_threshold, default.drift_users) == (0.5, 200)
    settings = Settings.from_env(
        {
            "STREAMREC_DRIFT_EVERY": "als=600,*=3600",
            "STREAMREC_DRIFT_THRESHOLD": "0.3",
            "STREAMREC_DRIFT_USERS": "50",
        }
    )
    assert dict(settings.drift_every) == {"als": 600.0, "*": 3600.0}
    assert (settings.drift_threshold, settings.drift_users) == (0.3, 50)
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env(default.to_env()) == default  # none travels as "-"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_DRIFT_EVERY": "als=soon"}, "STREAMREC_DRIFT_EVERY entries must look like"),
        ({"STREAMREC_DRIFT_EVERY": "als=-1"}, r"drift_every of als must be a number ≥ 0"),
        ({"STREAMREC_DRIFT_THRESHOLD": "1.5"}, r"drift_threshold must be between 0 and 1"),
        ({"STREAMREC_DRIFT_THRESHOLD": "nan"}, r"drift_threshold must be between 0 and 1"),
        ({"STREAMREC_DRIFT_USERS": "0"}, r"drift_users must be ≥ 1 \(got 0\)"),
    ],
)
def test_drift_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
