"""The core install carries no TensorFlow: it lives in the `tf` extra (issue 10)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
TF_FAMILY = {"tensorflow", "tf-keras", "tensorflow-recommenders"}


def _project() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    """Normalised distribution names of PEP 508 requirements ('tf_keras==2.20.*' → 'tf-keras')."""
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"not a requirement: {requirement!r}"
        names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def test_tensorflow_family_is_only_in_the_tf_extra() -> None:
    project = _project()
    core = _names(project["dependencies"])
    assert not core & TF_FAMILY, f"TensorFlow in the core dependencies: {sorted(core & TF_FAMILY)}"
    assert _names(project["optional-dependencies"]["tf"]) >= TF_FAMILY
    # ScaNN's pybind ops run without TensorFlow, so ScaNN (and the protobuf it needs) stay core.
    assert core >= {"scann", "protobuf"}


def test_requires_python_admits_3_11_and_3_12_only() -> None:
    spec = str(_project()["requires-python"]).replace(" ", "")
    bounds = dict(re.findall(r"(>=|<)(3\.\d+)", spec))
    assert bounds == {">=": "3.11", "<": "3.13"}, spec
