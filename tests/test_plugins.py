"""Models of one's own package: an entry point in group ``synthocr.models`` registers a model
without an edit of this checkout (a real distribution's metadata on the path), the workflow
trains and evaluates it, and ``synthocr-check-model`` checks it as the tests check ours."""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake
from test_export import TINY_CTC

from models import registry
from models.conformance import CHECKS, check_model
from models.registry import (
    PLUGIN_GROUP,
    entry_source,
    get_entry,
    model_names,
    reload_plugins,
    validate_experiment,
)

# Names of their own, so that a package a user installed (the README's my_models, say) is not
# theirs. The package: the README's small CTC model (tests/test_export.py), and one that breaks
# the contract.
PACKAGE = "synthocr_plugin_test"

FACTORY = (
    TINY_CTC
    + """

class BatchFirst(TinyCTC):
    def forward(self, x):
        return super().forward(x).transpose(0, 1)  # N, T, C + 1: not the CTC layout


def batch_first_ctc(num_classes, *, width=1.0, hidden=64):
    return BatchFirst(num_classes, width, hidden)
"""
)

ENTRIES = """
from dataclasses import replace

from models.registry import ModelEntry


def frames(image_width, **kwargs):
    return image_width // 4


TINY_CTC = ModelEntry(
    "synthocr_plugin_test.nets:tiny_ctc",
    "ctc",
    {"kind": "line", "height": 32},
    {"width": 1.0, "hidden": 64},
    output_length=frames,
    tiny={"width": 0.25, "hidden": 16},
)
# Breaks the contract: its logits are batch first.
BATCH_FIRST = replace(TINY_CTC, target="synthocr_plugin_test.nets:batch_first_ctc")
# Frame counts that are not whole numbers: a float, and max() of a tensor of widths.
FLOAT_FRAMES = replace(TINY_CTC, output_length=lambda image_width, **kw: image_width / 4)
MAX_FRAMES = replace(TINY_CTC, output_length=lambda image_width, **kw: max(1, image_width // 4))
TYPO = replace(TINY_CTC, target="synthocr_plugin_test.netz:tiny_ctc")
NOT_AN_ENTRY = {"target": "synthocr_plugin_test.nets:tiny_ctc"}
"""


def make_package(site: Path, points: dict[str, str], package: str = "synthocr-plugin-test") -> Path:
    """A package installed as pip installs one: its modules, and a ``.dist-info`` folder whose
    ``entry_points.txt`` registers ``points`` (model name -> object) in the plugin group."""
    modules = site / "synthocr_plugin_test"
    modules.mkdir(parents=True, exist_ok=True)
    (modules / "__init__.py").write_text("")
    (modules / "nets.py").write_text(FACTORY)
    (modules / "entries.py").write_text(ENTRIES)
    dist = site / f"{package.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    lines = [f"[{PLUGIN_GROUP}]", *(f"{name} = {obj}" for name, obj in points.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(points)``: that package on this process's path and its subprocesses'."""

    def _install(points: dict[str, str], package: str = "synthocr-plugin-test") -> Path:
        site = make_package(tmp_path / "site" / package, points, package)
        monkeypatch.syspath_prepend(str(site))
        paths = [str(site), os.environ.get("PYTHONPATH", "")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        reload_plugins()
        return site

    yield _install
    monkeypatch.undo()
    for name in [n for n in sys.modules if n.partition(".")[0] == PACKAGE]:
        del sys.modules[name]  # the next test's package is another folder
    reload_plugins()


GOOD = {"plugin_ctc": "synthocr_plugin_test.entries:TINY_CTC"}
LINE_TASK = {"height": 32, "length": [1, 8], "min_char_width": 16, "charset": {}}


def test_an_installed_packages_model_is_registered_checked_and_named(install):
    assert "plugin_ctc" not in model_names()
    install(GOOD)
    assert "plugin_ctc" in model_names() and "crnn_vgg" in model_names()
    assert get_entry("plugin_ctc").target == "synthocr_plugin_test.nets:tiny_ctc"
    assert "of package synthocr-plugin-test" in entry_source("plugin_ctc")
    assert entry_source("crnn_vgg") == "models/registry.py MODELS"
    assert "plugin_ctc" in registry.models_of_family("ctc")
    exp = {"task": "line", "model": "plugin_ctc", "model_kwargs": {"hidden": 32}}
    validate_experiment("line_tiny", exp, LINE_TASK)
    with pytest.raises(ValueError, match=r"T=0 output frames for a 3 px wide image"):
        validate_experiment("line_tiny", exp, {**LINE_TASK, "min_char_width": 3})
    with pytest.raises(ValueError, match=r"model_kwargs.hiden: model 'plugin_ctc' takes no"):
        validate_experiment("line_tiny", {**exp, "model_kwargs": {"hiden": 1}}, LINE_TASK)
    results = check_model("plugin_ctc")
    assert [(r.check, r.ok, r.detail) for r in results] == [(c, True, "") for c in CHECKS]


def test_an_unknown_model_says_how_a_package_registers_one(install):
    with pytest.raises(ValueError, match="unknown model 'plugin_ctc'") as e:
        get_entry("plugin_ctc")
    assert f"entry point in group {PLUGIN_GROUP}" in str(e.value)
    assert "is that package installed here?" in str(e.value)


@pytest.mark.parametrize(
    ("points", "name", "message"),
    [
        (
            {"gone": "synthocr_plugin_test.missing:TINY_CTC"},
            "gone",
            r"entry point gone = 'synthocr_plugin_test.missing:TINY_CTC' of package "
            r"synthocr-plugin-test, group synthocr.models cannot be loaded: ModuleNotFoundError",
        ),
        (
            {"odd": "synthocr_plugin_test.entries:NOT_AN_ENTRY"},
            "odd",
            r"model 'odd': .* is a dict, not a models.registry.ModelEntry",
        ),
        (
            {"crnn_vgg": "synthocr_plugin_test.entries:TINY_CTC"},
            "crnn_vgg",
            r"model 'crnn_vgg' is registered more than once: models/registry.py MODELS; entry "
            r"point crnn_vgg = 'synthocr_plugin_test.entries:TINY_CTC' of package "
            r"synthocr-plugin-test",
        ),
    ],
    ids=["import-error", "not-an-entry", "a-built-in-name"],
)
def test_a_broken_plugin_fails_where_it_is_named_naming_its_package(install, points, name, message):
    install({**points, **GOOD})
    with pytest.raises(ValueError, match=message):
        get_entry(name)
    assert get_entry("plugin_ctc").family == "ctc"  # the package's other model still loads
    exp = {"task": "line", "model": name}
    with pytest.raises(ValueError, match=rf"experiments.mine.model: .*{message}"):
        validate_experiment("mine", exp, LINE_TASK)


def test_two_packages_with_one_model_name_are_both_named(install):
    install(GOOD)
    install({"plugin_ctc": "synthocr_plugin_test.entries:BATCH_FIRST"}, package="other-models")
    with pytest.raises(ValueError, match="registered more than once") as e:
        get_entry("plugin_ctc")
    assert "package synthocr-plugin-test" in str(e.value) and "package other-models" in str(e.value)


def test_the_check_names_what_a_model_breaks_and_runs_every_check(install):
    install({"batch_first": "synthocr_plugin_test.entries:BATCH_FIRST"})
    results = {r.check: r for r in check_model("batch_first")}
    assert list(results) == list(CHECKS)
    assert [c for c, r in results.items() if not r.ok] == ["outputs", "loss"]
    for check in ("outputs", "loss"):
        assert "returned logits of shape (2, " in results[check].detail, results[check]
        assert "a ctc model returns T, N, C + 1" in results[check].detail
    assert "synthocr-plugin-test" in results["outputs"].detail  # where the entry is
    with pytest.raises(ValueError, match="unknown check"):
        check_model("batch_first", checks=["shapes"])


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("float_frames", "given the width 16, it gave 4.0"),
        ("max_frames", "given a torch.int64 tensor of 4 widths, it failed: Boolean value"),
    ],
)
def test_an_output_length_that_counts_no_whole_frames_fails_the_check_and_names_the_model(
    install, name, said
):
    # Both passed the check (it took int() of one width) and stopped training with torch's
    # "input_lengths must be integral", naming neither the model nor output_length.
    import torch

    from models.families import make_family

    install({name: f"synthocr_plugin_test.entries:{name.upper()}"})
    results = {r.check: r for r in check_model(name, checks=["outputs"])}
    rule = f"the output_length of model {name!r} (entry point {name} = "
    assert not results["outputs"].ok
    assert rule in results["outputs"].detail and said in results["outputs"].detail
    family = make_family(name, list("0123"))
    with pytest.raises(ValueError, match=re.escape(rule)):
        family.input_lengths(torch.tensor([64, 32]), 16, 2)
    if name == "float_frames":  # the config check's int widths: named by experiment too
        exp = {"task": "line", "model": name, "model_kwargs": {}}
        with pytest.raises(ValueError) as e:
            validate_experiment("line_tiny", exp, LINE_TASK)
        assert str(e.value).startswith(f"experiments.line_tiny.model: {rule}"), str(e.value)


def test_batch_first_logits_in_training_are_named_as_such(install):
    # A batch of 8 images 64 px wide: "gave 8 frames" was the batch's size read as frames.
    import torch

    from models.families import make_family

    install({"batch_first": "synthocr_plugin_test.entries:BATCH_FIRST"})
    model = registry.build_model("batch_first", num_classes=4).eval()
    images = torch.zeros(8, 1, 32, 64)
    family = make_family("batch_first", list("0123"))
    with pytest.raises(ValueError, match=r"returned logits of shape \(8, 16, 5\): a ctc model"):
        family.check_output(model(images), images)


def test_a_models_code_is_its_factorys_module_and_the_package_modules_it_imports(install):
    from models.registry import model_code, model_sources

    site = install(GOOD)
    modules = site / PACKAGE
    assert model_sources("plugin_ctc") == [str(modules / "nets.py")]  # not entries.py
    before = model_code("plugin_ctc")
    (modules / "layers.py").write_text("SCALE = 1\n")
    nets = modules / "nets.py"
    nets.write_text(
        "from . import layers\nfrom synthocr_plugin_test.layers import SCALE\n" + FACTORY
    )
    importlib.invalidate_caches()  # a module written after its package was imported
    assert model_sources("plugin_ctc") == [str(modules / "layers.py"), str(nets)]
    edited = model_code("plugin_ctc")
    assert edited != before
    (modules / "layers.py").write_text("SCALE = 2\n")  # an edit of a module it imports
    layered = model_code("plugin_ctc")
    assert layered != edited
    os.utime(nets, (1, 1))  # touched, not edited
    assert model_code("plugin_ctc") == layered
    # The built-in models: their module and models.backbones, not models.registry (which an
    # edit of anything else would change).
    assert [Path(p).name for p in model_sources("crnn_vgg")] == ["backbones.py", "crnn.py"]


def test_a_models_code_is_what_its_modules_do_not_how_they_are_documented(install):
    """A comment, a docstring or a blank line more in a model's module trains nothing afresh;
    an edit of what it does does."""
    from models.registry import model_code, model_sources

    site = install(GOOD)
    nets = site / PACKAGE / "nets.py"
    assert model_sources("plugin_ctc") == [str(nets)]
    before = model_code("plugin_ctc")
    source = nets.read_text()
    nets.write_text('"""The nets, documented."""\n\n# a note\n' + source + "\n\n")
    assert model_code("plugin_ctc") == before
    nets.write_text(source + "\nEXTRA = 1\n")
    assert model_code("plugin_ctc") != before


def test_a_runs_key_holds_its_models_code(monkeypatch):
    from models import specs

    job = specs.TrainJob(
        experiment="e",
        task="line",
        model="crnn_vgg",
        model_kwargs={},
        train=specs.TrainSpec(),
        seed=1,
        device="cpu",
        charset="c.txt",
        train_shards=(),
        val_shards=(),
        out_dir="out",
    )
    key = specs.run_hash(job, ["a"])
    monkeypatch.setattr(specs, "model_code", lambda name: "0" * 16)
    assert specs.run_hash(job, ["a"]) != key


def _check_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.conformance", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_the_check_command_passes_a_sound_model_and_fails_a_broken_one(install):
    install(
        {
            **GOOD,
            "batch_first": "synthocr_plugin_test.entries:BATCH_FIRST",
            "typo": "synthocr_plugin_test.entries:TYPO",
        }
    )
    ok = _check_command("--skip", "onnx", "plugin_ctc", "--kwargs", '{"hidden": 8}')
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[:5] == [f"ok   {c}" for c in CHECKS[:5]]
    assert "model 'plugin_ctc': every check passed" in ok.stdout
    bad = _check_command("batch_first", "--skip", "onnx", "--skip", "classes")
    assert bad.returncode == 1
    assert "FAIL outputs: " in bad.stdout and "2 of 4 checks failed" in bad.stdout
    for args, message in [
        (["tiny_ct"], "unknown model 'tiny_ct'"),
        (["plugin_ctc", "--kwargs", '{"hidden": "8"}'], "--kwargs.hidden: expected int"),
        (["plugin_ctc", "--kwargs", '{"hidden": 0}'], "--kwargs.hidden: must be >= 1"),
        (["typo"], "the module of its factory, 'synthocr_plugin_test.netz', cannot be found"),
        (["plugin_ctc", "--kwargs", "[8]"], "--kwargs: a JSON object"),
        ([*(a for c in CHECKS for a in ("--skip", c)), "plugin_ctc"], "leaves no check to run"),
    ]:
        proc = _check_command(*args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_the_workflow_trains_evaluates_and_exports_a_plugin_model(
    install, smoke_run, tmp_path, monkeypatch
):
    """Nothing of the checkout edited: the package installed (on PYTHONPATH) is enough for the
    config check, the train and evaluate jobs, and the export; without it, the exported file
    alone reads as with it."""
    site = install(GOOD)
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, symlinks=True)
    config = yaml.safe_load((REPO / "configs/smoke.yaml").read_text(encoding="utf-8"))
    exp = copy.deepcopy(config["experiments"]["line_crnn_vgg"])
    exp.update(model="plugin_ctc", model_kwargs={"hidden": 16})
    config["experiments"]["line_tiny"] = exp
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    target = "results/eval/line_tiny/test_heldout/metrics.json"
    run_snakemake(work, "--cores", "2", target, config=path)
    metrics = json.loads((work / target).read_text())
    assert metrics["model"] == "plugin_ctc" and metrics["n"] > 0
    export = subprocess.run(
        [sys.executable, "-m", "models.export", "results/models/line_tiny/model.pt", "tiny.onnx"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert (work / "tiny.onnx").stat().st_size > 0
    # The model's code is part of the job: touched or given a comment, nothing reruns; edited,
    # its training (and what reads its model) reruns, from step 0, not from the finished run of
    # the old code.
    nets = site / PACKAGE / "nets.py"
    os.utime(nets)
    proc = run_snakemake(work, "-n", "--cores", "2", target, config=path)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout
    nets.write_text(nets.read_text() + "\n# a comment\n")  # no edit of what it does
    proc = run_snakemake(work, "-n", "--cores", "2", target, config=path)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout
    nets.write_text(nets.read_text() + "\nEDITED = True\n")
    proc = run_snakemake(work, "-n", "--cores", "2", target, config=path)
    planned = [line.strip() for line in proc.stdout.splitlines() if line.startswith("rule ")]
    assert planned and planned[0] == "rule train:", proc.stdout
    assert "wildcards: experiment=line_tiny" in proc.stdout
    assert "experiment=line_crnn_vgg" not in proc.stdout
    run_snakemake(work, "--cores", "2", "results/models/line_tiny/model.pt", config=path)
    log = (work / "logs/train/line_tiny.log").read_text()
    assert "resuming run" not in log, log
    images = _test_images(work, tmp_path / "images")

    def recognize(model: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            # beam: alternatives and their probabilities, over the line's own frames
            [sys.executable, "-m", "models.recognize", "--decoder", "beam", model]
            + [str(image) for image in images],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )

    with_package = recognize("tiny.onnx")
    assert with_package.returncode == 0, with_package.stderr
    assert len(with_package.stdout.splitlines()) == len(images)
    # Without the package the config names the model it cannot find, and how one is added.
    paths = os.environ["PYTHONPATH"].split(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p != str(site)))
    proc = run_snakemake(work, "-n", "--cores", "2", target, config=path, check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert (
        "experiments.line_tiny.model: unknown model 'plugin_ctc'" in said and PLUGIN_GROUP in said
    )
    # its checkpoint, whose weights need the factory, names the package it was trained with
    model = "results/models/line_tiny/model.pt"
    proc = recognize(model)
    assert proc.returncode == 1
    assert (
        f"{model}: model 'plugin_ctc' cannot be rebuilt (it was trained with the package "
        "synthocr-plugin-test 0.1): unknown model 'plugin_ctc'"
    ) in proc.stderr, proc.stderr
    # while its ONNX file, which describes itself, reads the images as with the package
    without = recognize("tiny.onnx")
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_package.stdout


def _test_images(work: Path, folder: Path, count: int = 8) -> list[Path]:
    """The first ``count`` images of the smoke run's held-out line test shard, as files."""
    folder.mkdir()
    [shard] = sorted((work / "results/shards/line").glob("test_heldout-*.tar"))[:1]
    out = []
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".png") and len(out) < count:
                out.append(folder / Path(member.name).name)
                out[-1].write_bytes(tar.extractfile(member).read())
    assert len(out) == count
    return out


def test_the_readme_registers_a_package_model_as_the_tests_do():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### A model in your own package") :]
    section = section[: section.index("\n## ")]
    assert f'[project.entry-points."{PLUGIN_GROUP}"]' in section
    assert "synthocr-check-model" in section
    toml = textwrap.dedent(section[section.index("```toml") + 7 :].split("```")[0])
    assert 'tiny_ctc = "my_models.entries:TINY_CTC"' in toml
