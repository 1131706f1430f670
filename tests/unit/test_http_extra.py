"""The HTTP API is an optional extra: the core install, ``import streamrec`` and the CLI's
start-up need neither Starlette nor uvicorn, and without them ``streamrec http`` says how
to install them (issue 13)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamrec.cli import cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_starlette_and_uvicorn_are_only_in_the_http_extra() -> None:
    with PYPROJECT.open("rb") as f:
        project = tomllib.load(f)["project"]
    core = " ".join(project["dependencies"])
    assert "starlette" not in core and "uvicorn" not in core
    http = " ".join(project["optional-dependencies"]["http"])
    assert "starlette" in http and "uvicorn" in http
    assert "prometheus-client" in core


def test_the_cli_starts_without_importing_the_web_stack() -> None:
    code = (
        "import sys, streamrec, streamrec.cli, streamrec.http.server\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_the_extra_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    result = CliRunner().invoke(cli, ["http", "--port", "1"])
    assert result.exit_code == 7, result.output  # ConfigError
    assert "pip install 'streamrec[http]'" in result.output
