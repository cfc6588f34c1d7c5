"""The environment is what the project says it is: one set of pins, our own packages."""

from __future__ import annotations

import hashlib
import re
import sys
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


def _setup_build() -> str | None:
    """The PyTorch build `make` set this environment up with, from the stamp it leaves in the
    venv, ``.synthocr-{cpu,cuda}-<first 12 hex digits of pyproject.toml's sha256>``: that of
    the current pins, else the newest; None without a stamp (an environment made otherwise)."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    stamps = sorted(Path(sys.prefix).glob(".synthocr-*-*"), key=lambda p: p.stat().st_mtime)
    stamps = [p for p in stamps if p.name.endswith(f"-{digest}")] or stamps
    return stamps[-1].name.split("-")[1] if stamps else None


def test_setup_build_is_read_from_the_stamp(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert _setup_build() is None
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    (tmp_path / f".synthocr-cuda-{digest}").touch()
    (tmp_path / ".synthocr-cpu-000000000000").touch()  # newer, of other pins
    assert _setup_build() == "cuda"
    (tmp_path / f".synthocr-cuda-{digest}").unlink()
    assert _setup_build() == "cpu"


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.split("+")[0] == _pyproject_pins()["torch"]
    # The CPU build, never a CUDA download, unless the set-up was asked for CUDA (TORCH=cuda):
    # then the CUDA build, as workflow/setup/install_python.sh checks after installing it.
    if _setup_build() == "cuda":
        assert torch.version.cuda is not None, torch.__version__
    else:
        assert torch.version.cuda is None, f"torch {torch.__version__}, CUDA {torch.version.cuda}"


def test_packages_resolve_to_this_repository():
    # `models` and `synth` are common names: make sure nothing else shadows ours.
    import models
    import synth

    assert models.__file__ is not None and synth.__file__ is not None
    assert REPO / "models" in Path(models.__file__).resolve().parents
    assert REPO / "synth" in Path(synth.__file__).resolve().parents
