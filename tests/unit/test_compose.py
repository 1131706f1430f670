"""docker-compose.yml, checked against the code it runs (CI cannot run Docker here).

Every streamrec service's command is parsed by the real click group, every ``STREAMREC_*``
variable is one that ``Settings.from_env`` (or a click option) reads, Redis is reachable
only with a password, published ports bind loopback, and Prometheus scrapes the services
and ports that serve metrics. The deployment's secrets are committed as ``*.example`` files
only; the checks read those.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import pytest
import yaml

from streamrec.cli import cli
from streamrec.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()
LOOPBACK = "127.0.0.1"


def stages() -> dict[str, str]:
    """Dockerfile stage name -> its text."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE, flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def instruction(stage: str, name: str) -> list[str] | None:
    """The JSON-form ENTRYPOINT or CMD of a Dockerfile stage."""
    found = re.findall(rf"^{name}\s+(\[.*\])\s*$", stages()[stage], flags=re.M)
    return json.loads(found[-1]) if found else None


def target(service: str) -> str | None:
    build = SERVICES[service].get("build")
    return build.get("target") if isinstance(build, dict) else None


def streamrec_services() -> list[str]:
    """Services whose image's entrypoint is the ``streamrec`` command."""
    return sorted(
        name
        for name in SERVICES
        if target(name) in stages() and instruction(target(name), "ENTRYPOINT") == ["streamrec"]
    )


def command(service: str) -> list[str] | None:
    """The arguments a service passes to its entrypoint (its image's CMD when it has none)."""
    value = SERVICES[service].get("command")
    if value is None:
        return instruction(target(service), "CMD") if target(service) else None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def existing(path: str) -> Path:
    """A deployment file, or the committed ``.example`` that is copied to make it."""
    real = ROOT / path
    example = real.with_name(real.name + ".example")
    assert example.is_file() or real.is_file(), f"{path}: neither it nor {example.name} exists"
    return example if example.is_file() else real


def env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not NAME=value"
            env[name.strip()] = value.strip()
    return env


def environment(service: str) -> dict[str, str]:
    """What the service's containers see: its env files, then its ``environment``."""
    spec = SERVICES[service]
    files = spec.get("env_file", [])
    env: dict[str, str] = {}
    for entry in [files] if isinstance(files, str | dict) else files:
        env.update(env_file(existing(entry["path"] if isinstance(entry, dict) else entry)))
    extra = spec.get("environment", {})
    if isinstance(extra, list):
        extra = dict(item.partition("=")[::2] for item in extra)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def published(service: str) -> list[tuple[str | None, int]]:
    """(host address or None for all, container port) of each port a service publishes."""
    out = []
    for port in SERVICES[service].get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip"), int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        host = parts[0] if len(parts) == 3 else None
        out.append((host, int(parts[-1].split("-")[0])))
    return out


def commands_of(group: click.Group) -> Iterator[click.Command]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None:
            yield sub
            if isinstance(sub, click.Group):
                yield from commands_of(sub)


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every variable looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def known_variables() -> set[str]:
    """Every variable ``Settings.from_env`` reads, and every ``envvar`` of a click option."""
    recorder = _Recorder()
    Settings.from_env(recorder)
    names = set(recorder.asked)
    for cmd in [cli, *commands_of(cli)]:
        for param in cmd.params:
            envvar = param.envvar
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


# --- the file and its services -----------------------------------------------------------


def test_the_issue_services_are_there_on_their_images() -> None:
    assert {"redis", "worker", "trainer", "scheduler", "http", "dashboard", "prometheus"} <= set(
        SERVICES
    )
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert (target("worker"), target("trainer")) == ("worker", "trainer")
    assert target("scheduler") == target("http") == "worker"  # slim: no TensorFlow
    assert "deploy" not in SERVICES["worker"], "a fixed replica count would defeat --scale"
    assert "container_name" not in SERVICES["worker"]


def test_every_build_target_is_a_dockerfile_stage() -> None:
    for name in SERVICES:
        if "build" in SERVICES[name]:
            assert target(name) in stages(), f"{name}: no Dockerfile stage {target(name)!r}"


def test_the_images_install_only_extras_that_exist() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    used = {
        e for group in re.findall(r"\.whl\)?\"?\[([\w,-]+)\]", DOCKERFILE) for e in group.split(",")
    }
    assert "http" in used, "the slim image serves `streamrec http`: it needs the http extra"
    assert used <= set(extras), f"extras not in pyproject.toml: {sorted(used - set(extras))}"


@pytest.mark.parametrize(
    "where",
    [f"service {name}" for name in streamrec_services() if command(name)]
    + [
        f"Dockerfile {stage}"
        for stage in stages()
        if instruction(stage, "ENTRYPOINT") == ["streamrec"]
    ],
)
def test_commands_are_real_streamrec_commands_with_real_options(where: str) -> None:
    kind, name = where.split()
    args = command(name) if kind == "service" else instruction(name, "CMD")
    assert args, f"{where}: no command"
    ctx = click.Context(cli, info_name="streamrec")
    sub = cli.get_command(ctx, args[0])
    assert sub is not None, f"{where}: `streamrec {args[0]}` is not a command"
    options = {o for p in sub.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    for token in args[1:]:
        if token.startswith("-") and token != "-":
            assert token.split("=")[0] in options, f"{where}: `{args[0]}` has no option {token}"
    sub.make_context(args[0], list(args[1:]), parent=ctx)  # the values parse too


def test_every_streamrec_variable_is_a_real_setting() -> None:
    texts = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", ROOT / "deploy" / "prometheus.yml"]
    texts += [existing(f) for name in SERVICES for f in _env_files(name)]
    mentioned = {
        v for path in texts for v in re.findall(r"\bSTREAMREC_[A-Z0-9_]+", path.read_text())
    }
    for name in SERVICES:
        mentioned |= {v for v in environment(name) if v.startswith("STREAMREC_")}
    unknown = mentioned - known_variables()
    assert not unknown, f"not read by Settings.from_env or any option: {sorted(unknown)}"


def _env_files(service: str) -> list[str]:
    files = SERVICES[service].get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


@pytest.mark.parametrize("name", streamrec_services())
def test_each_streamrec_service_gets_settings_with_a_password(name: str) -> None:
    settings = Settings.from_env(environment(name))
    assert settings.redis_url, f"{name}: no STREAMREC_REDIS_URL (it would start an embedded Redis)"
    url = urlsplit(settings.redis_url)
    assert (url.hostname, url.port) == ("redis", 6379)
    assert url.password, f"{name}: STREAMREC_REDIS_URL carries no password"
    assert _acl_password_matches(url.username or "default", unquote(url.password))


# --- Redis: a password, and no open port ---------------------------------------------------


def redis_args() -> list[str]:
    args = SERVICES["redis"]["command"]
    return shlex.split(args) if isinstance(args, str) else [str(a) for a in args]


def acl_lines() -> dict[str, list[str]]:
    """User -> the rules of the ACL file that the redis service loads (its example)."""
    args = redis_args()
    if "--aclfile" not in args:
        return {}
    inside = args[args.index("--aclfile") + 1]
    mounts = [v for v in SERVICES["redis"]["volumes"] if isinstance(v, dict)]
    mounts += [
        {"source": s, "target": t}
        for v in SERVICES["redis"]["volumes"]
        if isinstance(v, str) and v.count(":") >= 1
        for s, t in [v.split(":")[:2]]
    ]
    source = next(m["source"] for m in mounts if m["target"] == inside)
    users = {}
    for line in existing(source.removeprefix("./")).read_text().splitlines():
        words = line.split()
        assert words[:1] == ["user"], f"ACL files have no comments or other lines: {line!r}"
        users[words[1]] = words[2:]
    return users


def _acl_password_matches(user: str, password: str) -> bool:
    rules = acl_lines().get(user)
    if rules is None:  # --requirepass: the default user
        args = redis_args()
        return "--requirepass" in args and args[args.index("--requirepass") + 1] == password
    digest = hashlib.sha256(password.encode()).hexdigest()
    return "on" in rules and (f">{password}" in rules or f"#{digest}" in rules)


def test_redis_keeps_an_append_only_file() -> None:
    args = redis_args()
    assert args[args.index("--appendonly") + 1] == "yes"


def test_redis_requires_a_password_and_publishes_no_port() -> None:
    args = redis_args()
    users = acl_lines()
    assert "--requirepass" in args or users, "redis: neither --requirepass nor --aclfile"
    if users:
        default = users.get("default", [])
        assert "off" in default or not ({"nopass", "on"} <= set(default)), default
        for user, rules in users.items():
            if "nopass" in rules and "on" in rules:  # a health check: PING and nothing else
                assert "-@all" in rules and [r for r in rules if r[0] in "+~%&"] == ["+ping"], user
    assert "ports" not in SERVICES["redis"], "Redis must not be published"
    for name in SERVICES:
        assert 6379 not in [port for _, port in published(name)], f"{name} publishes Redis"
        assert SERVICES[name].get("network_mode") != "host", f"{name}: host network"


def test_the_readme_acl_line_is_the_app_user_of_the_deployment() -> None:
    readme = re.search(r"^user app on .*$", README, flags=re.M)
    assert readme, "README: no `user app on ...` line"
    acl = acl_lines()["app"]
    assert re.sub(r">\S+", ">*", readme.group(0)).split()[2:] == [
        re.sub(r"^>\S+", ">*", r) for r in acl
    ]


# --- ports, the dashboard, Prometheus ------------------------------------------------------


def test_published_ports_bind_loopback() -> None:
    for name in SERVICES:
        for host, port in published(name):
            assert host == LOOPBACK, f"{name} publishes {port} on {host or 'every address'}"
    assert (LOOPBACK, 9181) in published("dashboard")


def test_the_dashboard_reads_jobs_with_the_json_serializer() -> None:
    args = command("dashboard") or []
    env = environment("dashboard")
    assert "--json" in args or "-j" in args or env.get("RQ_DASHBOARD_JSON", "").lower() == "true"
    url = urlsplit(env["RQ_DASHBOARD_REDIS_URL"])
    assert url.hostname == "redis" and url.password
    assert _acl_password_matches(url.username or "default", unquote(url.password))


def metrics_ports() -> dict[str, int]:
    """Service -> the port its /metrics is served on."""
    ports = {}
    for name in streamrec_services():
        port = getattr(Settings.from_env(environment(name)), "metrics_port", None)
        args = command(name) or []
        if args[:1] == ["http"]:
            port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
        if port:
            ports[name] = port
    return ports


def test_workers_and_the_scheduler_serve_metrics() -> None:
    assert {"worker", "trainer", "scheduler", "http"} <= set(metrics_ports())


def test_prometheus_scrapes_every_metrics_port() -> None:
    volumes = SERVICES["prometheus"]["volumes"]
    mounted = [v.split(":")[0] for v in volumes if isinstance(v, str)]
    assert "./deploy/prometheus.yml" in mounted
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    scraped = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for address in static["targets"]:
                host, _, port = address.rpartition(":")
                scraped.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            scraped |= {(host, int(dns["port"])) for host in dns["names"]}
    expected = set(metrics_ports().items())
    assert scraped == expected, f"scraped {sorted(scraped)}, served {sorted(expected)}"
