"""The environment is what the project says it is: one set of pins, our own packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from conftest import REPO


def _name(req: str) -> str:
    return re.split(r"[=<>!\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_name(r): r.split("==", 1)[1] for r in reqs}


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r): r.split("==", 1)[1] for r in pip if not r.startswith("-")}


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    loose = [r for r in reqs if "==" not in r]
    assert not loose, f"unpinned requirements in pyproject.toml: {loose}"


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.split("+")[0] == _pyproject_pins()["torch"]


def test_packages_resolve_to_this_repository():
    # `models` and `synth` are common names: make sure nothing else shadows ours.
    import models
    import synth

    assert models.__file__ is not None and synth.__file__ is not None
    assert REPO / "models" in Path(models.__file__).resolve().parents
    assert REPO / "synth" in Path(synth.__file__).resolve().parents
