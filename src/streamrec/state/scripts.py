"""The Lua scripts that change state atomically, loaded once per client."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script


@cache
def _source(name: str) -> str:
    return resources.files("streamrec.state").joinpath("lua", f"{name}.lua").read_text()


def script(connection: redis.Redis, name: str) -> Script:
    """The registered script ``lua/<name>.lua`` (EVALSHA, reloaded on NOSCRIPT)."""
    return connection.register_script(_source(name))
