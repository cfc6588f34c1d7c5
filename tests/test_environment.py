"""The environment is what the project says it is: one set of pins, our own packages."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
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


def _make_setup_stamp(venv: Path, *args: str) -> str:
    """The stamp `make setup` would touch in ``venv`` (a dry run), which names the torch build."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH"}  # `make test` exports it
    out = subprocess.run(
        ["make", "-n", "-B", "setup", f"VENV={venv}", *args],  # -B: the recipe even if up to date
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stamps = re.findall(r"touch \S*/\.synthocr-(\w+)-[0-9a-f]{12}$", out, re.M)
    assert len(stamps) == 1, out
    return stamps[0]


def _make_dry_setup(venv: Path, *args: str) -> str:
    """What `make setup` would run for ``venv`` (a dry run)."""
    return subprocess.run(
        ["make", "-n", "setup", f"VENV={venv}", *args],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k not in ("TORCH", "TORCH_INDEX_URL")},
    ).stdout  # fmt: skip


def test_make_keeps_the_torch_build_the_environment_was_set_up_with(tmp_path):
    # `make test` after `make report TORCH=cuda` must not swap the CUDA torch for the CPU one.
    venv = tmp_path / "venv"
    assert _make_setup_stamp(venv) == "cpu"  # no environment yet: the default
    venv.mkdir()
    (venv / ".synthocr-cuda-000000000000").touch()
    assert _make_setup_stamp(venv) == "cuda"
    assert _make_setup_stamp(venv, "TORCH=cpu") == "cpu"
    # `make test` (CPU), `make report TORCH=cuda`, then `make test TORCH=cpu`: the CUDA set-up
    # removed the CPU stamp it found, so the last one installs the CPU build again (it kept
    # CUDA's, the CPU stamp of the same pins being there and newer than its inputs).
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    cpu = venv / f".synthocr-cpu-{digest}"
    cpu.touch()
    os.utime(cpu, (time.time() + 10, time.time() + 10))
    dry = _make_dry_setup(venv, "TORCH=cuda")
    assert f"rm -f {venv}/.synthocr-cpu-* {venv}/.synthocr-cuda-*" in dry
    assert _make_setup_stamp(venv) == "cpu"  # the newest stamp, here the CPU one


def _fake_venv(venv: Path) -> Path:
    """A venv whose python runs without site-packages, imports a stand-in torch (a CUDA build)
    and logs every pip command to ``venv/pip.log``, installing the stand-in for ``pip install
    torch==...``: enough for workflow/setup/install_python.sh to decide what to (re)install."""
    site = venv / "site"
    (site / "torch").mkdir(parents=True)
    fake_torch = '__version__ = "2.13.0+cu"\nclass version:\n    cuda = "12.8"\n'
    (site / "torch" / "__init__.py").write_text(fake_torch)
    (venv / "bin").mkdir()
    python = venv / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = pip ]; then\n'
        f'  shift 2; echo "$*" >> {venv}/pip.log\n'
        '  case "$*" in\n'
        f'    "uninstall -q -y torch") rm -rf {site}/torch ;;\n'
        f"    \"install -q torch==2.13.0\"*) mkdir -p {site}/torch && printf %s '{fake_torch}'"
        f" > {site}/torch/__init__.py ;;\n"
        "  esac\n"
        "  exit 0\n"
        "fi\n"
        f'PYTHONPATH={site} exec {sys.executable} -S "$@"\n'
    )
    python.chmod(0o755)
    return venv / "pip.log"


def test_setup_replaces_a_cuda_build_from_another_index(tmp_path):
    # A CUDA build is kept across set-ups, but one from another index than TORCH_INDEX_URL (PyPI's
    # default, or another CUDA version) is replaced, without removing the environment first.
    venv = tmp_path / "venv"
    log = _fake_venv(venv)

    def setup(url: str | None) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TORCH", "TORCH_INDEX_URL")}
        env.update(TORCH="cuda", VENV=str(venv), **({"TORCH_INDEX_URL": url} if url else {}))
        log.write_text("")
        script = REPO / "workflow" / "setup" / "install_python.sh"
        subprocess.run(["bash", str(script)], cwd=REPO, env=env, check=True, capture_output=True)
        return [line for line in log.read_text().splitlines() if "torch" in line]

    cu128 = "https://download.pytorch.org/whl/cu128"
    assert setup(None) == []  # PyPI's CUDA build, installed before: kept
    pypi = "https://pypi.org/simple"
    assert setup(cu128) == [
        "uninstall -q -y torch",
        f"install -q torch==2.13.0 --index-url {cu128} --extra-index-url {pypi}",
    ]
    assert (venv / ".synthocr-torch-index").read_text() == cu128
    assert setup(cu128) == []  # from that index already
    assert setup(None) == []  # unset: whichever CUDA build is there
    assert setup(cu128.replace("cu128", "cu126"))[0] == "uninstall -q -y torch"
    # make runs the set-up again for another index, though its stamp is up to date
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    (venv / f".synthocr-cuda-{digest}").touch()
    cu126 = cu128.replace("cu128", "cu126")
    assert "install_python.sh" not in _make_dry_setup(venv, f"TORCH_INDEX_URL={cu126}")
    assert "install_python.sh" in _make_dry_setup(venv, f"TORCH_INDEX_URL={cu128}")
    assert "install_python.sh" not in _make_dry_setup(venv)


_CACHES = shutil.ignore_patterns("__pycache__", "*.egg-info")


def test_the_packages_schema_is_the_workflows():
    """synth/config.schema.yaml is a link to the workflow's schema: an edit that replaced it
    with a file (sed -i does) checked configs against two schemas, the workflow's without the
    edit."""
    link = REPO / "synth" / "config.schema.yaml"
    assert link.is_symlink(), "synth/config.schema.yaml must stay a link (git: mode 120000)"
    assert link.resolve() == (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve()


@pytest.mark.slow
def test_an_installed_wheel_carries_the_config_schema(tmp_path):
    # `pip install .` (not -e) copies only the packages: the schema the config checks and
    # `--spec` read must travel inside them, as a file, not a link into the repository.
    # Built from a copy: setuptools leaves a build/ folder in the source tree.
    src = tmp_path / "src"
    for name in ("synth", "models", "workflow/schemas"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=_CACHES)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("synthocr-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    schema = tmp_path / "site" / "synth" / "config.schema.yaml"
    assert not schema.is_symlink()
    assert schema.read_bytes() == (REPO / "workflow/schemas/config.schema.yaml").read_bytes()
    # The installed packages, not the repository's, check a config from outside the repository.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = "import synth.schema as s; print(s.__file__); print(s.SCHEMA_PATH.is_file())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [str(tmp_path / "site/synth/schema.py"), "True"], out.stderr
    check = subprocess.run(
        [sys.executable, "-m", "models.configcheck", str(REPO / "configs/smoke.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown page: each heading's slug (lower case, punctuation
    but hyphens and underscores dropped, spaces as hyphens) and each ``<a id="...">``."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    headings = re.findall(r"^#{1,6} (.+?)\s*$", prose, flags=re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    return slugs | set(re.findall(r'<a id="([^"]+)"', markdown))


def test_the_documents_links_to_their_sections_resolve():
    """Every link to a section of README.md or BENCHMARKS.md, from either, names a heading or an
    anchor the page has: a renamed or moved section breaks no link unnoticed."""
    pages = {
        name: (REPO / name).read_text(encoding="utf-8") for name in ("README.md", "BENCHMARKS.md")
    }
    anchors = {name: _anchors(text) for name, text in pages.items()}
    broken, checked = [], 0
    for name, text in pages.items():
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for page, anchor in re.findall(r"\]\(((?:README|BENCHMARKS)\.md)?#([^)\s]+)\)", prose):
            checked += 1
            if anchor not in anchors[page or name]:
                broken.append(f"{name}: #{anchor} (in {page or name})")
    assert checked >= 10, checked
    assert not broken, broken
