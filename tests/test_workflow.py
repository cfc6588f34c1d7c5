"""The Snakemake workflow itself: the DAG is complete, validated, lint-clean and incremental.

The smoke run executes the whole DAG for real (real fonts, real shards, real training) in a
temporary folder; the other tests use dry runs against copies of the smoke config.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import webdataset as wds
import yaml
from conftest import REPO, made_locale, run_snakemake, snakemake_command

from models import tesseract
from models.checkpoint import load_model
from models.configcheck import read_workflow_config
from models.train import main as train_main
from synth.charset import is_hanzi
from synth.schema import (
    SCHEMA_PATH,
    check_config,
    check_schema,
    config_problems,
    config_with_origins,
    load_config_file,
    load_schema,
    merge_config_files,
)
from synth.shards import sha256_file
from synth.specs import task_spec

SMOKE = REPO / "configs" / "smoke.yaml"
DEFAULT = REPO / "configs" / "config.yaml"
RULES = {
    "charset",
    "coverage",
    "font_table",
    "shard",
    "manifest",
    "contact_sheet",
    "train",
    "evaluate",
    "tesseract",
}


def _jobs(dry_run_stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) for every job a dry run lists."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in dry_run_stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line.strip()):
            jobs.append((m.group(1), {}))
        elif jobs and (m := re.match(r"^wildcards: (.*)$", line.strip())):
            jobs[-1][1].update(kv.split("=", 1) for kv in m.group(1).split(", "))
    return jobs


def _write_config(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


@pytest.mark.parametrize(
    "config",
    [SMOKE, DEFAULT]
    + [
        REPO / "configs" / f
        for f in ("gpu.yaml", "lines_cpu.yaml", "lines_cpu_long.yaml", "unseen_fonts.yaml")
    ],
)
def test_dry_run_lists_every_stage(tmp_path, config):
    proc = run_snakemake(tmp_path, "-n", "--cores", "2", "all", config=config)
    rules = {rule for rule, _ in _jobs(proc.stdout)}
    assert rules >= RULES, f"missing rules in the DAG: {RULES - rules}"
    cfg = load_config_file(config)  # an overlay (lines_cpu.yaml) over the config it extends
    n_shards = sum(s["shards"] for t in cfg["tasks"].values() for s in t["splits"].values())
    assert sum(rule == "shard" for rule, _ in _jobs(proc.stdout)) == n_shards
    # Tesseract reads every task it has settings for, each test split once
    tesseract_jobs = [(w["task"], w["split"]) for r, w in _jobs(proc.stdout) if r == "tesseract"]
    assert sorted(tesseract_jobs) == sorted(
        (t, s) for t in tesseract.TASKS for s in ("test_seen", "test_heldout")
    )


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["tasks"]["expr"].update(heigth=60), "heigth"),
        (lambda c: c["experiments"]["expr_crnn"].update(model="crnn_resnet"), "crnn_resnet"),
        (lambda c: c["experiments"]["expr_crnn"]["train"].update(steps="many"), "many"),
        (lambda c: c.update(tasks_typo={}), "tasks_typo"),
        (lambda c: c["experiments"].update({1: {"task": "line", "model": "crnn_vgg"}}), "1 is not"),
        (lambda c: c["experiments"]["line_crnn_vgg"]["model_kwargs"].update(hiden=3), "hiden"),
        (lambda c: c["tasks"]["expr"].update(operators="+^"), "operators"),
        (lambda c: c["tasks"]["expr"].update(operators="+-+"), "operators"),
        (lambda c: c["tasks"]["line"].update(length=[5, 2]), "tasks.line.length: [5, 2]: low is"),
        (lambda c: c["fonts"].update(exclude_families=["(x"]), "exclude_families.0: '(x' is not"),
        (lambda c: c["fonts"].update(misdrawn={"(x": "沽"}), "fonts.misdrawn: '(x' is not"),
        (lambda c: c["fonts"].update(misdrawn={"Ming": ""}), "fonts.misdrawn.Ming: '' is not"),
        (
            lambda c: c["tasks"]["hanzi"]["charset"].update(space=True),
            "tasks.hanzi.charset.space: only the line task draws spaces",
        ),
        (
            lambda c: c["tasks"]["expr"]["charset"].update(limit=5),
            "tasks.expr.charset.limit: 5 shrinks the source, and source chars has none",
        ),
        (
            lambda c: c["tasks"]["line"]["charset"].update(space=True),
            "tasks.line.charset.space: only lines of your own text hold spaces",
        ),
        (
            lambda c: c["tasks"]["expr"]["splits"]["test_heldout"].update(
                degrade={"legible": {"inks": "stroke"}}
            ),
            "inks",
        ),
        (
            lambda c: c["experiments"]["line_crnn_vgg"]["train"].update(shards=3),
            "experiments.line_crnn_vgg.train.shards: 3, but tasks.line.splits.train has 2 "
            "shard(s); give at most 2",
        ),
        (lambda c: c["experiments"]["line_crnn_vgg"]["train"].update(shards=0), "shards: 0"),
    ],
)
def test_config_typo_fails_at_parse_time_naming_the_key(tmp_path, edit, key):
    config = _write_config(tmp_path, edit)
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


def test_misdrawn_characters_are_written_with_no_space_among_them():
    """``fonts.misdrawn: {Ming: 沽 瀑}`` would count the face's space as missing too, keeping it
    from every line with a space: the schema refuses white space there, naming the key."""
    _, config = read_workflow_config([SMOKE])
    schema = load_schema(SCHEMA_PATH)
    for chars in ("沽 瀑", "沽\t", " "):
        config["fonts"]["misdrawn"] = {"Ming": chars}
        assert config_problems(config, schema) == [
            f"fonts.misdrawn.Ming: {chars!r} is not one or more characters, with no white space "
            "among them"
        ], chars
    config["fonts"]["misdrawn"] = {"Ming": "沽瀑"}
    assert config_problems(config, schema) == []


def test_an_unreadable_config_is_named_before_snakemake_runs(tmp_path):
    """Snakemake's own message for a --configfile it cannot parse names no file; the Makefile
    reads CONFIG with `python -m models.configcheck` first, which names the file at fault, also
    when it is the file an overlay extends."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 7\ntasks: [\n  bad: : x\n", encoding="utf-8")
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("extends: broken.yaml\nseed: 8\n", encoding="utf-8")
    for config in (broken, overlay):
        proc = subprocess.run(
            [sys.executable, "-m", "models.configcheck", str(config)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"error: {broken}: cannot read the config"), proc.stderr
    ok = [sys.executable, "-m", "models.configcheck", "--each", "configs/config.yaml"]
    ok.append("configs/gpu.yaml")
    proc = subprocess.run(ok, cwd=REPO, timeout=120, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    experiments = [len(load_config_file(REPO / f)["experiments"]) for f in ok[-2:]]
    assert proc.stdout.splitlines() == [
        f"configs/config.yaml: valid ({experiments[0]} experiments)",
        f"configs/gpu.yaml: valid ({experiments[1]} experiments)",
    ]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("report", "all", "dag"):
        recipe = makefile.split(f"\n{target}: setup\n", 1)[1].split("\n\n", 1)[0]
        assert (
            recipe.splitlines()[0] == "\t$(BIN)/python -m models.configcheck --no-files $(CONFIG)"
        ), target


def test_the_cpu_lines_overlay_is_the_default_config_but_for_the_line_models():
    default, overlay = load_config_file(DEFAULT), load_config_file(REPO / "configs/lines_cpu.yaml")
    assert "extends" not in overlay
    for key in ("tasks", "experiments"):
        for name in set(default[key]) | set(overlay[key]):
            if name not in ("line", "line_crnn_vgg", "line_crnn_grcnn"):
                assert overlay[key][name] == default[key][name], name
    assert {k: v for k, v in overlay.items() if k not in ("tasks", "experiments")} == {
        k: v for k, v in default.items() if k not in ("tasks", "experiments")
    }
    line, line_default = overlay["tasks"]["line"], default["tasks"]["line"]
    assert {**line, "splits": None} == {**line_default, "splits": None}
    assert line["splits"]["train"]["shards"] > line_default["splits"]["train"]["shards"]
    for exp in ("line_crnn_vgg", "line_crnn_grcnn"):
        train, train_default = (
            overlay["experiments"][exp]["train"],
            default["experiments"][exp]["train"],
        )
        assert train["steps"] > train_default["steps"]
        assert train["batch_size"] == train_default["batch_size"]  # the rest merged from the base
        assert train["lr"] == train_default["lr"]


def test_the_long_lines_config_keeps_the_first_stages_of_the_config_it_extends():
    """lines_cpu_long.yaml adds training shards for its second stages; its first stages are
    lines_cpu.yaml's experiments unchanged, on lines_cpu.yaml's shards (train.shards), so the
    models lines_cpu.yaml trained are not trained again (the rule's inputs and params are the
    same: test_more_training_shards_retrain_only_the_experiments_that_read_them)."""
    base = load_config_file(REPO / "configs/lines_cpu.yaml")
    long = load_config_file(REPO / "configs/lines_cpu_long.yaml")
    n = base["tasks"]["line"]["splits"]["train"]["shards"]
    assert long["tasks"]["line"]["splits"]["train"]["shards"] > n
    for name in ("line_crnn_vgg", "line_crnn_grcnn"):
        first = copy.deepcopy(long["experiments"][name])
        assert first["train"].pop("shards") == n
        assert first == base["experiments"][name], name
        assert long["experiments"][f"{name}_long"]["train"].get("shards") is None


def test_a_shipped_stage_builds_the_model_of_the_stage_it_starts_from():
    """``train.init_from`` loads another experiment's weights only into a model of the same
    tensors: a second stage whose ``model_kwargs`` drifted from its first's (``batch_norm_all``
    set on one alone) would fail in its train job, after the first stage's hour of training."""
    from models.registry import build_model

    def tensors(exp: dict) -> dict[str, tuple[int, ...]]:
        model = build_model(exp["model"], 10, **exp.get("model_kwargs", {}))
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    pairs = []
    for config in sorted((REPO / "configs").glob("*.yaml")):
        experiments = load_config_file(config)["experiments"]
        for name, exp in experiments.items():
            source = Path(exp.get("train", {}).get("init_from") or "")
            if source.parts[:2] == ("results", "models"):
                pairs.append((config.name, experiments[source.parts[2]], exp, name))
    assert {(c, n) for c, *_, n in pairs} >= {
        ("lines_cpu_long.yaml", "line_crnn_vgg_long"),
        ("lines_cpu_long.yaml", "line_crnn_grcnn_long"),
    }
    for config, first, exp, name in pairs:
        assert (first["task"], first["model"]) == (exp["task"], exp["model"]), (config, name)
        assert tensors(first) == tensors(exp), (config, name)
    # and a drift is seen: the paper's VGG layout under a first stage with batch norm everywhere
    [(first, exp)] = [(f, e) for c, f, e, n in pairs if n == "line_crnn_vgg_long"]
    assert first["model_kwargs"]["batch_norm_all"] is True
    drifted = {**exp, "model_kwargs": {**exp["model_kwargs"], "batch_norm_all": False}}
    assert tensors(first) != tensors(drifted)


def test_a_config_extends_a_file_relative_to_itself_and_the_base_may_extend_another(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "base.yaml").write_text("seed: 1\ntasks: {expr: {height: 40, width: 100}}\n")
    (tmp_path / "a" / "mid.yaml").write_text("extends: ../base.yaml\ntasks: {expr: {height: 48}}\n")
    (tmp_path / "a" / "top.yaml").write_text("extends: mid.yaml\nseed: 3\nfonts: {paths: [x]}\n")
    assert load_config_file(tmp_path / "a" / "top.yaml") == {
        "seed": 3,
        "tasks": {"expr": {"height": 48, "width": 100}},
        "fonts": {"paths": ["x"]},
    }


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"o.yaml": "extends: nowhere.yaml\n"}, r"o.yaml: extends: nowhere.yaml: no such file"),
        (
            {"o.yaml": "extends: p.yaml\n", "p.yaml": "extends: o.yaml\n"},
            r"extend each other: \S*/o.yaml -> \S*/p.yaml -> \S*/o.yaml",
        ),
        ({"o.yaml": "extends: o.yaml\n"}, "extend each other"),
        ({"o.yaml": "extends: [a.yaml]\n"}, r"o.yaml: extends: \['a.yaml'\]: give the path"),
        ({"o.yaml": "extends: p.yaml\n", "p.yaml": "- 1\n- 2\n"}, "p.yaml: a config is a mapping"),
        ({"o.yaml": "extends: p.yaml\n", "p.yaml": ""}, "p.yaml: the config file is empty"),
        ({"o.yaml": "extends: work\n"}, "extends: work: .*work is a folder"),
        (
            {"o.yaml": "extends: ${SYNTHOCR_NO_A}/$SYNTHOCR_NO_B/x.yaml\n"},
            r"no such file \(.*\); not set in the environment: \$SYNTHOCR_NO_A, \$SYNTHOCR_NO_B",
        ),
    ],
)
def test_a_config_that_extends_what_cannot_be_fails_at_parse_time_naming_it(
    tmp_path, files, message
):
    work = tmp_path / "work"
    work.mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config_file(tmp_path / "o.yaml")
    proc = run_snakemake(work, "-n", config=tmp_path / "o.yaml", check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), proc.stderr[-2000:]


def test_config_files_merge_in_order_each_on_its_own_base_then_the_command_lines(tmp_path):
    (tmp_path / "base1.yaml").write_text("seed: 1\ndevice: cpu\ntasks: {expr: {height: 40}}\n")
    (tmp_path / "one.yaml").write_text("extends: base1.yaml\ntasks: {expr: {width: 90}}\n")
    (tmp_path / "base2.yaml").write_text("seed: 2\ntasks: {expr: {height: 50}}\n")
    (tmp_path / "two.yaml").write_text("extends: base2.yaml\nreport: {reader_gifs: 1}\n")
    files = [tmp_path / "one.yaml", tmp_path / "two.yaml"]
    assert merge_config_files(files, {"seed": 9}) == {
        "seed": 9,  # --config last
        "device": "cpu",  # base1, which nothing after sets
        "tasks": {"expr": {"height": 50, "width": 90}},  # base2 over one.yaml's base
        "report": {"reader_gifs": 1},
    }
    with pytest.raises(ValueError, match="give it in a config file, not with --config"):
        merge_config_files(files, {"extends": "base1.yaml"})


def test_an_overlay_that_gives_an_experiment_another_model_is_warned_of(tmp_path):
    # Its settings, metrics and report rows were the old model's name's without a word.
    from synth.schema import renamed_models

    base, over = tmp_path / "base.yaml", tmp_path / "over.yaml"
    base.write_text(
        "experiments:\n  v: {task: line, model: crnn_vgg, model_kwargs: {hidden: 8}}\n"
        "  g: {task: line, model: crnn_grcnn}\n"
    )
    over.write_text(
        "extends: base.yaml\nexperiments:\n  v: {model: mine}\n"
        "  g: {model_kwargs: {hidden: 4}}\n  n: {task: line, model: mine}\n"
    )
    config, origins = config_with_origins([over])
    assert renamed_models(config, origins) == [
        f"experiments.v.model: mine ({over}) replaces the model of the experiment "
        f"{base.resolve()} defines, whose other settings (model_kwargs, task) it keeps; its "
        "model, metrics and report rows keep the name v. A model of your own reads more clearly "
        "under a new experiment name."
    ]
    config, origins = config_with_origins([over], {"experiments": {"g": {"model": "x"}}})
    assert [w.split(":")[0] for w in renamed_models(config, origins)] == [
        "experiments.g.model",
        "experiments.v.model",
    ]
    # The base's model set again, by a file or --config, replaces nothing: no word.
    over.write_text("extends: base.yaml\nexperiments: {v: {model: crnn_vgg, train: {steps: 9}}}\n")
    config, origins = config_with_origins([over], {"experiments": {"g": {"model": "crnn_grcnn"}}})
    assert renamed_models(config, origins) == []


def test_a_refused_name_is_said_in_words_and_blamed_on_the_file_that_wrote_it(tmp_path):
    """An experiment or own test name the schema's pattern refuses: what a name may be, not the
    regular expression, from the file that added it, not every file of the block."""
    over = tmp_path / "over.yaml"
    over.write_text(
        f"extends: {SMOKE}\nexperiments: {{my exp: {{task: line, model: crnn_vgg}}}}\n"
        "own_tests: {scans: {task: line, labels: x.tsv}}\n"
    )
    config, origins = config_with_origins([over])
    with pytest.raises(ValueError) as e:
        check_config(config, origins=origins)
    lines = str(e.value).splitlines()[1:]
    assert lines == [
        "  experiments: 'my exp' is not an experiment name (a lower-case letter, then lower-case "
        f"letters, digits or _); from {over}",
        "  own_tests: 'scans' is not an own test set's name (test_, then lower-case letters, "
        f"digits or _); from {over}",
    ], str(e.value)


def test_a_problem_of_a_merged_config_names_the_file_that_set_the_key(tmp_path):
    base, over, last = (tmp_path / n for n in ("base.yaml", "over.yaml", "last.yaml"))
    base.write_text("seed: 1\ntasks: {expr: {heigth: 40}}\n")
    over.write_text("extends: base.yaml\nexperiments: {x: {train: {stepz: 3}}}\n")
    last.write_text("device: gpu\n")
    config, origins = config_with_origins([over, last], {"sed": 2})
    assert config == merge_config_files([over, last], {"sed": 2})
    with pytest.raises(ValueError) as e:
        check_config(config, origins=origins)
    lines = str(e.value).splitlines()
    for expected in [
        f"tasks.expr.heigth: unknown key (did you mean 'height'?); from {base.resolve()}",
        f"experiments.x.train.stepz: unknown key (did you mean 'steps'?); from {over}",
        f"experiments.x: 'task' is a required property; from {over}",
        "sed: unknown key (did you mean 'seed'?); from --config",
    ]:
        assert f"  {expected}" in lines, str(e.value)
    assert any(line.startswith("  device: 'gpu' is not one of") for line in lines)
    assert any(line.endswith(f"; from {last}") for line in lines if "device" in line)
    # A key two files set is named by the last; a mapping's problem by every file under it.
    last.write_text("tasks: {expr: {heigth: 30, width: 90}}\nexperiments: {x: {model: m}}\n")
    config, origins = config_with_origins([over, last])
    with pytest.raises(ValueError) as e:
        check_config(config, origins=origins)
    assert f"tasks.expr.heigth: unknown key (did you mean 'height'?); from {last}" in str(e.value)
    assert f"experiments.x: 'task' is a required property; from {over}, {last}" in str(e.value)
    # An empty mapping laid on a key the others set changes nothing, and is named by nothing.
    empty = tmp_path / "empty.yaml"
    empty.write_text("experiments: {}\ntasks: {expr: {}}\n")
    config, origins = config_with_origins([over, last, empty])
    with pytest.raises(ValueError) as e:
        check_config(config, origins=origins)
    assert "empty.yaml" not in str(e.value) and f"; from {over}, {last}" in str(e.value)
    # One file: nothing to tell apart, the message is as it was.
    config, origins = config_with_origins([base])
    with pytest.raises(ValueError) as e:
        check_config(config, origins=origins)
    assert "; from" not in str(e.value) and "tasks.expr.heigth: unknown key" in str(e.value)


def test_the_workflow_and_the_training_command_name_the_file_of_a_bad_key(
    tmp_path, capsys, monkeypatch
):
    overlay, second = tmp_path / "o.yaml", tmp_path / "second.yaml"
    overlay.write_text(f"extends: {SMOKE}\nexperiments: {{expr_crnn: {{train: {{stepz: 5}}}}}}\n")
    second.write_text("tasks: {line: {lenght: [2, 4]}}\n")
    stepz = "experiments.expr_crnn.train.stepz: unknown key (did you mean 'steps'?); from"
    lenght = "tasks.line.lenght: unknown key (did you mean 'length'?); from"
    proc = run_snakemake(tmp_path, str(second), "-n", config=overlay, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # Named relative to the working folder they are in (Snakemake hands them over absolute)
    assert f"{stepz} o.yaml\n" in out and f"{lenght} second.yaml\n" in out
    with pytest.raises(SystemExit) as e:
        train_main(["--config", str(overlay), str(second), "--experiment", "expr_crnn"])
    assert e.value.code == 1  # the command's own error, not a usage error
    err = capsys.readouterr().err
    assert f"{stepz} {overlay}\n" in err and f"{lenght} {second}\n" in err
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        train_main(["--config", "o.yaml", "second.yaml", "--experiment", "expr_crnn"])
    assert e.value.code == 1  # the command's own error, not a usage error
    err = capsys.readouterr().err
    assert f"{stepz} o.yaml\n" in err and f"{lenght} second.yaml\n" in err


def test_the_checks_past_the_schema_name_the_file_too(tmp_path, capsys):
    """A model argument the model does not take, a missing charset or corpus file: refused when
    the workflow starts, as a schema problem is, naming the file that set it."""
    for key, text, message in [
        (
            "kwargs",
            "experiments: {line_crnn_vgg: {model_kwargs: {widht: 1}}}",
            "'widht'",
        ),
        ("files", "tasks: {line: {charset: {files: [nowhere.txt]}}}", "nowhere.txt does not"),
        ("corpus", "tasks: {line: {corpus: [nowhere.txt]}}", "nowhere.txt does not exist"),
        (
            "space",
            "tasks: {hanzi: {charset: {space: true}}}",
            "tasks.hanzi.charset.space: only the line task draws spaces",
        ),
        (
            "nocorpus",
            "tasks: {line: {charset: {space: true}}}",
            "tasks.line.charset.space: only lines of your own text hold spaces",
        ),
        (
            "unread",  # a corpus the lines never draw from (its file is not even read)
            "tasks: {line: {corpus: [nowhere.txt], corpus_fraction: 0, charset: {space: true}}}",
            "tasks.line.charset.space: only lines of your own text hold spaces",
        ),
        (
            "init",
            "experiments: {expr_crnn: {train: {init_from: nowhere.pt}}}",
            "experiments.expr_crnn.train.init_from: nowhere.pt does not exist",
        ),
        (
            "ownname",
            "own_tests: {test_seen: {task: expr, labels: x.tsv}}",
            "own_tests.test_seen: a split of the synthetic data has that name",
        ),
        (
            "ownlabels",
            "own_tests: {test_mine: {task: expr, labels: nowhere.tsv}}",
            "own_tests.test_mine.labels: nowhere.tsv is not a file",
        ),
        (
            "frequent",
            "tasks: {expr: {charset: {most_frequent: 5}}}",
            "tasks.expr.charset.most_frequent: 5 shrinks the source, and source chars has none",
        ),
    ]:
        overlay = tmp_path / f"{key}.yaml"
        overlay.write_text(f"extends: {SMOKE}\n{text}\n")
        proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert re.search(f"{message}.*; from {key}.yaml", out), out[-2000:]
    # A clash between two keys (the model's input height, the task's) names both keys and no
    # file: the file of either could be the one to change.
    overlay = tmp_path / "height.yaml"
    overlay.write_text(f"extends: {SMOKE}\ntasks: {{line: {{height: 48}}}}\n")
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    out = proc.stdout + proc.stderr
    assert "expects height 32 px but tasks.line.height is 48" in out and "; from" not in out
    # models.train names the file the same way, and no list of every file before it
    kwargs = tmp_path / "kwargs.yaml"
    with pytest.raises(SystemExit) as e:
        train_main(["--config", str(SMOKE), str(kwargs), "--experiment", "line_crnn_vgg"])
    assert e.value.code == 1  # the command's own error, not a usage error
    err = capsys.readouterr().err
    assert re.search(
        rf"error: invalid config \(1 problem\):\n +"
        rf"experiments\.line_crnn_vgg\.model_kwargs\.widht: .*; from {kwargs}",
        err,
    )


def test_an_empty_experiment_of_an_overlay_is_named_with_its_file(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"extends: {SMOKE}\nexperiments: {{mine: {{}}}}\n")
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    assert "experiments.mine: 'task' is a required property; from o.yaml" in proc.stdout


def test_a_config_reached_through_a_symlink_or_home_extends_from_where_it_is(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "real" / "base.yaml").write_text("seed: 5\n")
    (tmp_path / "real" / "over.yaml").write_text("extends: base.yaml\ndevice: cpu\n")
    (tmp_path / "links" / "over.yaml").symlink_to(tmp_path / "real" / "over.yaml")
    assert load_config_file(tmp_path / "links" / "over.yaml") == {"seed": 5, "device": "cpu"}
    monkeypatch.setenv("HOME", str(tmp_path / "real"))
    (tmp_path / "home.yaml").write_text("extends: ~/base.yaml\n")
    assert load_config_file(tmp_path / "home.yaml") == {"seed": 5}


def test_an_overlays_misspelt_experiment_is_named_with_the_one_it_meant(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        f"extends: {os.path.relpath(SMOKE, tmp_path)}\n"
        "experiments: {line_crnn_vg: {train: {steps: 5}}}\n"
    )
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    assert proc.returncode != 0
    assert (
        "experiments.line_crnn_vg: 'task' is a required property (a new experiment; did you "
        "mean 'line_crnn_vgg'?)" in proc.stdout + proc.stderr
    )
    proc = run_snakemake(tmp_path, "-n", "--config", "extends=x.yaml", config=overlay, check=False)
    assert proc.returncode != 0
    assert "extends: give it in a config file, not with --config" in proc.stdout + proc.stderr


def test_a_mapping_given_in_part_takes_the_rest_from_its_own_default():
    """A line charset given only most_frequent took the charset definition's source (chars,
    and no chars: an empty charset), and a val split given only its shards the definition's
    100 samples, not the 50 the split's own default says."""
    from synth.schema import with_defaults

    partial = {"tasks": {"line": {"charset": {"most_frequent": 1000}}}}
    partial["tasks"]["expr"] = {"splits": {"val": {"shards": 2}}}
    filled = with_defaults(partial)
    assert filled["tasks"]["line"]["charset"]["source"] == "line"
    assert filled["tasks"]["expr"]["splits"]["val"] == {"shards": 2, "samples": 50}
    whole = with_defaults({})
    assert whole["tasks"]["expr"]["splits"]["val"] == {"shards": 1, "samples": 50}
    assert whole["tasks"]["line"]["charset"]["source"] == "line"


# Keys the schema gives no default, each on purpose: unset is a setting of its own.
UNSET_KEYS = {
    "extends",  # no base config
    "tasks.*.charset.space",  # unset keeps the hashes of configs written before it
    "tasks.expr.oldstyle",  # likewise
    "tasks.line.corpus",  # jieba's dictionary
    "experiments.*.seed",  # the root seed
}


def test_every_config_key_has_a_description_and_a_default():
    """The schema describes every key (on the key or the definition it refers to) and gives
    every key not required a default, but for `UNSET_KEYS`."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    definitions = schema["definitions"]

    def resolved(node):
        """A property with the definition it refers to laid under it (its own keys win)."""
        while "$ref" in node:
            node = dict(node)
            ref = node.pop("$ref")
            node = {**definitions[ref.rsplit("/", 1)[1]], **node}
        return node

    undescribed, unset = set(), set()

    def walk(node, path):
        node = resolved(node)
        required = set(node.get("required", ()))
        for key, prop in (node.get("properties") or {}).items():
            key_path = f"{path}.{key}" if path else key
            prop = resolved(prop)
            if not prop.get("description"):
                undescribed.add(key_path)
            if "default" not in prop and key not in required:
                unset.add(key_path)
            walk(prop, key_path)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}.*")

    walk(schema, "")
    generic = {
        re.sub(r"^tasks\.(hanzi|expr|line|short)\.charset", "tasks.*.charset", k) for k in unset
    }
    assert not undescribed, sorted(undescribed)
    assert generic == UNSET_KEYS


def test_the_readmes_variant_is_the_default_experiment_it_varies_but_for_what_it_compares(
    tmp_path,
):
    """README, Configuration: a new experiment takes nothing from the one it varies (a copy that
    gave only its learning rate trained a crnn_vgg of width 1 for 1000 steps without the
    alignment loss beside line_crnn_vgg), so the README's example copies it whole: the copy is
    the default config's line_crnn_vgg but for lr, and its seed copy that one but for seed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# mine/vgg_lr\.yaml:.*?)```", readme, re.S)
    assert block, "README, Configuration: the mine/vgg_lr.yaml example is gone"
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "vgg_lr.yaml").write_text(block.group(1), encoding="utf-8")
    _, filled = read_workflow_config([tmp_path / "mine" / "vgg_lr.yaml"])
    experiments = filled["experiments"]
    base, copy = experiments["line_crnn_vgg"], experiments["line_crnn_vgg_lr4"]
    assert copy["train"]["lr"] == 2 * base["train"]["lr"]
    assert {**copy, "train": {**copy["train"], "lr": base["train"]["lr"]}} == base
    assert experiments["line_crnn_vgg_lr4_s2"] == {**copy, "seed": 2}


def test_a_config_of_one_key_takes_the_schemas_defaults_for_the_rest(
    tmp_path, cjk_font, heldout_font
):
    config = tmp_path / "seed.yaml"
    config.write_text("seed: 1\n")
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    # the default fonts.paths, fonts/*, matches nothing in an empty folder: said before any job
    assert proc.returncode != 0
    assert "font pattern fonts/* matches no font file" in proc.stdout + proc.stderr
    assert "fonts.paths: ['fonts/*'] match no font file to train with" in proc.stdout
    (tmp_path / "fonts").mkdir()
    shutil.copy(cjk_font, tmp_path / "fonts")
    # no held-out font (the default lists none): said before any job, not after every training
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    assert "fonts.test_fonts: no held-out font is listed; the test_heldout split" in proc.stdout
    config.write_text(f"seed: 1\nfonts: {{test_fonts: [{heldout_font}]}}\n")
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_every_config_problem_is_listed_by_its_key_without_the_schema(tmp_path):
    def edit(c):
        c["sed"] = c.pop("seed")
        c["tasks"]["expr"]["heigth"] = 60
        c["tasks"]["hanzi"]["splits"]["train"]["samples"] = -3
        c["experiments"]["expr_crnn"]["train"]["lr"] = "fast"
        c["experiments"]["hanzi_cnn"]["train"]["zzz"] = 1

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid config (5 problems):" in out
    for line in [
        "sed: unknown key (did you mean 'seed'?)",
        "tasks.expr.heigth: unknown key (did you mean 'height'?)",
        "tasks.hanzi.splits.train.samples: -3 is less than the minimum of 1",
        "experiments.expr_crnn.train.lr: 'fast' is not of type 'number'",
        "experiments.hanzi_cnn.train.zzz: unknown key (valid: align_steps, align_weight, amp,",
    ]:
        assert line in out
    assert "$schema" not in out and len(out.splitlines()) < 40  # not the 2000-line schema


def test_a_tasks_own_setting_that_fails_every_split_is_said_once(tmp_path, capsys):
    """A task's setting that no split's spec accepts was listed once per split (four times,
    the count of problems with it), and a space asked of the short task named a corpus key the
    short task does not have."""
    from models.configcheck import main as configcheck

    config = tmp_path / "mine.yaml"
    config.write_text(
        f"extends: {os.path.relpath(SMOKE, tmp_path)}\n"
        "tasks: {expr: {operators: '++'}, short: {charset: {space: true}}}\n"
    )
    divide = tmp_path / "divide.yaml"  # "/" drawn, and no charset to hold it: a shard job's error
    divide.write_text(
        f"extends: {os.path.relpath(SMOKE, tmp_path)}\ntasks: {{expr: {{operators: '+-*/'}}}}\n"
    )
    assert configcheck([str(divide)]) == 1
    assert (
        "tasks.expr.operators: '/' is not in tasks.expr.charset.chars ('0123456789+-*()'): no "
        "expression could draw it; add it to tasks.expr.charset.chars" in capsys.readouterr().err
    )
    # full-width characters hold their NFKC forms, as the built charset does
    divide.write_text(
        f"extends: {os.path.relpath(SMOKE, tmp_path)}\n"
        "tasks: {expr: {operators: '+-*/', charset: {chars: '０１２３４５６７８９＋－＊／（）'}}}\n"
    )
    assert configcheck([str(divide)]) == 0, capsys.readouterr().err
    assert configcheck([str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {config}: invalid config (2 problems):",
        f"  tasks.expr.operators: '++' must be distinct characters of '+-*/'; from {config}",
        "  tasks.short.charset.space: only the line task draws spaces between words; "
        f"from {config}",
    ]


def test_settings_that_would_fail_a_shard_job_are_refused_by_key_when_the_config_is_read(
    tmp_path,
):
    """Values of the right type that no drawing can use (a noise of zero photons, a font size
    under a pixel, numbers past int64) are named by key before any job runs, not by the shard
    job's ZeroDivisionError; a split's degrade is held to the task's degrade schema too."""

    def edit(c):
        c["tasks"]["short"]["degrade"] = {"poisson_noise": {"p": 1, "photons": [0, 5]}}
        c["tasks"]["short"]["font_size"] = [0.4, 14]  # the line task's fraction, by mistake
        c["tasks"]["expr"]["max_digits"] = 25
        c["tasks"]["expr"]["splits"]["test_heldout"]["degrade"] = {
            "affine": {"scale": [0, 1], "shearr": 0.1},
            "gamma_noise": {"shape": "low"},
        }

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid config (6 problems):" in out, out[-3000:]
    for line in [
        "tasks.short.degrade.poisson_noise.photons.0: 0 is less than or equal to the minimum of 0",
        "tasks.short.font_size.0: 0.4 is less than the minimum of 1",
        "tasks.expr.max_digits: 25 is greater than the maximum of 18",
        "tasks.expr.splits.test_heldout.degrade.affine.scale.0: 0 is less than or equal to the "
        "minimum of 0",
        "tasks.expr.splits.test_heldout.degrade.affine.shearr: unknown key (did you mean 'shear'?)",
        "tasks.expr.splits.test_heldout.degrade.gamma_noise.shape: 'low' is not of type 'array'",
    ]:
        assert line in out, out[-3000:]


def test_a_splits_degrade_keeps_only_what_it_changes_once_checked():
    """The schema checks a split's degrade as a task's, but fills in none of its defaults:
    written there, they would override the task's own settings for that split."""
    config = load_config_file(DEFAULT)
    checked = check_schema(config)
    assert not checked.problems
    for task, settings in config["tasks"].items():
        for split, split_settings in settings["splits"].items():
            filled = checked.config["tasks"][task]["splits"][split]
            assert filled.get("degrade") == split_settings.get("degrade"), (task, split)
    assert checked.config["tasks"]["expr"]["splits"]["test_heldout"]["degrade"] == {
        "legible": {"ink": "stroke"}
    }


def test_ctc_output_shorter_than_labels_is_rejected(tmp_path):
    def edit(c):
        c["tasks"]["line"]["min_char_width"] = 2  # T = W/4 would be < 2L+1

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert "line_crnn" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_dag_runs_end_to_end(smoke_run):
    with open(smoke_run / "results" / "crnn_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    experiments = {r["experiment"] for r in rows}
    assert {"expr_crnn", "line_crnn_vgg", "line_crnn_grcnn"} <= experiments
    assert {r["split"] for r in rows} == {"test_seen", "test_heldout"}
    for r in rows:
        if r["experiment"] != "tesseract":
            assert 0.0 <= float(r["seq_acc"]) <= 1.0
            assert int(r["n"]) > 0
    # Tesseract beside every model, the reader too (make test installs it)
    for table, tasks in [
        ("crnn_report.csv", {"expr", "line"}),
        ("hanzi_report.csv", {"hanzi"}),
        ("reader_report.csv", {"short"}),
    ]:
        with open(smoke_run / "results" / table, newline="") as f:
            peer = [r for r in csv.DictReader(f) if r["experiment"] == "tesseract"]
        overall = [r for r in peer if r.get("font", "all") == "all"]
        assert {(r["task"], r["split"]) for r in overall} == {
            (t, s) for t in tasks for s in ("test_seen", "test_heldout")
        }, table
        assert all(r["model"].startswith("tesseract 5") and int(r["n"]) > 0 for r in overall)
    for task in ("hanzi", "expr", "line", "short"):
        assert (smoke_run / "results" / "samples" / f"{task}.png").stat().st_size > 0
        manifest = (smoke_run / "results" / "shards" / task / "manifest.tsv").read_text()
        assert "sha256" in manifest
    # The grammar decoder holds expr readings to the expressions tasks.expr draws (its defaults)
    metrics = json.loads(
        (smoke_run / "results" / "eval" / "expr_crnn" / "test_heldout" / "metrics.json").read_text()
    )
    assert metrics["decoder"] == "grammar"
    assert metrics["grammar"] == {
        "operand_counts": [2, 3, 4, 5],
        "max_digits": 2,
        "operators": "+-*",
    }


SMOKE_CONFIG = yaml.safe_load(SMOKE.read_text())
REPORT_FAMILY = {"crnn": {"expr", "line"}, "hanzi": {"hanzi"}, "reader": {"short"}}


def _smoke_experiments(task: str | None = None) -> list[str]:
    return sorted(
        e for e, exp in SMOKE_CONFIG["experiments"].items() if task in (None, exp["task"])
    )


@pytest.mark.slow
def test_the_smoke_run_makes_every_output_the_readme_lists(smoke_run):
    """Every path of the README's Outputs section that `snakemake all` makes for the smoke
    config (no own_tests, no TensorBoard), each image readable, the plots no more and no fewer
    than the experiments' families call for, and summary.md linking every one of them."""
    from PIL import Image

    results = smoke_run / "results"
    tasks = sorted(SMOKE_CONFIG["tasks"])
    expected = [results / "fonts" / "coverage.tsv", results / "summary.md"]
    expected += [results / f"{kind}_report.csv" for kind in REPORT_FAMILY]
    for task in tasks:
        expected += [results / "charsets" / f"{task}.txt", results / "samples" / f"{task}.png"]
        expected += [results / "fonts" / task / f"{role}.tsv" for role in ("train", "test")]
        expected.append(results / "shards" / task / "manifest.tsv")
        for split, spec in SMOKE_CONFIG["tasks"][task]["splits"].items():
            expected += [
                results / "shards" / task / f"{split}-{i:06d}.tar" for i in range(spec["shards"])
            ]
        for split in ("test_seen", "test_heldout"):  # Tesseract reads every task in the smoke
            expected += [
                results / "eval" / "tesseract" / task / split / name
                for name in ("metrics.json", "predictions.csv")
            ]
    plots = {
        results / "plots" / n
        for n in ("accuracy_by_font.png", "accuracy_by_experiment.png", "compare_curves.png")
    }
    gifs = SMOKE_CONFIG["report"]["reader_gifs"]
    for e in _smoke_experiments():
        folder = results / "models" / e
        expected += [folder / n for n in ("model.pt", "history.csv", "train.json", "train.lock")]
        assert (folder / "resume").is_dir() and any((folder / "resume").iterdir()), e
        assert not (folder / "tb").exists(), e  # the smoke config leaves train.tensorboard off
        for split in ("test_seen", "test_heldout"):
            expected += [
                results / "eval" / e / split / n for n in ("metrics.json", "predictions.csv")
            ]
        plots |= {results / "plots" / e / n for n in ("curves.png", "predictions_test_seen.png")}
        plots.add(results / "plots" / e / "predictions_test_heldout.png")
        model = SMOKE_CONFIG["experiments"][e]["model"]
        if model == "hanzi_cnn":
            plots.add(results / "plots" / e / "confusions.png")
        if model == "reader":
            plots |= {results / "plots" / e / f"attention_{i}.gif" for i in range(gifs)}
    assert not (results / "own").exists()  # no own_tests in the smoke config
    missing = [str(p.relative_to(smoke_run)) for p in expected + sorted(plots) if not p.is_file()]
    assert not missing, missing
    made = {p for p in (results / "plots").rglob("*") if p.is_file()}
    assert made == plots, sorted(str(p.relative_to(results)) for p in made ^ plots)
    for image in sorted(plots) + [results / "samples" / f"{t}.png" for t in tasks]:
        with Image.open(image) as im:
            assert im.format == ("GIF" if image.suffix == ".gif" else "PNG"), image
            assert im.width > 0 and im.height > 0, image
            im.load()  # the whole file decodes, not its header alone
    summary = (results / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# synthocr results\n"), summary[:200]
    for e in _smoke_experiments():
        assert f"| {e} |" in summary, e
    linked = set(re.findall(r"\]\((plots/[^)]+)\)", summary))
    assert {str(p.relative_to(results)) for p in plots} == linked, linked


@pytest.mark.slow
def test_the_smoke_runs_models_and_curves_are_the_configs(smoke_run):
    """Each model.pt loads from the file alone and its meta names the experiment's model, task,
    arguments and charset; history.csv logs every step up to train.steps, validation at every
    val_every; train.json records the steps."""
    from models.checkpoint import load_model
    from synth.charset import read_charset

    for e, exp in SMOKE_CONFIG["experiments"].items():
        folder = smoke_run / "results" / "models" / e
        model, meta = load_model(folder / "model.pt")
        assert not model.training, e
        assert (meta.model, meta.task) == (exp["model"], exp["task"]), e
        kwargs = exp.get("model_kwargs", {})
        assert {k: meta.model_kwargs.get(k) for k in kwargs} == kwargs, e
        charset = smoke_run / "results" / "charsets" / f"{exp['task']}.txt"
        assert meta.charset == read_charset(charset), e
        train = exp["train"]
        assert meta.step == train["steps"], e
        with open(folder / "history.csv", newline="") as f:
            history = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in history]
        assert steps == list(range(train["log_every"], train["steps"] + 1, train["log_every"]))
        validated = [int(r["step"]) for r in history if r["val_loss"] != ""]
        assert validated == list(range(train["val_every"], train["steps"] + 1, train["val_every"]))
        assert all(float(r["train_loss"]) >= 0 for r in history), e
        # the alignment loss (line_crnn_vgg's align_weight) logged at every step it trained
        aligned = [float(r["align_loss"]) for r in history if r["align_loss"] != ""]
        assert len(aligned) == (len(history) if train.get("align_weight") else 0), e
        assert all(v > 0 for v in aligned), e
        recorded = json.loads((folder / "train.json").read_text())
        assert recorded["train"]["steps"] == train["steps"], e


def _report_record(results: Path, row: dict[str, str]) -> dict:
    """The metrics.json figures a report row stands for (a per-font row: that font's)."""
    if row["experiment"] == "tesseract":
        folder = results / "eval" / "tesseract" / row["task"] / row["split"]
    else:
        folder = results / "eval" / row["experiment"] / row["split"]
    record = json.loads((folder / "metrics.json").read_text())
    font = row.get("font", "all")
    if font != "all":
        record = {**record, **record["per_font"][font], "eval_img_per_s": None}
    return record


@pytest.mark.slow
def test_the_smoke_runs_report_rows_are_their_metrics_files(smoke_run):
    """Every cell of every report table is the figure of its metrics.json (floats to the six
    significant digits the CSVs keep; ``interval_95`` the Wilson interval of its headline share
    over its n), and every metrics.json has its rows: one per split, the classifier's and the
    reader's one more per font."""
    from models.metrics import wilson_interval

    results = smoke_run / "results"
    for kind, tasks in REPORT_FAMILY.items():
        with open(results / f"{kind}_report.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        keys = set()
        for row in rows:
            record = _report_record(results, row)
            keys.add((row["experiment"], row["task"], row["split"], row.get("font", "all")))
            assert record["task"] == row["task"] and record["split"] == row["split"], row
            for column, cell in row.items():
                if column == "font":
                    continue
                value = record.get(column)
                where = (kind, row["experiment"], row["split"], row.get("font"), column)
                if column in ("model_kwargs", "train_settings"):
                    pairs = (kv.split("=", 1) for kv in cell.split())
                    assert {k: json.loads(v) for k, v in pairs} == (value or {}), where
                elif column == "interval_95":
                    share = record.get("top1" if "top1" in row else "seq_acc")
                    if share is None or not record.get("n"):
                        assert cell == "", where
                    else:
                        low, high = (float(x) for x in cell.split("-"))
                        want = wilson_interval(share, record["n"])
                        assert (low, high) == pytest.approx(want, abs=6e-5), where
                elif value is None:
                    assert cell == "", where
                elif isinstance(value, float):
                    assert float(cell) == pytest.approx(value, rel=1e-5, abs=1e-9), where
                else:
                    assert cell == str(value), where
            # seed copies of an experiment differ by their seed cell; Tesseract has none
            if row["experiment"] == "tesseract":
                assert row["seed"] == row.get("decoder", "") == "", row
            else:
                exp = SMOKE_CONFIG["experiments"][row["experiment"]]
                assert row["seed"] == str(exp.get("seed", SMOKE_CONFIG["seed"])), row
                if kind != "hanzi":  # the classifier's argmax has no decoder to choose
                    assert row["decoder"] == exp.get("eval", {}).get("decoder", "greedy"), row
        wanted = set()
        for task in tasks:
            for split in ("test_seen", "test_heldout"):
                for e in [*_smoke_experiments(task), "tesseract"]:
                    wanted.add((e, task, split, "all"))
                    if kind == "crnn":
                        continue
                    record = _report_record(
                        results, {"experiment": e, "task": task, "split": split}
                    )
                    wanted |= {(e, task, split, font) for font in record["per_font"]}
        assert keys == wanted, (kind, keys ^ wanted)
        assert len(rows) == len(keys), kind  # no row twice


@pytest.mark.slow
def test_the_smoke_runs_manifests_and_coverage_tables_hold_what_they_describe(smoke_run):
    """A manifest row per shard of the task, its sha256, size and sample count those of the
    file itself; the coverage tables' columns as documented (the faces' columns, then each
    task's chars covered and missing), each face's covered and missing adding up to the task's
    charset as drawn from its source."""
    import hashlib
    import tarfile

    from synth.fonts import COLUMNS

    results = smoke_run / "results"
    for task, spec in SMOKE_CONFIG["tasks"].items():
        folder = results / "shards" / task
        lines = (folder / "manifest.tsv").read_text().splitlines()
        header = ["split", "shard", "path", "samples", "bytes", "sha256"]
        assert lines[0].split("\t") == header, task
        rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
        shards = {
            (s, f"{s}-{i:06d}.tar") for s, x in spec["splits"].items() for i in range(x["shards"])
        }
        assert {(r["split"], r["shard"]) for r in rows} == shards and len(rows) == len(shards)
        for r in rows:
            shard = folder / r["path"]
            assert shard.name == r["shard"], r
            assert r["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest(), r
            assert int(r["bytes"]) == shard.stat().st_size, r
            with tarfile.open(shard) as tar:
                pngs = [m for m in tar.getmembers() if m.name.endswith(".png")]
            assert int(r["samples"]) == len(pngs) == spec["splits"][r["split"]]["samples"], r
    assert {"path", "face", "family", "role", "status"} <= set(COLUMNS)
    tasks = sorted(SMOKE_CONFIG["tasks"])
    charsets = {t: task_spec(t, SMOKE_CONFIG["tasks"][t]).charset.build() for t in tasks}
    per_task = {}
    for task in tasks:
        for role in ("train", "test"):
            with open(results / "fonts" / task / f"{role}.tsv", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t")
                assert reader.fieldnames == [*COLUMNS, f"{task}_covered", f"{task}_missing"]
                rows = list(reader)
            assert rows and {r["role"] for r in rows} == {role}, (task, role)
            ok = [r for r in rows if r["status"] == "ok"]
            assert ok, (task, role)
            for r in ok:
                missing = r[f"{task}_missing"]
                assert set(missing) <= set(charsets[task]), (task, r["path"])
                assert int(r[f"{task}_covered"]) + len(missing) == len(charsets[task]), r
            for r in rows:
                per_task.setdefault((r["role"], r["path"], r["face"]), {}).update(r)
    with open(results / "fonts" / "coverage.tsv", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        extra = [f"{t}_{k}" for t in tasks for k in ("covered", "missing")]
        assert reader.fieldnames == COLUMNS + extra
        merged = {(r["role"], r["path"], r["face"]): r for r in reader}
    # a face a task's tables do not list has that task's cells empty
    assert merged == {k: {**dict.fromkeys(extra, ""), **r} for k, r in per_task.items()}
    assert {role for role, _, _ in merged} == {"train", "test"}


def test_a_missing_font_file_fails_at_parse_time_naming_it(tmp_path):
    # where relative paths are read from is said only when a pattern is relative
    for missing, hint in [
        ("/usr/share/fonts/nowhere/Missing-Regular.ttf", False),
        ("myfonts/Missing-Regular.ttf", True),
    ]:
        config = _write_config(tmp_path, lambda c, m=missing: c["fonts"]["paths"].append(m))
        proc = run_snakemake(tmp_path, "-n", config=config, check=False)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert f"{missing} does not exist (fonts.paths)" in out
        assert (f"relative paths are read from {tmp_path}" in out) == hint, out[-2000:]


def test_training_fonts_that_match_nothing_fail_at_parse_time(tmp_path):
    def edit(c):
        c["fonts"]["paths"] = ["fonts/*.otf"]  # a glob over an empty folder: skipped, warned

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert "fonts.paths: ['fonts/*.otf'] match no font file to train with" in proc.stdout


def test_held_out_fonts_that_match_nothing_fail_at_parse_time(tmp_path, heldout_font):
    """A typo in fonts.test_fonts is said before any job runs, naming the key and the file
    that set it; it used to be a warning, then every model trained before the first held-out
    shard job failed. An absolute pattern gets no words on the working folder."""
    typo = str(heldout_font.with_name("ukia*.ttc"))
    overlay = tmp_path / "typo.yaml"
    overlay.write_text(
        f"extends: {_write_config(tmp_path, lambda c: None)}\nfonts: {{test_fonts: ['{typo}']}}\n"
    )
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    assert proc.returncode != 0
    assert (
        f"fonts.test_fonts: ['{typo}'] match no font file to hold out; the test_heldout split "
        "of every task draws with them"
    ) in proc.stdout
    assert "; from typo.yaml" in proc.stdout and "relative paths are read" not in proc.stdout
    assert "Job stats" not in proc.stdout  # no job was planned


def test_a_missing_charset_file_fails_at_parse_time_naming_its_key(tmp_path):
    def edit(c):
        c["tasks"]["line"]["charset"] = {"source": "chars", "files": ["mychars_typo.txt"]}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert "tasks.line.charset.files: mychars_typo.txt does not exist" in proc.stdout + proc.stderr
    (tmp_path / "mychars").mkdir()  # a folder is said to be one, not to be missing

    def folder(c):
        c["tasks"]["line"]["charset"] = {"source": "chars", "files": ["mychars"]}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, folder), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "tasks.line.charset.files: mychars is a folder, not a text file" in out


def test_a_charset_file_that_is_a_pipe_or_a_charset_of_nothing_fails_at_parse_time(tmp_path):
    """A FIFO was said not to exist (and reading it would block the job); source chars with no
    character passed the dry run and failed in the coverage job, naming no key."""
    os.mkfifo(tmp_path / "chars.fifo")

    def pipe(c):
        c["tasks"]["line"]["charset"] = {"source": "chars", "files": ["chars.fifo"]}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, pipe), check=False)
    assert proc.returncode != 0
    assert "tasks.line.charset.files: chars.fifo is not a regular file (a pipe" in proc.stdout

    def nothing(c):
        c["tasks"]["expr"]["charset"] = {"source": "chars", "chars": ""}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, nothing), check=False)
    assert proc.returncode != 0
    assert "tasks.expr.charset: source chars, and chars and files give no character" in (
        proc.stdout
    )


def test_a_missing_line_corpus_fails_at_parse_time_naming_its_key(tmp_path):
    def edit(c):
        c["tasks"]["line"]["corpus"] = ["my_news_typo.txt"]

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert "tasks.line.corpus: my_news_typo.txt does not exist" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a folder, not a text file"),
        (lambda p: p.write_text(""), "is empty"),
        (lambda p: None, "does not exist"),
        (lambda p: os.mkfifo(p), "is not a regular file (a pipe, a device or a socket)"),
        (lambda p: p.symlink_to(p.parent / "gone.txt"), "is a broken link"),
        (lambda p: p.write_text(" \n\u3000\t\n", encoding="utf-8"), "holds only whitespace"),
        (lambda p: p.write_bytes(b"\xef\xbb\xbf"), "is empty (a byte-order mark alone)"),
        (lambda p: p.write_bytes(b"\xef\xbb\xbf\r\n"), "holds only whitespace"),
        (lambda p: p.write_bytes("今天".encode("gb2312")), "is not UTF-8 text (byte 0: b'\\xbd')"),
    ],
)
def test_a_line_corpus_that_cannot_be_read_fails_at_parse_time_naming_it(tmp_path, make, message):
    make(tmp_path / "news.txt")
    config = _write_config(tmp_path, lambda c: c["tasks"]["line"].update(corpus=["news.txt"]))
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    assert f"tasks.line.corpus: news.txt {message}" in proc.stdout + proc.stderr


def test_a_corpus_the_lines_never_draw_from_is_not_read(tmp_path, capsys):
    """With corpus_fraction 0 the shard jobs never read tasks.line.corpus, nor does the check
    when the workflow starts: a corpus switched off keeps its path, there or not."""
    from models.configcheck import main as configcheck

    config = tmp_path / "off.yaml"
    config.write_text(
        f"extends: {os.path.relpath(SMOKE, tmp_path)}\n"
        "tasks: {line: {corpus: [nowhere.txt], corpus_fraction: 0}}\n"
    )
    assert configcheck([str(config)]) == 0, capsys.readouterr().err


def test_an_overlay_takes_back_its_bases_corpus_with_null(smoke_run, tmp_path):
    corpus = tmp_path / "news.txt"
    corpus.write_text("今天天气很好。\n", encoding="utf-8")
    base = _write_config(tmp_path, lambda c: c["tasks"]["line"].update(corpus=[str(corpus)]))
    overlay = tmp_path / "back.yaml"
    overlay.write_text(f"extends: {base.name}\ntasks: {{line: {{corpus: null}}}}\n")
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=overlay).stdout)
    # jieba's dictionary again, as the smoke config the run was made with: null is unset, as
    # the schema says, so nothing is redrawn (it was a setting of its own, and redrew the lines)
    assert [rule for rule, _ in jobs if rule in ("shard", "train")] == [], jobs


def test_setting_a_line_corpus_reruns_only_the_line_jobs(smoke_run, tmp_path):
    corpus = tmp_path / "news.txt"
    corpus.write_text("今天天气很好，我们去公园散步。\n", encoding="utf-8")
    config = _write_config(tmp_path, lambda c: c["tasks"]["line"].update(corpus=[str(corpus)]))
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=config).stdout)
    splits = {w["split"] for rule, w in jobs if rule == "shard"}
    assert splits == {"train", "val", "test_seen", "test_heldout"}
    for rule, wildcards in jobs:
        assert wildcards.get("task", "line") == "line", (rule, wildcards)
        assert wildcards.get("experiment", "line_").startswith("line_"), (rule, wildcards)


def test_a_line_corpus_is_drawn_from_and_an_edit_of_it_redraws_the_line_shards(tmp_path):
    smoke_line = yaml.safe_load(SMOKE.read_text())["tasks"]["line"]
    hanzi = [c for c in task_spec("line", smoke_line).charset.build() if is_hanzi(c)]
    corpus = tmp_path / "mine.txt"
    text = "".join(hanzi[(i * 7) % len(hanzi)] for i in range(100))  # a text of its hanzi
    corpus.write_text(text + "\n龘\n", encoding="utf-8")

    def edit(c):
        c["tasks"]["line"].update(corpus=[str(corpus)], corpus_fraction=1.0, mix_fraction=0.0)

    config = _write_config(tmp_path, edit)
    workdir = tmp_path / "run"
    workdir.mkdir()
    target = ["--cores", "2", "results/shards/line/val-000000.tar"]
    run_snakemake(workdir, *target, config=config)
    shard = workdir / "results/shards/line/val-000000.tar"
    texts = [json.loads(s["json"])["text"] for s in wds.WebDataset(str(shard), shardshuffle=False)]
    assert len(texts) == 20 and all(t and t in text for t in texts)
    log = (workdir / "logs/shard/line/val-000000.log").read_text()
    assert f"tasks.line.corpus: {corpus}: 1 of its" in log and "'龘' (U+9F98) x1" in log
    assert _jobs(run_snakemake(workdir, "-n", *target, config=config).stdout) == []
    # The file is an input of the shard jobs: an edit redraws them (and nothing else).
    corpus.write_text(text[::-1], encoding="utf-8")
    jobs = _jobs(run_snakemake(workdir, "-n", *target, config=config).stdout)
    assert [(rule, w["split"]) for rule, w in jobs] == [("shard", "val")]
    # With corpus_fraction 0 the shard jobs do not read it: not an input, a missing one passes.
    corpus.unlink()
    unread = _write_config(
        tmp_path, lambda c: edit(c) or c["tasks"]["line"].update(corpus_fraction=0.0)
    )
    proc = run_snakemake(workdir, "-n", *target, config=unread, check=False)
    inputs = [line for line in proc.stdout.splitlines() if line.strip().startswith("input:")]
    assert proc.returncode == 0 and inputs, proc.stderr[-2000:]
    assert not any("mine.txt" in line for line in inputs)


OWN = "is this experiment's own model"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("results/models/expr_crnn/model.pt", OWN),
        ("./results//models/expr_crnn/model.pt", OWN),  # however it is spelled
        ("{workdir}/results/models/expr_crnn/model.pt", OWN),
        ("{link}/results/models/expr_crnn/model.pt", OWN),  # the working folder by a symlink
        ("nowhere/model.pt", "does not exist and no experiment makes it"),
        ("results/models/gone/model.pt", "makes it (the config has no experiment 'gone')"),
        # another architecture's model: known before that experiment trains
        (
            "results/models/line_crnn_vgg/model.pt",
            "is experiment line_crnn_vgg's model (crnn_vgg); this experiment trains expr_crnn",
        ),
    ],
)
def test_fine_tuning_from_its_own_model_or_no_file_fails_at_parse_time(tmp_path, path, message):
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    path = path.format(workdir=tmp_path, link=f"{tmp_path}-link")

    def edit(c):
        c["experiments"]["expr_crnn"]["train"]["init_from"] = path

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert f"experiments.expr_crnn.train.init_from: {path} " in proc.stdout + proc.stderr
    assert message in proc.stdout + proc.stderr


def test_experiments_starting_from_each_others_models_are_named(tmp_path):
    """Two experiments whose init_from name each other's model: Snakemake's own "Cyclic
    dependency on rule train" named neither key."""

    def edit(c):
        c["experiments"]["expr_other"] = copy.deepcopy(c["experiments"]["expr_crnn"])
        c["experiments"]["expr_crnn"]["train"]["init_from"] = "results/models/expr_other/model.pt"
        c["experiments"]["expr_other"]["train"]["init_from"] = "./results/models/expr_crnn/model.pt"

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Cyclic" not in out, out[-2000:]
    assert (
        "experiments.expr_crnn.train.init_from: results/models/expr_other/model.pt starts a cycle "
        "of experiments each starting from the next one's model (experiments.expr_crnn.train."
        "init_from -> experiments.expr_other.train.init_from -> experiments.expr_crnn.train."
        "init_from)" in out
    ), out[-2000:]


def test_a_model_left_by_an_experiment_the_config_no_longer_has_is_warned_of_by_both(tmp_path):
    """results/models/X/model.pt of an experiment X the config no longer has is a file of the
    user's, used as it is: the workflow said so when it started, python -m models.configcheck
    did not. Both say it, in the same line, once, and find nothing wrong."""
    left = tmp_path / "results/models/expr_old/model.pt"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"the weights of an experiment since removed")
    path = "results/models/expr_old/model.pt"
    config = _write_config(
        tmp_path, lambda c: c["experiments"]["expr_crnn"]["train"].update(init_from=path)
    )
    line = (
        f"WARNING models.configcheck: experiments.expr_crnn.train.init_from: {path} was made by "
        "an experiment 'expr_old' that the config no longer has: it is used as it is, a file of "
        "yours"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "models.configcheck", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # relative paths are read from the working folder
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr.splitlines().count(line) == 1, proc.stderr
    proc = run_snakemake(tmp_path, "-n", config=config)
    assert proc.stderr.splitlines().count(line) == 1, proc.stderr


@pytest.mark.slow
def test_an_experiment_fine_tuned_from_another_trains_from_its_weights(smoke_run, tmp_path):
    """train.init_from naming another experiment's model, however spelled: that model is an
    input of the train job (made first, and retraining it trains the fine-tuning again); a file
    of the user's is keyed by its content, so a replacement with an older time counts too;
    nothing else reruns."""
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, symlinks=True)
    source = work / "results/models/expr_crnn/model.pt"
    mine = work / "mine.pt"
    shutil.copy2(work / "results/models/hanzi_cnn/model.pt", work / "other.pt")
    shutil.copy2(source, mine)
    leftover = work / "results/models/expr_old/model.pt"
    leftover.parent.mkdir()
    shutil.copy2(source, leftover)

    def edit(c):
        for name, init in [
            ("expr_tuned", "./results//models/expr_crnn/model.pt"),
            ("expr_mine", "mine.pt"),
            ("expr_leftover", "results/models/expr_old/model.pt"),
        ]:
            c["experiments"][name] = copy.deepcopy(c["experiments"]["expr_crnn"])
            c["experiments"][name]["train"]["init_from"] = init

    config = _write_config(tmp_path, edit)
    targets = [f"results/models/{e}/model.pt" for e in ("expr_tuned", "expr_mine")]
    target = "results/eval/expr_tuned/test_heldout/metrics.json"
    proc = run_snakemake(work, "-n", "--cores", "2", target, *targets, config=config)
    assert sorted((r, w.get("experiment")) for r, w in _jobs(proc.stdout)) == [
        ("evaluate", "expr_tuned"),
        ("train", "expr_mine"),
        ("train", "expr_tuned"),
    ]
    # a model left by an experiment the config no longer has is a file like any other, said so
    assert "made by an experiment 'expr_old' that the config no longer has" in proc.stderr
    run_snakemake(work, "--cores", "2", target, *targets, config=config)
    info = json.loads((work / "results/models/expr_tuned/train.json").read_text())["init_from"]
    charset = (work / "results/charsets/expr.txt").read_text(encoding="utf-8").splitlines()
    assert info["sha256"] == sha256_file(source)
    assert info["classes_kept"] == len(charset) and not info["classes_new"]
    metrics = json.loads((work / "results/eval/expr_tuned/test_heldout/metrics.json").read_text())
    assert metrics["init_from"] == "./results//models/expr_crnn/model.pt" and metrics["n"] > 0

    # A source trained again is a new start: the fine-tuning follows it, and nothing else.
    os.utime(source)
    jobs = _jobs(run_snakemake(work, "-n", "--cores", "2", target, *targets, config=config).stdout)
    assert [(r, w.get("experiment")) for r, w in jobs if r == "train"] == [("train", "expr_tuned")]
    assert all(w.get("experiment") == "expr_tuned" for _, w in jobs), jobs

    # A file of the user's replaced by another with an older time (cp -p): its content decides.
    old = mine.stat().st_mtime - 3600
    shutil.copy2(work / "other.pt", mine)
    os.utime(mine, (old, old))
    jobs = _jobs(run_snakemake(work, "-n", "--cores", "2", *targets, config=config).stdout)
    assert ("train", "expr_mine") in [(r, w.get("experiment")) for r, w in jobs]


def test_an_experiment_named_tesseract_fails_at_parse_time(tmp_path):
    def edit(c):
        c["experiments"]["tesseract"] = c["experiments"]["expr_crnn"]

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert (
        "experiments.tesseract: the reports name Tesseract's rows so" in proc.stdout + proc.stderr
    )


def test_a_reference_that_names_nothing_measured_fails_at_parse_time(tmp_path):
    """A misspelt experiment or metric in report.references gave empty cells in summary.md."""

    def edit(c):
        base = {"experiment": "expr_crnn", "metric": "seq_acc", "value": 0.9, "source": "x"}
        c["report"]["references"] = [
            base,
            {**base, "experiment": "expr_crn"},
            {**base, "metric": "value_ac"},
        ]

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "invalid config (2 problems):" in out, out
    assert "report.references.1.experiment: 'expr_crn' is not an experiment of the config" in out
    assert "report.references.2.metric: 'value_ac' is not one of expr_crnn's figures" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"split": "test_heldot"},
            "report.targets.0.split: 'test_heldot' is none of expr_crnn's test splits, test_seen, "
            "test_heldout",
        ),
        (  # an own test of another task: expr_crnn never reads it
            {"split": "test_caps"},
            "report.targets.0.split: 'test_caps' is none of expr_crnn's test splits, test_seen, "
            "test_heldout",
        ),
        (
            {"experiment": "tesseract"},
            "report.targets.0.experiment: 'tesseract' is not an experiment of the config; valid: ",
        ),
        (
            {"metric": "top_1", "experiment": "hanzi_cnn"},
            "report.targets.0.metric: 'top_1' is not one of hanzi_cnn's figures; valid: seq_acc, "
            "cer, ned, top1, top5",
        ),
        (
            {"metric": "value_acc", "experiment": "line_crnn_vgg"},
            "'value_acc' is not one of line_crnn_vgg's figures; valid: seq_acc, cer, ned",
        ),
    ],
)
def test_a_target_that_names_nothing_measured_fails_at_parse_time(tmp_path, target, message):
    """A misspelt split, experiment or metric gave a target row with nothing reached."""

    labels = tmp_path / "caps.tsv"
    labels.write_text("")

    def edit(c):
        base = {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_heldout"}
        c["report"]["targets"] = [{**base, "value": 0.9, **target}]
        c["own_tests"] = {"test_caps": {"task": "short", "labels": str(labels)}}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out


@pytest.mark.parametrize(
    ("own", "message"),
    [
        ({"test_seen": {"task": "expr", "labels": "x.tsv"}}, "own_tests.test_seen: a split of"),
        ({"test_mine": {"task": "expr", "labels": "gone.tsv"}}, "own_tests.test_mine.labels: gone"),
        ({"test_mine": {"task": "expr", "labels": "."}}, "own_tests.test_mine.labels: . is not a"),
        ({"test_mine": {"task": "expr", "labels": "latin1.tsv"}}, "latin1.tsv:1: not UTF-8"),
        ({"test_mine": {"task": "expr", "labels": "braces.tsv"}}, "line 1: im{1}.png: braces"),
        ({"test_mine": {"task": "expr", "labels": "b{x}/x.tsv"}}, "labels: b{x}/x.tsv: braces"),
        ({"test_mine": {"task": "hanzi", "labels": "x.tsv"}}, "no experiment of task 'hanzi'"),
    ],
)
def test_an_own_test_set_that_cannot_be_fails_at_parse_time(tmp_path, own, message):
    (tmp_path / "x.tsv").write_text("a.png\t1\n", encoding="utf-8")
    (tmp_path / "latin1.tsv").write_bytes("a.png\t\xe9\n".encode("latin-1"))
    (tmp_path / "braces.tsv").write_text("im{1}.png\t1\n", encoding="utf-8")
    (tmp_path / "b{x}").mkdir()
    (tmp_path / "b{x}" / "x.tsv").write_text("a.png\t1\n", encoding="utf-8")

    def edit(c):
        c["own_tests"] = own
        del c["experiments"]["hanzi_cnn"]

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
def test_an_own_test_set_is_packed_evaluated_and_reported_beside_tesseract(smoke_run, tmp_path):
    """own_tests: the user's labelled images are packed, read by the task's models and
    Tesseract, and their rows join the report; nothing else reruns; editing an image reruns
    them."""
    from conftest import DEJAVU
    from PIL import Image, ImageDraw, ImageFont

    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, symlinks=True)
    mine = tmp_path / "mine"
    (mine / "phone").mkdir(parents=True)
    texts = {"a.png": "1+2", "b.png": "(3+4)*5", "phone/c.png": "7-2*3"}
    for name, text in texts.items():
        img = Image.new("L", (160, 48), 255)
        ImageDraw.Draw(img).text((8, 8), text, fill=0, font=ImageFont.truetype(str(DEJAVU), 26))
        img.save(mine / name)
    (mine / "labels.tsv").write_text(
        "".join(f"{n}\t{t}\n" for n, t in texts.items()), encoding="utf-8"
    )

    def edit(c):
        c["own_tests"] = {"test_mine": {"task": "expr", "labels": str(mine / "labels.tsv")}}

    config = _write_config(tmp_path, edit)
    target = "results/crnn_report.csv"
    jobs = _jobs(run_snakemake(work, "-n", "--cores", "2", target, config=config).stdout)
    assert sorted((r, w.get("split", "")) for r, w in jobs) == [
        ("crnn_report", ""),
        ("evaluate", "test_mine"),
        ("pack", "test_mine"),
        ("tesseract", "test_mine"),
    ], jobs
    run_snakemake(work, "--cores", "2", target, config=config)
    with open(work / target, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test_mine"]
    assert sorted(r["experiment"] for r in rows) == ["expr_crnn", "tesseract"]
    assert all(r["n"] == "3" for r in rows)
    metrics = json.loads((work / "results/eval/expr_crnn/test_mine/metrics.json").read_text())
    assert set(metrics["per_font"]) == {"./", "phone/"}  # per folder
    # Users' labels need not be expressions the task draws: any expression that evaluates.
    assert metrics["decoder"] == "grammar" and metrics["grammar"] == "evaluates"

    # An image replaced by another, even one with an older time (cp -p): its content decides,
    # and it is packed and read again.
    before = (mine / "phone" / "c.png").stat().st_mtime - 3600
    img = Image.open(mine / "phone" / "c.png")
    img.putpixel((1, 1), 0)
    img.save(mine / "phone" / "c.png")
    os.utime(mine / "phone" / "c.png", (before, before))
    jobs = _jobs(run_snakemake(work, "-n", "--cores", "2", target, config=config).stdout)
    assert ("pack", "test_mine") in [(r, w.get("split")) for r, w in jobs]

    # An own test in the targets of the summary.
    def targeted(c):
        edit(c)
        c["report"]["targets"] = [
            {"experiment": "expr_crnn", "metric": "seq_acc", "split": "test_mine", "value": 0.0}
        ]

    run_snakemake(
        work, "--cores", "2", "results/summary.md", config=_write_config(tmp_path, targeted)
    )
    summary = (work / "results/summary.md").read_text(encoding="utf-8")
    assert "| expr_crnn | seq_acc | test_mine | 0 |" in summary

    # Its grid of images and readings is one of the plots (the summary's inputs), for each
    # experiment of its task alone.
    grids = sorted(
        p.relative_to(work) for p in work.glob("results/plots/*/predictions_test_mine.png")
    )
    assert grids == [Path("results/plots/expr_crnn/predictions_test_mine.png")]
    with Image.open(work / grids[0]) as im:
        assert im.format == "PNG" and im.width > 200

    def pack_fails(split, task, image, label):
        """The output of a pack job for one image and label, which must fail."""
        (mine / f"{split}.tsv").write_text(f"{image}\t{label}\n", encoding="utf-8")

        def own(c):
            c["own_tests"] = {split: {"task": task, "labels": str(mine / f"{split}.tsv")}}

        proc = run_snakemake(
            work,
            "--cores",
            "2",
            f"results/own/{split}-000000.tar",
            config=_write_config(tmp_path, own),
            check=False,
        )
        assert proc.returncode != 0
        return proc.stdout + proc.stderr

    # A label longer than the task's models read (the reader's 4 characters), naming the line.
    img = Image.new("L", (40, 40), 255)
    ImageDraw.Draw(img).text((2, 8), "12345", fill=0, font=ImageFont.truetype(str(DEJAVU), 10))
    img.save(mine / "caps.png")
    out = pack_fails("test_caps", "short", "caps.png", "12345")
    assert "test_caps.tsv:1: caps.png: label '12345' has 5 characters" in out
    # An image too narrow to give the task's CTC model a frame per character of its label.
    Image.new("L", (12, 48), 255).save(mine / "narrow.png")
    out = pack_fails("test_narrow", "expr", "narrow.png", "1+2*3-4")
    assert "narrow.png: label '1+2*3-4' needs 7 CTC frames" in out


def test_a_failed_job_says_why_in_one_line_and_keeps_its_traceback_in_its_log(tmp_path):
    """A charset character no font draws: the console gets the error's message and the log's
    name, the log the traceback; a warning (a pattern matching no font) reaches the console."""

    def edit(c):
        c["tasks"]["line"]["charset"] = {"source": "chars", "chars": "你好\U00013000"}
        c["fonts"]["paths"].append("nowhere/*")

    config = _write_config(tmp_path, edit)
    proc = run_snakemake(
        tmp_path, "--cores", "2", "results/charsets/line.txt", config=config, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        "error: ValueError: tasks.line.charset: 1 character covered by no training font: "
        "\U00013000 (U+13000)" in out
    )
    assert "(traceback in logs/charset/line.log)" in out
    log = (tmp_path / "logs/charset/line.log").read_text()
    assert "Traceback (most recent call last)" in log and "U+13000" in log
    # printed once, when the workflow resolves the patterns, not again by each coverage job
    warning = "WARNING synth.fonts.files: font pattern nowhere/* matches no font file; skipped"
    assert out.count(warning) == 1, out


def test_a_charsets_own_warnings_print_once_naming_the_task(tmp_path):
    """A character repeated in a task's charset chars, a zero-width space in its charset file:
    each warning prints once, when the workflow starts, naming the task's key, and not again
    from the three jobs that build the charset (two coverage jobs, the charset job), whose logs
    keep it."""
    extra = tmp_path / "extra.txt"
    extra.write_text("X\u200bY\n", encoding="utf-8")

    def edit(c):
        c["tasks"]["short"]["charset"] = {"source": "chars", "chars": "ABCA", "files": [str(extra)]}

    config = _write_config(tmp_path, edit)
    targets = ["results/charsets/short.txt", "results/fonts/short/test.tsv"]
    proc = run_snakemake(tmp_path, "--cores", "2", *targets, config=config)
    out = proc.stdout + proc.stderr
    repeated = "tasks.short.charset chars: 'A' (U+0041) repeated after NFKC; each kept once"
    dropped = f"tasks.short.charset file {extra}: 1 character(s) left out"
    assert out.count(f"WARNING synth.charset: {repeated}") == 1, out
    assert out.count(f"WARNING synth.charset: {dropped}") == 1, out
    assert out.count("repeated after NFKC") == 1 and out.count("U+200B") == 1, out
    assert (tmp_path / "results/charsets/short.txt").read_text().split() == list("ABCXY")
    for log in ("coverage/short/train", "coverage/short/test", "charset/short"):
        text = (tmp_path / "logs" / f"{log}.log").read_text()
        assert "'A' (U+0041) repeated after NFKC" in text and "U+200B" in text, log


def test_a_lone_combining_mark_in_a_charset_fails_at_parse_time_naming_the_task(tmp_path):
    def edit(c):
        c["tasks"]["expr"]["charset"] = {"source": "chars", "chars": "0123456789+-*()q\u0303"}

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    assert "tasks.expr.charset chars: a combining mark stays separate" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_font_file_added_or_removed_under_a_glob_reruns_the_jobs_that_read_fonts(
    tmp_path, latin_font, heldout_font
):
    """The config is unchanged (its `fonts/*` pattern already there): dropping a font file into
    fonts/, or taking one out, reruns the training coverage tables and the charsets (and so every
    training shard); the held-out tables stay."""
    workdir = tmp_path / "run"
    (workdir / "fonts").mkdir(parents=True)
    config = _write_config(tmp_path, lambda c: c["fonts"]["paths"].append("fonts/*"))
    targets = ["--cores", "2", "results/fonts/coverage.tsv", "results/charsets/line.txt"]

    def rerun():
        proc = run_snakemake(workdir, "-n", *targets, config=config)
        return sorted((rule, w.get("role", "")) for rule, w in _jobs(proc.stdout))

    run_snakemake(workdir, *targets, config=config)
    assert rerun() == []
    # A file that is not a font (a web page saved under a font's name) is no job's input: it
    # reruns nothing, and the run names it once.
    page = workdir / "fonts" / "Download.ttf"
    page.write_bytes(b"<!DOCTYPE html><html><body>Not found</body></html>")
    proc = run_snakemake(workdir, "-n", *targets, config=config)
    assert _jobs(proc.stdout) == []
    warning = "WARNING synth.fonts.files: font file fonts/Download.ttf is not a font"
    assert (proc.stdout + proc.stderr).count(warning) == 1, proc.stderr
    page.unlink()
    added = workdir / "fonts" / latin_font.name
    added.write_bytes(latin_font.read_bytes())
    expected = [("charset", "")] + [("coverage", "train")] * 4 + [("font_table", "")]
    assert rerun() == expected
    run_snakemake(workdir, *targets, config=config)
    assert f"fonts/{latin_font.name}" in (workdir / "results/fonts/coverage.tsv").read_text()
    assert f"fonts/{latin_font.name}" in (workdir / "results/fonts/expr/train.tsv").read_text()
    assert rerun() == []
    added.unlink()
    assert rerun() == expected
    run_snakemake(workdir, *targets, config=config)
    # A held-out font put in fonts/ (so the training glob matches it too) and listed in
    # test_fonts: the training files are the same, so only the held-out tables are made again.
    held = workdir / "fonts" / heldout_font.name
    held.write_bytes(heldout_font.read_bytes())

    def hold_out(c):
        c["fonts"]["paths"].append("fonts/*")
        c["fonts"]["test_fonts"].append(f"fonts/{heldout_font.name}")

    config = _write_config(tmp_path, hold_out)
    assert rerun() == [("coverage", "test")] * 4 + [("font_table", "")]
    proc = run_snakemake(workdir, "--forcerun", "coverage", *targets, config=config)
    log = (workdir / "logs/coverage/expr/train.log").read_text()
    assert f"fonts/{heldout_font.name}: left out of the training fonts when the workflow " in log
    # in each job's log, not four times on the console (the workflow's start said it once)
    assert "left out of the training fonts" not in proc.stdout + proc.stderr
    assert "held out (fonts.test_fonts lists it, a copy or another version of it)" in log


@pytest.mark.slow
def test_rerun_with_nothing_changed_runs_nothing(smoke_run):
    proc = run_snakemake(smoke_run, "-n", "--cores", "2", "all")
    assert _jobs(proc.stdout) == [], proc.stdout
    # A real run, as `make` starts it, with the local profile (keep-going, rerun-incomplete, the
    # gpu resource): this Snakemake takes the profile, and finds nothing to do.
    stamps = {p: p.stat().st_mtime_ns for p in (smoke_run / "results").rglob("*") if p.is_file()}
    profile = REPO / "workflow" / "profiles" / "local"
    proc = run_snakemake(smoke_run, "--profile", str(profile), "--cores", "2", "all")
    out = proc.stdout + proc.stderr
    assert f"Using profile {profile} " in out, out[-3000:]
    assert "Nothing to be done (all requested files are present and up to date)." in out, out
    assert _jobs(out) == [], out[-3000:]
    after = {p: p.stat().st_mtime_ns for p in (smoke_run / "results").rglob("*") if p.is_file()}
    assert after == stamps


# Figures of a metrics.json that are clock readings, not results.
_TIMINGS = {"eval_img_per_s", "eval_wall_s", "train_wall_s"}


@pytest.mark.slow
def test_a_run_killed_during_training_recovers_to_the_outputs_of_one_never_stopped(
    smoke_run, tmp_path
):
    """SIGKILL the whole smoke run (Snakemake and its jobs) once a training has written its
    first checkpoint; `--unlock`, then rerun with `--rerun-incomplete`: every shard, charset and
    manifest is byte for byte the uninterrupted run's, every model's weights and every figure
    equal, a training caught half way resumed from its checkpoint, and no temporary file is left."""
    cmd = snakemake_command(tmp_path, "--cores", "2", "all")
    results = tmp_path / "results"
    run = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    caught: list[str] = []  # experiments with a checkpoint and no model.pt when killed
    try:
        deadline = time.monotonic() + 600
        while not caught and run.poll() is None and time.monotonic() < deadline:
            caught = sorted(
                p.parents[2].name
                for p in results.glob("models/*/resume/*/last.pt")
                if not (p.parents[2] / "model.pt").exists()
            )
            time.sleep(0.02)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert caught, "no training was caught between its first checkpoint and its end"

    run_snakemake(tmp_path, "--unlock", "--cores", "2", "all")
    run_snakemake(tmp_path, "--cores", "2", "all", "--rerun-incomplete")

    for experiment in caught:
        log = (tmp_path / "logs" / "train" / f"{experiment}.log").read_text()
        assert re.search(r"resuming run \w+ from step [1-9]", log), log
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]
    reference = smoke_run / "results"
    data = [
        *results.glob("shards/*/*.tar"),
        *results.glob("shards/*/manifest.tsv"),
        *results.glob("charsets/*.txt"),
    ]
    assert len(data) > 20
    for path in data:
        assert sha256_file(path) == sha256_file(reference / path.relative_to(results)), path
    models = sorted(results.glob("models/*/model.pt"))
    assert [p.relative_to(results) for p in models] == [
        p.relative_to(reference) for p in sorted(reference.glob("models/*/model.pt"))
    ]
    for path in models:
        ours = load_model(path)[0].state_dict()
        theirs = load_model(reference / path.relative_to(results))[0].state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), path
        # README, "What a rerun reproduces": model.pt byte for byte; train.json and history.csv
        # but for their clock readings, and train.json's resumed_from, which says where it resumed
        assert sha256_file(path) == sha256_file(reference / path.relative_to(results)), path
        info, ref_info = (
            json.loads((p.parent / "train.json").read_text())
            for p in (path, reference / path.relative_to(results))
        )
        if path.parent.name in caught:
            assert info["resumed_from"] > 0, info
        assert ref_info["resumed_from"] == 0, ref_info
        skip = {"wall_s", "images_per_s", "resumed_from"}
        assert {k: v for k, v in info.items() if k not in skip} == {
            k: v for k, v in ref_info.items() if k not in skip
        }, path
        ours, theirs = (
            [
                {k: v for k, v in row.items() if k not in {"images_per_s", "elapsed_s"}}
                for row in csv.DictReader((p.parent / "history.csv").read_text().splitlines())
            ]
            for p in (path, reference / path.relative_to(results))
        )
        assert ours == theirs, path
    metrics = sorted(results.glob("eval/*/*/metrics.json"))
    assert len(metrics) >= 10
    for path in metrics:
        ours, theirs = (
            {k: v for k, v in json.loads(p.read_text()).items() if k not in _TIMINGS}
            for p in (path, reference / path.relative_to(results))
        )
        assert ours == theirs, path


@pytest.mark.slow
def test_a_training_job_sigterm_stops_saves_its_step_and_the_rerun_resumes_there(tmp_path):
    """A cluster's time limit: SIGTERM to a training job's processes (not to Snakemake). The
    job saves the step it reached, says so in its log and exits 143, so that the rerun (the
    SLURM profile's retries) resumes from that step, not the last checkpoint (test_train's
    test_a_run_stopped_by_sigterm_resumes_to_the_same_weights)."""
    overlay = tmp_path / "long.yaml"
    overlay.write_text(
        f"extends: {SMOKE}\nexperiments:\n  expr_crnn:\n    train: {{steps: 100000, "
        "checkpoint_every: 50000, val_every: 50000}\n"
    )
    target = "results/models/expr_crnn/model.pt"
    run = subprocess.Popen(
        snakemake_command(tmp_path, "--cores", "2", target, config=overlay),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log = tmp_path / "logs" / "train" / "expr_crnn.log"
    try:
        deadline = time.monotonic() + 400
        while not (log.is_file() and re.search(r"step \d{2,}/100000", log.read_text())):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.1)
        jobs = subprocess.run(["pgrep", "-f", r"\.train\.py"], capture_output=True, text=True)
        trainers = [
            pid
            for pid in jobs.stdout.split()
            if os.path.realpath(f"/proc/{pid}/cwd") == str(tmp_path.resolve())
        ]
        assert len(trainers) == 1, jobs.stdout
        os.kill(int(trainers[0]), signal.SIGTERM)
        out = run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode != 0 and "143" in out, out[-3000:]
    said = re.search(r"stopped by SIGTERM at step (\d+) of 100000", log.read_text())
    assert said and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    [state] = (tmp_path / "results" / "models" / "expr_crnn" / "resume").iterdir()
    assert json.loads((state / "run.json").read_text())["step"] == int(said[1])
    assert not (tmp_path / target).exists()


@pytest.mark.slow
def test_an_overlay_reruns_only_what_it_changes_over_the_config_it_extends(smoke_run, tmp_path):
    base = os.path.relpath(SMOKE, tmp_path)  # relative to the overlay's own folder
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"extends: {base}\n")
    proc = run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=overlay)
    assert _jobs(proc.stdout) == [], proc.stdout  # the smoke config itself: nothing to do
    overlay.write_text(
        f"extends: {base}\nexperiments: {{line_crnn_grcnn: {{train: {{steps: 5}}}}}}\n"
    )
    proc = run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=overlay)
    jobs = _jobs(proc.stdout)
    assert ("train", {"experiment": "line_crnn_grcnn"}) in jobs
    for rule, wildcards in jobs:
        assert wildcards.get("experiment", "line_crnn_grcnn") == "line_crnn_grcnn", (rule, jobs)
        assert rule not in ("shard", "coverage", "charset"), (rule, wildcards)


def test_defaults_written_in_another_form_rerun_nothing(smoke_run, tmp_path):
    """Snakemake compares params as text: a default written as an int where the schema's is a
    float (``p: 0`` for 0.0, ``clip_grad: 5`` for 5.0) or the reverse, or the value that means
    unset written out (``oldstyle: 0``, ``corpus: null``), reran shards and trainings."""
    from synth.schema import with_defaults

    base = os.path.relpath(SMOKE, tmp_path)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        f"extends: {base}\n"
        "tasks:\n"
        "  expr:\n"
        "    aliased: 0.0\n"
        "    oldstyle: 0\n"
        "    degrade: {weight: {p: 0}, legible: {min_contrast: 64.0}}\n"
        "  line: {corpus: null}\n"
        "experiments:\n"
        "  expr_crnn: {train: {clip_grad: 5, ema_decay: 0, label_smoothing: 0}}\n"
    )
    smoke = load_config_file(SMOKE)
    filled = with_defaults(load_config_file(overlay))
    assert filled == with_defaults(smoke)
    # == takes 5 for 5.0: the text the params are compared as must match (keys sorted)
    assert json.dumps(filled, sort_keys=True) == json.dumps(with_defaults(smoke), sort_keys=True)
    assert type(filled["experiments"]["expr_crnn"]["train"]["clip_grad"]) is float
    assert "oldstyle" not in filled["tasks"]["expr"] and "corpus" not in filled["tasks"]["line"]
    proc = run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=overlay)
    assert _jobs(proc.stdout) == [], proc.stdout
    # a value other than the default still counts, in either form
    overlay.write_text(
        f"extends: {base}\nexperiments: {{expr_crnn: {{train: {{clip_grad: 4}}}}}}\n"
    )
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=overlay).stdout)
    assert ("train", {"experiment": "expr_crnn"}) in jobs


@pytest.mark.slow
def test_changing_one_task_reruns_only_that_task(smoke_run, tmp_path):
    def edit(c):
        c["tasks"]["expr"]["font_size"] = [24, 36]

    config = _write_config(tmp_path, edit)
    proc = run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=config)
    jobs = _jobs(proc.stdout)
    assert jobs, "changing expr settings must rerun the expr jobs"
    for rule, wildcards in jobs:
        if "task" in wildcards:
            assert wildcards["task"] == "expr", (rule, wildcards)
        if "experiment" in wildcards:
            assert wildcards["experiment"] == "expr_crnn", (rule, wildcards)
    assert any(rule == "shard" for rule, _ in jobs)
    assert any(rule == "train" for rule, _ in jobs)


@pytest.mark.slow
def test_changing_one_splits_degradations_reruns_only_that_split(smoke_run, tmp_path):
    def edit(c):
        c["tasks"]["expr"]["splits"]["test_heldout"]["degrade"] = {"legible": {"ink": "stroke"}}

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, edit)
    )
    jobs = _jobs(proc.stdout)
    shards = [w for rule, w in jobs if rule == "shard"]
    assert shards and all((w["task"], w["split"]) == ("expr", "test_heldout") for w in shards)
    assert not any(rule == "train" for rule, _ in jobs)  # training data unchanged
    for rule, wildcards in jobs:
        if "split" in wildcards:
            assert wildcards["split"] == "test_heldout", (rule, wildcards)


@pytest.mark.slow
def test_adding_a_held_out_font_reruns_only_the_held_out_split(smoke_run, tmp_path):
    """A new held-out font renders the held-out test shards again and evaluates on them; no
    training shard, charset or model is made again."""
    added = "/usr/share/fonts/truetype/arphic/uming.ttc"
    config = _write_config(tmp_path, lambda c: c["fonts"]["test_fonts"].append(added))
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=config).stdout)
    rules = {rule for rule, _ in jobs}
    assert {"coverage", "shard", "evaluate", "tesseract"} <= rules, rules
    assert not rules & {"charset", "train"}, rules
    for rule, wildcards in jobs:
        assert wildcards.get("split", "test_heldout") == "test_heldout", (rule, wildcards)
        assert wildcards.get("role", "test") == "test", (rule, wildcards)


@pytest.mark.slow
def test_more_training_shards_retrain_only_the_experiments_that_read_them(smoke_run, tmp_path):
    """A config that adds a training shard for one experiment while another keeps the shards it
    trained on (train.shards at the split's old count, as configs/lines_cpu_long.yaml's first
    stages): the new shard renders and the one experiment retrains; the other reads the same
    shards with the same settings, so it is neither trained nor evaluated again. Fewer shards
    than it trained on are other inputs: it trains again."""

    def edit(c, shards=2):
        c["tasks"]["line"]["splits"]["train"]["shards"] = 3
        c["experiments"]["line_crnn_vgg"]["train"]["shards"] = shards

    config = _write_config(tmp_path, edit)
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=config).stdout)
    assert ("shard", {"task": "line", "split": "train", "shard": "000002"}) in jobs, jobs
    assert ("train", {"experiment": "line_crnn_grcnn"}) in jobs, jobs
    assert not [(r, w) for r, w in jobs if w.get("experiment") == "line_crnn_vgg"], jobs
    assert [w for r, w in jobs if r == "shard"] == [
        {"task": "line", "split": "train", "shard": "000002"}
    ]
    config = _write_config(tmp_path, lambda c: edit(c, shards=1))
    jobs = _jobs(run_snakemake(smoke_run, "-n", "--cores", "2", "all", config=config).stdout)
    assert ("train", {"experiment": "line_crnn_vgg"}) in jobs, jobs


@pytest.mark.slow
def test_changing_one_tasks_charset_reruns_only_that_task(smoke_run, tmp_path):
    """Each task has its own coverage tables: another charset for the lines renders no shard of
    the other tasks again."""

    def edit(c):
        c["tasks"]["line"]["charset"]["limit"] = 50

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, edit)
    )
    jobs = _jobs(proc.stdout)
    assert any(rule == "charset" for rule, _ in jobs)
    for rule, wildcards in jobs:
        if "task" in wildcards:
            assert wildcards["task"] == "line", (rule, wildcards)
        if "experiment" in wildcards:
            assert wildcards["experiment"].startswith("line_"), (rule, wildcards)


def _resources(dry_run_stdout: str, rules: set[str]) -> list[tuple[str, str]]:
    """(rule, job block) for each job of ``rules`` a dry run lists."""
    blocks = re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", dry_run_stdout)
    found = []
    for block in blocks:
        m = re.search(r"rule (\w+):", block)
        if m and m.group(1) in rules:
            found.append((m.group(1), block))
    return found


def test_gpu_jobs_declare_one_gpu_and_every_core(tmp_path):
    # On a GPU, under --cores 8 on one machine two GPU jobs never run at once: each asks for
    # gpu=1 and (train.threads 0) for all 8 cores, and a local run has one GPU unless told of
    # more (resources.smk; the local profile says 1 too).
    def edit(c):
        c["device"] = "cuda"
        for exp in c["experiments"].values():
            exp["train"].pop("threads", None)  # the default, 0
            exp.get("eval", {}).pop("threads", None)

    proc = run_snakemake(
        tmp_path, "-n", "--cores", "8", "all", config=_write_config(tmp_path, edit)
    )
    jobs = _resources(proc.stdout, {"train", "evaluate"})
    assert {rule for rule, _ in jobs} == {"train", "evaluate"}
    for _, block in jobs:
        assert re.search(r"threads: 8\b", block), block
        assert re.search(r"\bgpu=1\b", block), block
    profile = yaml.safe_load((REPO / "workflow/profiles/local/config.yaml").read_text())
    assert profile["resources"]["gpu"] == 1


def _two_gpu_jobs(folder: Path, shell: str) -> None:
    """A Snakefile in ``folder`` of workflow/rules/resources.smk and two jobs (outputs ``a`` and
    ``b``) of one thread and one GPU each, running ``shell``."""
    (folder / "Snakefile").write_text(
        f'include: "{REPO}/workflow/rules/resources.smk"\n'
        "rule all:\n"
        '    input: "a", "b"\n'
        "rule gpu_job:\n"
        '    output: "{x}"\n'
        '    wildcard_constraints: x="[ab]"\n'
        "    threads: 1\n"
        "    resources: gpu=1\n"
        f"    shell: {shell!r}\n"
    )


@pytest.mark.parametrize("resources", [[], ["--resources", "gpu=2"]], ids=["default", "gpu=2"])
def test_two_gpu_jobs_run_one_at_a_time_unless_told_of_more_gpus(tmp_path, resources):
    # Without the local profile (`snakemake --cores 8 ...`, as the brief's command) and with
    # train.threads 1, two jobs of gpu=1 ran side by side on one GPU; workflow/rules/resources.smk
    # makes a local run's GPUs one unless --resources (or a profile) says how many there are.
    _two_gpu_jobs(
        tmp_path,
        "date +%s.%N > {output}.start; sleep 2; date +%s.%N > {output}.end; touch {output}",
    )
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", "8", *resources]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans = sorted(
        tuple(float((tmp_path / f"{x}.{end}").read_text()) for end in ("start", "end"))
        for x in "ab"
    )
    side_by_side = spans[1][0] < spans[0][1]
    assert side_by_side == bool(resources), spans


# A non-local executor whose jobs each stay on the cluster for 2 s: it records when each was
# submitted.
FAKE_CLUSTER = """
import os, pathlib, time
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings

common_settings = CommonSettings(
    non_local_exec=True, implies_no_shared_fs=False, job_deploy_sources=False,
    pass_default_storage_provider_args=True, pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False, auto_deploy_default_storage_provider=False,
)

class Executor(RemoteExecutor):
    def run_job(self, job):
        for out in job.output:
            pathlib.Path(out).write_text(str(time.time()))
        self.report_job_submission(SubmittedJobInfo(job, aux={"submitted": time.time()}))

    async def check_active_jobs(self, active_jobs):
        for job in active_jobs:
            if time.time() - job.aux["submitted"] > 2:
                self.report_job_success(job)
            else:
                yield job

    def cancel_jobs(self, active_jobs):
        pass
"""


def test_a_cluster_runs_gpu_jobs_side_by_side(tmp_path):
    # On a cluster each job gets a GPU of its own: resources.smk sets no GPU count there. It
    # tested workflow.local_exec, which is True whatever --executor says when Snakemake reads the
    # Snakefile (the executor is loaded after), so a SLURM run submitted one GPU job at a time.
    plugin = tmp_path / "plugins" / "snakemake_executor_plugin_fakecluster"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(FAKE_CLUSTER)
    _two_gpu_jobs(tmp_path, "exit 1")
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--executor", "fakecluster"]
    cmd += ["--jobs", "4", "--seconds-between-status-checks", "1"]
    env = {**os.environ, "PYTHONPATH": str(plugin.parent)}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = (float((tmp_path / x).read_text()) for x in "ab")
    assert abs(a - b) < 1, "the second GPU job waited for the first to end"


def test_the_longest_training_job_and_its_shards_start_first(tmp_path):
    # train.priority is Snakemake's rule priority for the train job and for what its task's
    # training needs before it (the highest of the task's experiments): the train and val shards,
    # the charset and the training fonts' coverage table. Test shards, the held-out fonts'
    # coverage and evaluations keep 0.
    def edit(c):
        for exp in c["experiments"].values():
            exp["train"].pop("priority", None)
        c["experiments"]["short_reader"]["train"]["priority"] = 4
        c["experiments"]["line_crnn_grcnn"]["train"]["priority"] = 1

    proc = run_snakemake(
        tmp_path, "-n", "--cores", "2", "all", config=_write_config(tmp_path, edit)
    )
    jobs = _resources(proc.stdout, {"train", "shard", "evaluate", "charset", "coverage"})
    seen = set()
    for rule, block in jobs:
        m = re.search(r"\bpriority: (\d+)", block)
        got = int(m.group(1)) if m else 0  # Snakemake lists a priority only when it is not 0
        wildcards = dict(
            kv.split("=", 1) for kv in re.search(r"wildcards: (.*)", block).group(1).split(", ")
        )
        if rule == "train":
            want = {"short_reader": 4, "line_crnn_grcnn": 1}.get(wildcards["experiment"], 0)
        elif (
            (rule == "shard" and wildcards["split"] in ("train", "val"))
            or rule == "charset"
            or (rule == "coverage" and wildcards["role"] == "train")
        ):
            want = {"short": 4, "line": 1}.get(wildcards["task"], 0)
        else:
            want = 0
        assert got == want, block
        seen.add((rule, want))
    assert {("train", 4), ("train", 1), ("train", 0), ("shard", 4), ("shard", 1)} <= seen
    assert {("charset", 4), ("charset", 1), ("coverage", 4), ("coverage", 0)} <= seen


@pytest.mark.slow
def test_an_experiments_own_seed_trains_it_again_on_the_same_shards(smoke_run, tmp_path):
    # Seed replicates: an experiment's seed moves its training alone; the root seed is the
    # shards'. The root seed spelt out as the experiment's reruns nothing.
    root = yaml.safe_load(SMOKE.read_text())["seed"]

    def same(c):
        c["experiments"]["expr_crnn"]["seed"] = root

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, same)
    )
    assert not _jobs(proc.stdout), proc.stdout

    def replicate(c):
        c["experiments"]["expr_crnn_s2"] = {**c["experiments"]["expr_crnn"], "seed": 2}

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, replicate)
    )
    jobs = _jobs(proc.stdout)
    assert ("train", {"experiment": "expr_crnn_s2"}) in jobs, proc.stdout
    assert {w.get("experiment") for _, w in jobs if "experiment" in w} == {"expr_crnn_s2"}
    assert not any(rule in ("shard", "coverage", "charset") for rule, _ in jobs), jobs


def _repo_copy(tmp_path: Path) -> Path:
    """The workflow and its packages copied, to be edited: Snakemake runs it with the copy's
    packages first on the path."""
    copy_ = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("workflow", "synth", "models"):
        shutil.copytree(REPO / name, copy_ / name, symlinks=True, ignore=ignore)
    shutil.copy2(REPO / "Snakefile", copy_ / "Snakefile")
    return copy_


def _dry_run_of_copy(copy_: Path, workdir: Path, *extra: str) -> list[tuple[str, dict[str, str]]]:
    cmd = snakemake_command(workdir, "-n", "--cores", "2", "all", *extra)
    cmd[cmd.index("--snakefile") + 1] = str(copy_ / "Snakefile")
    env = {**os.environ, "PYTHONPATH": str(copy_)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _jobs(proc.stdout)


@pytest.mark.slow
def test_an_edit_of_the_drawing_code_draws_the_data_anew_and_a_comment_does_not(
    smoke_run, tmp_path
):
    """The data jobs' params hold the digest of synth's drawing code (`synth.code.job_code`):
    a synthocr that draws otherwise draws every coverage table, charset, shard and contact sheet
    anew, and trains on them; one whose comments and docstrings alone changed reruns nothing."""
    copy_ = _repo_copy(tmp_path)
    augment = copy_ / "synth" / "augment.py"
    source = augment.read_text(encoding="utf-8")
    documented = source.replace(
        '"""Degradations after rendering', '"""Degradations, after rendering'
    )
    assert documented != source
    augment.write_text(documented + "\n# a comment of no consequence\n", encoding="utf-8")
    assert _dry_run_of_copy(copy_, smoke_run) == []
    augment.write_text(source.replace("_HALVINGS = 12", "_HALVINGS = 11"), encoding="utf-8")
    jobs = _dry_run_of_copy(copy_, smoke_run)
    rules = {rule for rule, _ in jobs}
    assert {"coverage", "charset", "shard", "contact_sheet", "train", "evaluate"} <= rules, rules
    tasks = {w["task"] for rule, w in jobs if rule == "shard"}
    assert tasks == set(yaml.safe_load(SMOKE.read_text())["tasks"]), tasks
    # README ("What a rerun reproduces"): the results kept as they stand across such a change
    assert _dry_run_of_copy(copy_, smoke_run, "--rerun-triggers", "mtime", "input") == []


@pytest.mark.slow
def test_an_edit_of_the_scoring_code_scores_anew_and_draws_and_trains_nothing(smoke_run, tmp_path):
    """The evaluation, Tesseract, report and plot jobs' params hold the digest of their code
    (`synth.code.job_code`): an edit of how readings are scored (models/metrics.py) reruns every
    evaluation and Tesseract job, with the reports after them, and no data or training job; a
    comment changes nothing; an edit of the plots' code (models/plots.py) redraws the plots
    alone (and the summary, which links them)."""
    copy_ = _repo_copy(tmp_path)
    metrics, plots = copy_ / "models" / "metrics.py", copy_ / "models" / "plots.py"
    metrics.write_text(metrics.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    assert _dry_run_of_copy(copy_, smoke_run) == []
    plots.write_text(plots.read_text(encoding="utf-8") + "EDITED = 1\n", encoding="utf-8")
    redrawn = {rule for rule, _ in _dry_run_of_copy(copy_, smoke_run)} - {"all", "summary"}
    assert "plot_curves" in redrawn and all(r.startswith("plot_") for r in redrawn), redrawn
    shutil.copy2(REPO / "models" / "plots.py", plots)
    metrics.write_text(metrics.read_text(encoding="utf-8") + "EDITED = 1\n", encoding="utf-8")
    rules = {rule for rule, _ in _dry_run_of_copy(copy_, smoke_run)}
    assert {"evaluate", "tesseract"} <= rules, rules
    assert not rules & {"coverage", "charset", "font_table", "shard", "manifest", "train"}, rules


@pytest.mark.slow
def test_an_edit_of_the_contact_sheets_layout_redraws_the_sheets_alone(smoke_run, tmp_path):
    """synth.preview draws a picture of the shards, not the data: an edit of it reruns the
    contact sheet jobs, and no coverage table, charset, shard or training."""
    copy_ = _repo_copy(tmp_path)
    preview = copy_ / "synth" / "preview.py"
    source = preview.read_text(encoding="utf-8")
    preview.write_text(source + "\nSHEET_EDITED = 1\n", encoding="utf-8")
    jobs = _dry_run_of_copy(copy_, smoke_run)
    rules = {rule for rule, _ in jobs}
    assert "contact_sheet" in rules, rules
    assert not rules & {"coverage", "charset", "shard", "train", "evaluate"}, rules


@pytest.mark.slow
def test_editing_scheduling_hints_reruns_nothing(smoke_run, tmp_path):
    # threads, mem_mb and priority say how to schedule a job, not what it makes. An eval block
    # left out is its defaults in full, the same as one that spells them out.
    def edit(c):
        for exp in c["experiments"].values():
            exp["train"].update(threads=2, mem_mb=1234, priority=7)
            exp.setdefault("eval", {})["threads"] = 0
        del c["experiments"]["hanzi_cnn"]["eval"]
        c["experiments"]["short_reader"]["eval"].update(batch_size=128, beam_width=5)
        c["tesseract"]["threads"] = 0

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, edit)
    )
    assert not _jobs(proc.stdout), proc.stdout


@pytest.mark.slow
def test_a_setting_spelt_out_at_its_default_reruns_nothing_and_changed_reruns_its_model(
    smoke_run, tmp_path
):
    # decay_fraction came after runs were first made: at its default it is in no job's params,
    # and under a schedule other than wsd, which never reads it, at any value.
    def spelt_out(c):
        for exp in c["experiments"].values():
            exp["train"].update(decay_fraction=0.2, init_from=None)
        c["experiments"]["expr_crnn"]["train"]["decay_fraction"] = 0.5

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, spelt_out)
    )
    assert not _jobs(proc.stdout), proc.stdout

    def wsd(c):
        c["experiments"]["line_crnn_vgg"]["train"].update(schedule="wsd", decay_fraction=0.5)

    proc = run_snakemake(
        smoke_run, "-n", "--cores", "2", "all", config=_write_config(tmp_path, wsd)
    )
    jobs = _jobs(proc.stdout)
    assert ("train", {"experiment": "line_crnn_vgg"}) in jobs, proc.stdout
    assert {w.get("experiment", "line_crnn_vgg") for _, w in jobs} == {"line_crnn_vgg"}, jobs


def test_cpu_jobs_take_their_threads_and_no_gpu(tmp_path):
    # On the CPU the jobs declare no GPU, so the profile's gpu cap does not serialise them, and
    # a train job takes experiments.<name>.train.threads cores, an evaluate job
    # experiments.<name>.eval.threads and a tesseract job tesseract.threads: with 1, two run side
    # by side under --cores 2. threads is a resource, not a setting: it is not in the job's params.
    def edit(c):
        c["device"] = "cpu"
        for exp in c["experiments"].values():
            exp["train"].pop("threads", None)  # the default, 0: every core
            exp.get("eval", {}).pop("threads", None)
        c["experiments"]["expr_crnn"]["train"]["threads"] = 1
        c["experiments"]["hanzi_cnn"]["train"]["threads"] = 4  # capped at --cores
        c["experiments"]["short_reader"]["eval"] = {"threads": 1}
        c["tesseract"].pop("threads", None)

    proc = run_snakemake(
        tmp_path, "-n", "--cores", "2", "all", config=_write_config(tmp_path, edit)
    )
    jobs = _resources(proc.stdout, {"train", "evaluate", "tesseract"})
    assert {rule for rule, _ in jobs} == {"train", "evaluate", "tesseract"}
    one_thread = {("train", "expr_crnn"), ("evaluate", "short_reader")}
    for rule, block in jobs:
        if rule != "tesseract":
            assert re.search(r"\bgpu=0\b", block), block
        experiment = re.search(r"experiment=(\w+)", block)
        if (rule, experiment and experiment.group(1)) in one_thread:
            assert "threads:" not in block, block  # Snakemake lists threads above 1 only
        else:
            assert re.search(r"threads: 2\b", block), block
    # The shipped smoke config gives every evaluate and tesseract job one thread.
    proc = run_snakemake(tmp_path, "-n", "--cores", "2", "all", config=SMOKE)
    shipped = _resources(proc.stdout, {"evaluate", "tesseract"})
    assert {rule for rule, _ in shipped} == {"evaluate", "tesseract"}
    assert all("threads:" not in block for _, block in shipped), shipped


@pytest.mark.slow
def test_a_model_the_training_command_wrote_is_named_when_the_config_leaves_it_behind(
    smoke_run, tmp_path
):
    """Snakemake keeps no record of a `python -m models.train` (torchrun) run: the workflow
    compares its train.json with the config and says what an edit left behind."""
    recorded = json.loads((smoke_run / "results/models/expr_crnn/train.json").read_text())
    assert recorded["command_line"] is False  # Snakemake's own run
    folder = tmp_path / "results" / "models" / "expr_crnn"
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps({**recorded, "command_line": True}))
    steps = recorded["train"]["steps"]

    def warned(edit) -> str:
        proc = run_snakemake(tmp_path, "-n", "--cores", "1", config=_write_config(tmp_path, edit))
        return "\n".join(
            line for line in proc.stderr.splitlines() if "python -m models.train" in line
        )

    assert warned(lambda c: None) == ""  # the settings it was trained with: nothing to say
    message = warned(lambda c: c["experiments"]["expr_crnn"]["train"].update(steps=steps + 3))
    assert "results/models/expr_crnn/model.pt was trained by python -m models.train" in message
    assert f"train.steps: {steps} -> {steps + 3}" in message
    assert "snakemake -f results/models/expr_crnn/model.pt" in message
    # Settings that only schedule the job are no change
    assert warned(lambda c: c["experiments"]["expr_crnn"]["train"].update(mem_mb=999)) == ""
    # nor train.shards at the count the run read; other training data is
    n = recorded["train_shards"]
    assert n == yaml.safe_load(SMOKE.read_text())["tasks"]["expr"]["splits"]["train"]["shards"]
    assert warned(lambda c: c["experiments"]["expr_crnn"]["train"].update(shards=n)) == ""
    message = warned(lambda c: c["tasks"]["expr"]["splits"]["train"].update(shards=n + 1))
    assert f"training shards: {n} -> {n + 1}" in message


def test_the_slurm_profile_asks_each_training_for_its_configs_memory(tmp_path):
    """The profile's set-resources must not override experiments.<name>.train.mem_mb."""

    def edit(c):
        c["experiments"]["line_crnn_vgg"]["train"]["mem_mb"] = 1234

    proc = run_snakemake(
        tmp_path,
        "-n",
        "--profile",
        str(REPO / "workflow" / "profiles" / "slurm"),
        "--executor",
        "local",  # the profile's own executor needs the SLURM plugin and a cluster
        "--cores",
        "8",
        "results/models/line_crnn_vgg/model.pt",
        config=_write_config(tmp_path, edit),
    )
    train = proc.stdout[proc.stdout.index("rule train:") :].split("\n\n", 1)[0]
    assert "mem_mb=1234," in train and "slurm_partition=gpu" in train, train
    assert re.search(r"threads: 8\b", train), train


def test_a_key_given_twice_or_a_number_yaml_reads_as_text_fails_naming_it(tmp_path):
    smoke = SMOKE.read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(smoke + "\nexperiments:\n  mine: {task: line, model: crnn_vgg}\n")
    proc = run_snakemake(tmp_path, "-n", config=twice, check=False)
    assert proc.returncode != 0
    assert "found the key 'experiments' twice" in proc.stdout + proc.stderr
    text = tmp_path / "text.yaml"
    text.write_text(f"extends: {SMOKE}\nexperiments:\n  expr_crnn:\n    train: {{lr: 1e-3}}\n")
    proc = run_snakemake(tmp_path, "-n", config=text, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "experiments.expr_crnn.train.lr: '1e-3' is not of type 'number'" in out, out
    assert "YAML reads 1e-3 as text, not a number: write 0.001" in out, out


def test_a_yaml_alias_inside_what_it_names_is_refused_naming_the_key(tmp_path):
    # x: &x {b: *x} is a mapping that holds itself: every walk of it (defaults, merging,
    # the schema) would recurse without end. An anchor used twice side by side is no loop.
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {SMOKE}\ntasks:\n  expr: &x {{degrade: {{blur: *x}}}}\n")
    with pytest.raises(ValueError, match=r"loop\.yaml: tasks\.expr\.degrade\.blur: a YAML alias"):
        load_config_file(loop)
    shared = tmp_path / "shared.yaml"
    shared.write_text(
        f"extends: {SMOKE}\ntasks:\n  expr:\n    splits:\n"
        "      test_seen: {degrade: &s {legible: {ink: stroke}}}\n"
        "      test_heldout: {degrade: *s}\n"
    )
    splits = load_config_file(shared)["tasks"]["expr"]["splits"]
    assert splits["test_seen"]["degrade"] == splits["test_heldout"]["degrade"]


def test_every_experiments_problems_are_listed_at_once(tmp_path):
    def edit(c):
        c["experiments"]["line_crnn_vgg"]["model_kwargs"].update(iteration=3, width="wide")
        c["experiments"]["line_crnn_grcnn"]["model_kwargs"]["width"] = -1.0

    proc = run_snakemake(tmp_path, "-n", config=_write_config(tmp_path, edit), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "invalid config (3 problems):" in out, out
    for problem in (
        "experiments.line_crnn_grcnn.model_kwargs.width: must be > 0, got -1.0",
        "experiments.line_crnn_vgg.model_kwargs.iteration: model 'crnn_vgg' takes no argument",
        "experiments.line_crnn_vgg.model_kwargs.width: expected float (default 1.0), got 'wide'",
    ):
        assert problem in out, out


def test_yaml_merge_keys_still_load_and_integers_get_an_integer_hint(tmp_path):
    merged = tmp_path / "merge.yaml"
    merged.write_text(
        "base: &t {steps: 5, lr: 0.1}\nexperiments:\n  a:\n    train:\n      <<: *t\n"
        "      lr: 0.002\n"
    )
    assert load_config_file(merged)["experiments"]["a"]["train"] == {"steps": 5, "lr": 0.002}
    config = yaml.safe_load(SMOKE.read_text())
    config["experiments"]["expr_crnn"]["train"].update(steps="1e5", lr="2e-3")
    problems = "\n".join(config_problems(config, load_schema(SCHEMA_PATH)))
    assert "train.steps: '1e5' is not of type 'integer' (YAML reads 1e5 as text" in problems
    assert "write 100000)" in problems  # an integer, not 100000.0
    assert "write 0.002 or 2.0e-3)" in problems


def test_a_count_written_with_a_point_and_a_seed_out_of_range_fail_naming_the_key():
    """JSON Schema's ``integer`` takes 2.0, which then failed in the shard list's ``range`` or
    the training loop's ``islice``; a seed past 2**32 - 1 failed in ``torch.manual_seed``."""
    config = yaml.safe_load(SMOKE.read_text())
    config["tasks"]["expr"]["splits"]["train"]["shards"] = 2.0
    config["experiments"]["expr_crnn"]["train"].update(steps=6.0, shards=1.0, batch_size=8)
    config["seed"] = 2**64
    problems = config_problems(config, load_schema(SCHEMA_PATH))
    assert problems == [
        "experiments.expr_crnn.train.shards: 1.0 is not of type 'integer', 'null' "
        "(write 1, without a point)",
        "experiments.expr_crnn.train.steps: 6.0 is not of type 'integer' "
        "(write 6, without a point)",
        "seed: 18446744073709551616 is greater than the maximum of 4294967295",
        "tasks.expr.splits.train.shards: 2.0 is not of type 'integer' (write 2, without a point)",
    ]
    config = yaml.safe_load(SMOKE.read_text())
    config["seed"] = 2**32 - 1  # the largest seed, and whole numbers as they are, pass
    assert config_problems(config, load_schema(SCHEMA_PATH)) == []


def test_a_nested_number_given_with_dash_dash_config_is_pointed_to_a_configfile():
    """Snakemake's --config reads the values below the top level as text: 'write 0' would not
    help there (the user wrote 0); at the top level YAML reads them, and its hint stands."""
    nested = {"tasks": {"hanzi": {"splits": {"train": {"shards": "0"}}}}, "seed": "1e3"}
    config, origins = config_with_origins([str(SMOKE)], nested)
    assert check_schema(config, origins=origins).problems == [
        "seed: '1e3' is not of type 'integer' (YAML reads 1e3 as text, not a number: write "
        "1000); from --config",
        "tasks.hanzi.splits.train.shards: '0' is not of type 'integer' (--config reads every "
        "value below the top level as text: set this one in a --configfile); from --config",
    ]
    # the same text from a file is YAML's
    config, origins = config_with_origins([str(SMOKE)])
    config["tasks"]["hanzi"]["splits"]["train"]["shards"] = "1e1"
    assert config_problems(config, load_schema(SCHEMA_PATH), origins) == [
        "tasks.hanzi.splits.train.shards: '1e1' is not of type 'integer' (YAML reads 1e1 as text, "
        "not a number: write 10)"
    ]


def test_nan_and_infinity_fail_at_parse_time_naming_the_key(tmp_path, capsys):
    # NaN passes every minimum and maximum of the schema (a NaN p switched a degradation off);
    # no key takes an infinity either.
    overlay = tmp_path / "nan.yaml"
    overlay.write_text(
        f"extends: {SMOKE}\n"
        "tasks: {expr: {degrade: {blur: {p: .nan}}, font_size: [26, .inf]}}\n"
        "experiments: {expr_crnn: {train: {lr: .nan, weight_decay: -.inf},"
        " model_kwargs: {width: .nan}}}\n"
    )
    expected = [
        "experiments.expr_crnn.model_kwargs.width: nan is not a number; from nan.yaml",
        "experiments.expr_crnn.train.lr: nan is not a number; from nan.yaml",
        "experiments.expr_crnn.train.weight_decay: -inf is not a finite number; from nan.yaml",
        "tasks.expr.degrade.blur.p: nan is not a number; from nan.yaml",
        "tasks.expr.font_size.1: inf is not a finite number; from nan.yaml",
    ]
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid config (5 problems):\n  " + "\n  ".join(expected) in out, out
    with pytest.raises(SystemExit) as e:
        train_main(["--config", str(overlay), "--experiment", "expr_crnn"])
    assert e.value.code == 1  # the command's own error, not a usage error
    err = capsys.readouterr().err
    assert "experiments.expr_crnn.train.lr: nan is not a number; from" in err, err


def test_the_schemas_problems_and_those_past_it_are_listed_at_once(tmp_path, capsys):
    # An unknown key of one experiment, a model argument of another, a split's degradation:
    # one list, one format, whether one problem or several (they came in rounds, the second a
    # bare line).
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        f"extends: {SMOKE}\n"
        "experiments: {hanzi_cnn: {train: {stepz: 3}}, expr_crnn: {model_kwargs: {widht: 0.5}}}\n"
        "tasks: {line: {splits: {val: {degrade: {blurr: {p: 1}}}}}}\n"
    )
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid config (3 problems):\n" in out, out
    for line in [
        "  experiments.hanzi_cnn.train.stepz: unknown key (did you mean 'steps'?); from o.yaml\n",
        "  experiments.expr_crnn.model_kwargs.widht: model 'expr_crnn' takes no argument 'widht'",
        "  tasks.line.splits.val.degrade.blurr: unknown key (did you mean 'blur'?)",
    ]:
        assert line in out, out
    with pytest.raises(SystemExit) as e:
        train_main(["--config", str(overlay), "--experiment", "expr_crnn"])
    assert e.value.code == 1  # the command's own error, not a usage error
    err = capsys.readouterr().err
    # the same list: the split's degradation is the schema's to check now, as the workflow's
    assert "invalid config (3 problems):" in err and "takes no argument 'widht'" in err, err
    assert "tasks.line.splits.val.degrade.blurr: unknown key" in err, err
    overlay.write_text(
        f"extends: {SMOKE}\nexperiments: {{expr_crnn: {{model_kwargs: {{widht: 1}}}}}}\n"
    )
    proc = run_snakemake(tmp_path, "-n", config=overlay, check=False)
    assert "invalid config (1 problem):\n  experiments.expr_crnn.model_kwargs.widht" in proc.stdout


def test_the_workflow_names_the_config_file_of_its_problems(tmp_path):
    """A misspelt key in the one --configfile given: the workflow listed the key but named no
    file (a line names one only when several files set keys), where python -m
    models.configcheck, models.train and models.recognize --task-config all start with it. Its
    heading now starts with the file, relative to the folder Snakemake runs in, as theirs do;
    so does that of the problems of the files it names (a font typo), checked after it."""
    config = _write_config(
        tmp_path, lambda c: c["experiments"]["hanzi_cnn"]["train"].update(stepz=6)
    )
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    out = proc.stdout + proc.stderr
    heading = "\nconfig.yaml: invalid config (1 problem):\n"  # a line of its own: not /tmp/...
    line = "  experiments.hanzi_cnn.train.stepz: unknown key (did you mean 'steps'?)\n"
    assert proc.returncode != 0 and heading + line in out, out
    config = _write_config(tmp_path, lambda c: c["fonts"].update(test_fonts=["no_such.ttf"]))
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    out = proc.stdout + proc.stderr
    line = "  font file no_such.ttf does not exist (fonts.test_fonts)"
    assert proc.returncode != 0 and heading + line in out, out


def test_the_config_check_command_checks_the_files_the_config_names(tmp_path, capsys, monkeypatch):
    """The fonts, charset and corpus files were checked only when the workflow started: a
    config the command called valid stopped Snakemake. Every file problem is listed at once,
    naming key and file, and the workflow refuses the same config with the same lines."""
    from models.configcheck import main

    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"extends: {SMOKE}\n"
        "fonts: {test_fonts: [no_such_font.ttf]}\n"
        "tasks:\n"
        "  short: {charset: {files: [folder]}}\n"
        "  line: {corpus: [latin1.txt], corpus_fraction: 0.5}\n"
    )
    monkeypatch.chdir(tmp_path)  # relative paths are read from the working folder
    assert main([str(mine)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {mine}: invalid config (3 problems):\n"), err
    for line in (
        f"  font file no_such_font.ttf does not exist (fonts.test_fonts) (relative paths are "
        f"read from {tmp_path}); from mine.yaml",
        "  tasks.short.charset.files: folder is a folder, not a text file (list the files in "
        "it); from mine.yaml",
        "  tasks.line.corpus: latin1.txt is not UTF-8 text (byte 3: b'\\xe9'); from mine.yaml",
    ):
        assert line in err.splitlines(), err
    # --no-files: the keys alone (a config for another machine's fonts)
    assert main(["--no-files", str(mine)]) == 0
    assert capsys.readouterr().out == f"{mine}: valid (5 experiments)\n"
    proc = run_snakemake(tmp_path, "-n", config=mine, check=False)
    assert proc.returncode != 0
    assert "invalid config (3 problems):" in proc.stdout + proc.stderr
    assert "tasks.line.corpus: latin1.txt is not UTF-8 text" in proc.stdout + proc.stderr


def test_every_font_file_named_outright_that_cannot_be_used_is_listed(
    tmp_path, capsys, monkeypatch
):
    """Two font typos, one in each list, and a named file that is not a font: only the first
    was listed (the held-out one), so fixing the config took a run per typo. Each is a line of
    its own, naming its key, as every other problem of the config's files is."""
    (tmp_path / "page.ttf").write_text("<html>not a font</html>")
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"extends: {SMOKE}\n"
        "fonts:\n"
        "  paths: [/usr/share/fonts/truetype/wqy/wqy-microhei.ttc, page.ttf, no_such.ttf]\n"
        "  test_fonts: [/usr/share/fonts/truetype/arphic/ukai.ttc, no_such_held_out.ttf]\n"
    )
    monkeypatch.chdir(tmp_path)
    read_from = f"(relative paths are read from {tmp_path}); from mine.yaml"
    lines = [
        "  font file page.ttf is not a font this project reads: not a TrueType or OpenType font "
        f"(it starts with b'<html>no') (fonts.paths) {read_from}",
        f"  font file no_such.ttf does not exist (fonts.paths) {read_from}",
        f"  font file no_such_held_out.ttf does not exist (fonts.test_fonts) {read_from}",
    ]
    _configcheck_lists(capsys, mine, lines)


def test_every_charset_file_of_a_task_that_cannot_be_read_is_listed(tmp_path, capsys, monkeypatch):
    """A task's charset files, a folder, a missing one and one not UTF-8, beside a combining
    mark in its chars: only the first was listed (the folder), each fix found the next."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"extends: {SMOKE}\n"
        "tasks:\n"
        '  short: {charset: {chars: "0q\\u0303", files: [folder, nope.txt, latin1.txt]}}\n'
    )
    monkeypatch.chdir(tmp_path)
    mark = "'q\u0303' (U+0071 U+0303)"
    lines = [
        "  tasks.short.charset.files: folder is a folder, not a text file (list the files in it)",
        f"  tasks.short.charset.files: nope.txt does not exist (relative paths are read from "
        f"{tmp_path})",
        "  tasks.short.charset chars: a combining mark stays separate after NFKC (no single code "
        f"point holds it with its letter): {mark}; a charset holds single code points, one class "
        "each, and a class of a mark would be drawn alone: leave these out",
        "  tasks.short.charset file latin1.txt is not UTF-8: 'utf-8' codec can't decode byte 0xe9 "
        "in position 3: unexpected end of data",
    ]
    # each names the config file that set its key, as every other problem of the config does
    _configcheck_lists(capsys, mine, [f"{line}; from mine.yaml" for line in lines])


def test_the_config_check_command_lists_what_the_workflow_would_refuse(tmp_path, capsys):
    """python -m models.configcheck: the workflow's own checks, before Snakemake starts (it only
    read the YAML before: a typo passed it); --help is no file."""
    from models.configcheck import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "usage: python -m models.configcheck [-h] [--each] [--no-files] FILE [FILE ...]"
    ), out
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2 and "required: FILE" in capsys.readouterr().err
    assert main([str(SMOKE)]) == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        f"extends: {SMOKE}\nexperiments:\n  expr_crnn: {{model_kwargs: {{widht: 1}}}}\n"
        "  hanzi_cnn: {train: {stepz: 5}}\ntasks: {short: {splits: {train: {samples: -3}}}}\n"
    )
    assert main([str(mine)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {mine}: invalid config (3 problems):\n"), err
    for line in (
        f"experiments.hanzi_cnn.train.stepz: unknown key (did you mean 'steps'?); from {mine}",
        "tasks.short.splits.train.samples: -3 is less than the minimum of 1",
        "experiments.expr_crnn.model_kwargs.widht: model 'expr_crnn' takes no argument",
    ):
        assert line in err, err
    # the workflow refuses the same file with the same lines (naming it relative to its folder)
    proc = run_snakemake(tmp_path, "-n", config=mine, check=False)
    assert proc.returncode != 0 and "invalid config (3 problems):" in proc.stdout
    for line in err.splitlines()[1:]:
        assert line.replace(str(mine), mine.name) in proc.stdout + proc.stderr, line

    # Several files are one config, as --configfile A B reads them (make report CONFIG="A B"):
    # an overlay that extends nothing is not an experiment without its task and model.
    steps = tmp_path / "steps.yaml"
    steps.write_text("experiments:\n  hanzi_cnn:\n    train: {steps: 8}\n")
    assert main([str(SMOKE), str(steps)]) == 0
    assert capsys.readouterr().err == ""
    run_snakemake(tmp_path, str(steps), "-n", config=SMOKE)  # --configfile SMOKE steps.yaml
    assert main(["--each", str(SMOKE), str(steps)]) == 1  # each alone: steps.yaml is no config
    err = capsys.readouterr().err
    assert err.startswith(f"error: {steps}: invalid config (2 problems):\n"), err
    assert "experiments.hanzi_cnn: 'task' is a required property" in err
    assert main([str(SMOKE), str(mine)]) == 1  # the stack's problems, under both names
    assert capsys.readouterr().err.startswith(f"error: {SMOKE} {mine}: invalid config (3 ")
    # the charset settings the workflow refused only when it started: listed here too, together
    spaced = tmp_path / "spaced.yaml"
    spaced.write_text(
        f"extends: {SMOKE}\ntasks:\n  line: {{charset: {{space: true}}}}\n"
        "  expr: {charset: {limit: 5}}\n"
    )
    assert main([str(spaced)]) == 1
    err = capsys.readouterr().err
    assert "invalid config (2 problems)" in err, err
    assert "tasks.line.charset.space: only lines of your own text hold spaces" in err
    assert "tasks.expr.charset.limit: 5 shrinks the source, and source chars has none" in err


def _configcheck_lists(capsys, config, lines, *flags):
    """``python -m models.configcheck [flags] config`` exits 1, listing exactly ``lines`` under
    its heading."""
    from models.configcheck import main

    assert main([*flags, str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: invalid config ({len(lines)} problems):\n"), err
    assert err.splitlines()[1:] == lines, err


def _the_workflow_refuses_with(tmp_path, config, lines):
    """``snakemake -n`` with ``config`` fails, listing ``lines`` under the heading that
    ``python -m models.configcheck`` prints them under; its output."""
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    out = proc.stdout + proc.stderr
    heading = f"invalid config ({len(lines)} problems):\n"
    assert proc.returncode != 0 and heading + "\n".join(lines) in out, out
    return out


def test_the_config_check_command_lists_every_own_test_set_problem(tmp_path, capsys, monkeypatch):
    """The own test sets were checked only when the workflow started, one problem a run: the
    command lists them all, each naming its key and file, and --no-files keeps the ones its keys
    give alone. The workflow refuses the config with the same lines, all at once."""
    from models.configcheck import main

    (tmp_path / "x.tsv").write_text("a.png\t1\n", encoding="utf-8")
    (tmp_path / "latin1.tsv").write_bytes("a.png\t\xe9\n".encode("latin-1"))
    (tmp_path / "braces.tsv").write_text("ok.png\t1\nim{1}.png\t2\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "b{x}").mkdir()
    (tmp_path / "b{x}" / "x.tsv").write_text("a.png\t1\n", encoding="utf-8")
    base = _write_config(tmp_path, lambda c: c["experiments"].pop("hanzi_cnn"))
    mine = tmp_path / "mine.yaml"
    own = {
        "test_seen": "x.tsv",
        "test_hanzi": "x.tsv",
        "test_gone": "gone.tsv",
        "test_folder": "folder",
        "test_latin": "latin1.tsv",
        "test_braces": "braces.tsv",
        "test_path": "b{x}/x.tsv",
        "test_fine": "x.tsv",
    }
    tests = {
        s: {"task": "hanzi" if s == "test_hanzi" else "expr", "labels": f} for s, f in own.items()
    }
    mine.write_text(yaml.safe_dump({"extends": str(base), "own_tests": tests}, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # relative paths are read from the working folder
    keys = [
        "own_tests.test_seen: a split of the synthetic data has that name",
        "own_tests.test_hanzi: no experiment of task 'hanzi' in the config reads it",
        "own_tests.test_path.labels: b{x}/x.tsv: braces in a path are Snakemake's wildcards: "
        "rename it",
    ]
    problems = [
        *keys[:2],
        f"own_tests.test_gone.labels: gone.tsv is not a file (relative paths are read from "
        f"{tmp_path})",
        f"own_tests.test_folder.labels: folder is not a file (relative paths are read from "
        f"{tmp_path})",
        "own_tests.test_latin.labels: latin1.tsv:1: not UTF-8 (invalid continuation byte)",
        "own_tests.test_braces.labels: line 2: im{1}.png: braces in a path are Snakemake's "
        "wildcards: rename the file",
        keys[2],
    ]
    _configcheck_lists(capsys, mine, [f"  {p}; from mine.yaml" for p in problems])
    _configcheck_lists(capsys, mine, [f"  {p}; from mine.yaml" for p in keys], "--no-files")
    # the workflow refuses the config with the same lines, all at once
    _the_workflow_refuses_with(tmp_path, mine, [f"  {p}; from mine.yaml" for p in problems])
    # a labels file that can be read, of a task an experiment reads, is valid
    mine.write_text(
        yaml.safe_dump({"extends": str(base), "own_tests": {"test_fine": tests["test_fine"]}})
    )
    assert main([str(mine)]) == 0, capsys.readouterr().err


def test_a_font_path_with_braces_is_named_when_the_config_is_read(
    tmp_path, capsys, monkeypatch, latin_font, heldout_font
):
    """A font file whose name holds braces, in a folder fonts.paths lists, stopped Snakemake
    with 'Wildcards in input files cannot be determined from output files: 'Vu'', naming
    neither the file nor the key: the config check names both, as for own_tests' paths."""
    mine = tmp_path / "fonts"
    mine.mkdir()
    (mine / "Deja{Vu}.ttf").write_bytes(latin_font.read_bytes())
    held = tmp_path / "held"
    held.mkdir()
    (held / "U{Kai}.ttc").write_bytes(heldout_font.read_bytes())

    def edit(c):
        c["fonts"]["paths"].append("fonts")
        c["fonts"]["test_fonts"] = [str(held / "U{Kai}.ttc")]

    config = _write_config(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    _configcheck_lists(
        capsys,
        config,
        [
            "  fonts.paths: fonts/Deja{Vu}.ttf: braces in a path are Snakemake's wildcards: "
            "rename it",
            f"  fonts.test_fonts: {held}/U{{Kai}}.ttc: braces in a path are Snakemake's "
            "wildcards: rename it",
        ],
    )


def test_a_font_named_in_another_encoding_is_named_when_the_config_is_read(
    tmp_path, capsys, monkeypatch, latin_font, heldout_font
):
    """A font file whose name is GBK (from a Windows archive), not UTF-8: Snakemake stopped
    writing its lock file with "UnicodeEncodeError: surrogates not allowed", naming neither the
    file nor the key; the config check names both, the name's bytes shown as \\xNN."""
    mine, held = tmp_path / "fonts", tmp_path / "held"
    mine.mkdir()
    held.mkdir()
    gbk = os.fsdecode("你好".encode("gbk"))  # b"\xc4\xe3\xba\xc3", no UTF-8
    (mine / f"{gbk}.ttf").write_bytes(latin_font.read_bytes())
    (held / f"{gbk}.ttc").write_bytes(heldout_font.read_bytes())

    def edit(c):
        c["fonts"]["paths"].append("fonts")
        c["fonts"]["test_fonts"] = [str(held / f"{gbk}.ttc")]

    config = _write_config(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    said = (
        r"\xc4\xe3\xba\xc3.tt{}: its name is not UTF-8 (bytes shown as \xNN), which Snakemake "
        "needs of every path: rename it (convmv -f gbk -t utf-8 renames a GBK name)"
    )
    _configcheck_lists(
        capsys,
        config,
        [
            "  fonts.paths: fonts/" + said.format("f"),
            f"  fonts.test_fonts: {held}/" + said.format("c"),
        ],
    )


def _configcheck_of_a_hanzi_named_font(tmp_path, font, locale):
    """``python -m models.configcheck`` of a config whose fonts.paths adds a folder holding
    ``font`` as 字体.ttf, run in the environment ``locale`` adds."""
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "字体.ttf").write_bytes(font.read_bytes())
    config = _write_config(tmp_path, lambda c: c["fonts"]["paths"].append("fonts"))
    return subprocess.run(
        [sys.executable, "-m", "models.configcheck", str(config)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **locale},
        capture_output=True,
        timeout=120,
    )


def test_a_font_named_in_utf8_passes_the_config_check_in_a_latin1_locale(tmp_path, latin_font):
    """A UTF-8 name (字体.ttf) under a Latin-1 locale is read as other characters, which
    Snakemake writes (as the reruns of a hanzi-named font under en_US.ISO-8859-1 did): the
    check refuses only a name the locale cannot decode (it refused this one as not UTF-8)."""
    latin1 = made_locale(tmp_path / "locales", "en_US", "ISO-8859-1")
    proc = _configcheck_of_a_hanzi_named_font(tmp_path, latin_font, latin1)
    assert proc.returncode == 0, proc.stderr.decode("latin-1")[-2000:]


def test_a_utf8_font_name_in_an_ascii_locale_is_the_locales_fault(tmp_path, latin_font):
    """Under LC_ALL=C with Python's UTF-8 mode off, a UTF-8 name (字体.ttf) cannot be read, and
    Snakemake cannot write it: the check says the locale is at fault (it said the name was not
    UTF-8, and to rename it from GBK)."""
    proc = _configcheck_of_a_hanzi_named_font(
        tmp_path, latin_font, {"LC_ALL": "C", "PYTHONUTF8": "0"}
    )
    said = proc.stderr.decode("ascii", "backslashreplace")
    assert proc.returncode == 1, said[-2000:]
    assert (
        "fonts.paths: fonts/\\u5b57\\u4f53.ttf: its name is UTF-8, which this locale's encoding "
        "(ascii) cannot read, and Snakemake cannot write it: run under a UTF-8 locale "
        "(LC_ALL=C.UTF-8)"
    ) in said, said[-2000:]


def test_every_key_that_holds_a_path_expands_tilde_and_variables(tmp_path, monkeypatch):
    """Only extends expanded ~ and $VARS: a font listed as ~/fonts/Mine.ttf 'did not exist', and
    a glob such as ${FONT_DIR}/*.ttf matched nothing (a warning) and the run drew without those
    fonts. Every key the schema marks as a path is expanded now, as extends is; a path with
    neither is left as it is."""
    home, data = tmp_path / "home", tmp_path / "data"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SYNTHOCR_DATA", str(data))

    def edit(c):
        c["fonts"]["paths"] = ["~/fonts/*.ttf", "$HOME/x.ttf", "/usr/share/fonts/a.ttf", "f/*"]
        c["fonts"]["test_fonts"] = ["${SYNTHOCR_DATA}/held.ttf"]
        c["tasks"]["expr"]["charset"]["files"] = ["~/chars.txt"]
        c["tasks"]["line"]["corpus"] = ["$SYNTHOCR_DATA/corpus.txt"]
        c["experiments"]["expr_crnn"]["train"] = {"init_from": "~/models/model.pt"}
        c["own_tests"] = {"test_mine": {"task": "expr", "labels": "${SYNTHOCR_DATA}/l.tsv"}}

    config = yaml.safe_load(SMOKE.read_text())
    edit(config)
    checked = check_schema(config)
    assert checked.problems == []
    filled = checked.config
    assert filled["fonts"]["paths"] == [
        f"{home}/fonts/*.ttf",
        f"{home}/x.ttf",
        "/usr/share/fonts/a.ttf",
        "f/*",
    ]
    assert filled["fonts"]["test_fonts"] == [f"{data}/held.ttf"]
    assert filled["tasks"]["expr"]["charset"]["files"] == [f"{home}/chars.txt"]
    assert filled["tasks"]["line"]["corpus"] == [f"{data}/corpus.txt"]
    assert filled["experiments"]["expr_crnn"]["train"]["init_from"] == f"{home}/models/model.pt"
    assert filled["own_tests"]["test_mine"]["labels"] == f"{data}/l.tsv"
    assert config["fonts"]["paths"][0] == "~/fonts/*.ttf"  # the config given is left as it was


def test_fonts_named_from_home_and_a_variable_are_the_jobs_inputs(
    tmp_path, monkeypatch, cjk_font, heldout_font, capsys
):
    """Real fonts copied into a home folder and a folder a variable names: the config check
    finds them, and Snakemake takes the expanded files as the coverage jobs' inputs."""
    from models.configcheck import main

    home, held = tmp_path / "home", tmp_path / "held"
    (home / "fonts").mkdir(parents=True)
    held.mkdir()
    shutil.copy(cjk_font, home / "fonts" / "Mine.ttc")
    shutil.copy(heldout_font, held / "Held.ttc")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SYNTHOCR_HELD", str(held))
    work = tmp_path / "work"
    work.mkdir()
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(
        f"extends: {SMOKE}\n"
        "fonts: {paths: ['~/fonts/Mine.ttc'], test_fonts: ['${SYNTHOCR_HELD}/*.ttc']}\n"
    )
    monkeypatch.chdir(work)
    assert main([str(overlay)]) == 0, capsys.readouterr().err
    proc = run_snakemake(
        work, "-n", "results/fonts/line/train.tsv", "results/fonts/line/test.tsv", config=overlay
    )
    inputs = re.findall(r"^\s*input: (.*)$", proc.stdout, re.MULTILINE)
    assert sorted(inputs) == sorted([str(home / "fonts" / "Mine.ttc"), str(held / "Held.ttc")])
    assert "matches no font file" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("edit", "key", "path"),
    [
        (
            lambda c: c["fonts"].update(test_fonts=["${SYNTHOCR_NO_FONTS}/x.ttf"]),
            "fonts.test_fonts.0",
            "${SYNTHOCR_NO_FONTS}/x.ttf",
        ),
        (
            lambda c: c["experiments"]["expr_crnn"].update(
                train={"init_from": "$SYNTHOCR_NO_MODELS/model.pt"}
            ),
            "experiments.expr_crnn.train.init_from",
            "$SYNTHOCR_NO_MODELS/model.pt",
        ),
    ],
)
def test_a_path_naming_a_variable_that_is_not_set_is_an_error_naming_key_and_variable(
    tmp_path, monkeypatch, capsys, edit, key, path
):
    """Left as written, ${SYNTHOCR_NO_FONTS}/x.ttf named a folder '${SYNTHOCR_NO_FONTS}' in the
    working folder; a glob of it matched nothing, and the run went on without those files."""
    from models.configcheck import main

    variable = re.search(r"\w+", path.split("$", 1)[1]).group()
    monkeypatch.delenv(variable, raising=False)
    config = _write_config(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    line = (
        f"{key}: {path}: ${variable} is not set in the environment (a path's ~ and $VARS are "
        "expanded: set it, or write the path out)"
    )
    assert main([str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [f"  {line}"]
    proc = run_snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    assert line in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_a_variable_is_named_in_a_path_as_expandvars_reads_it(monkeypatch):
    """expandvars reads a name of ASCII letters, digits and _ (``$HOME字体`` is $HOME and 字体;
    ``价$元.ttf`` names no variable): the check reads it so too, and neither refuses a path that
    expands in full nor says that a variable it expanded is not set."""
    monkeypatch.setenv("SYNTHOCR_FONTS", "/data/fonts")
    config = yaml.safe_load(SMOKE.read_text())
    config["fonts"]["paths"] = ["$SYNTHOCR_FONTS字体/*.ttf", "fonts/价$元.ttf"]
    checked = check_schema(config)
    assert checked.problems == []
    assert checked.config["fonts"]["paths"] == ["/data/fonts字体/*.ttf", "fonts/价$元.ttf"]


def test_the_check_without_files_takes_a_variable_this_machine_does_not_set(
    tmp_path, monkeypatch, capsys
):
    """--no-files checks a config for another machine's fonts: its paths may name a variable
    that machine sets and this one does not (or a user of its own). Without --no-files, or in
    `check_schema`, that is still the error naming key and variable."""
    from models.configcheck import main

    monkeypatch.delenv("SYNTHOCR_CLUSTER_FONTS", raising=False)
    mine = tmp_path / "cluster.yaml"
    mine.write_text(
        f"extends: {SMOKE}\n"
        "fonts: {paths: ['$SYNTHOCR_CLUSTER_FONTS/*.ttf', '~synthocr_no_such_user/f.ttf']}\n"
    )
    assert main(["--no-files", str(mine)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"{mine}: valid (5 experiments)\n"
    assert main([str(mine)]) == 1
    err = capsys.readouterr().err
    assert "fonts.paths.0: $SYNTHOCR_CLUSTER_FONTS/*.ttf: $SYNTHOCR_CLUSTER_FONTS is not set" in err
    assert "fonts.paths.1: ~synthocr_no_such_user/f.ttf: ~synthocr_no_such_user cannot" in err
    config = load_config_file(mine)
    assert len(check_schema(config).problems) == 2
    unchecked = check_schema(config, environment=False)
    assert unchecked.problems == []
    assert unchecked.config["fonts"]["paths"] == config["fonts"]["paths"]  # as written


def test_a_path_that_cannot_be_expanded_in_full_is_left_as_written(monkeypatch):
    """A path of which one variable is set and another not is a problem naming the one not set,
    and the config `check_schema` gives keeps the path as its message shows it, not half
    expanded (`expand_paths`)."""
    monkeypatch.setenv("SYNTHOCR_FONTS", "/data/fonts")
    monkeypatch.delenv("SYNTHOCR_NO_FONTS", raising=False)
    config = yaml.safe_load(SMOKE.read_text())
    written = "$SYNTHOCR_FONTS/$SYNTHOCR_NO_FONTS/*.ttf"
    config["fonts"]["paths"] = [written]
    checked = check_schema(config)
    assert [p.split(": ", 2)[:2] for p in checked.problems] == [["fonts.paths.0", written]]
    assert checked.config["fonts"]["paths"] == [written]


def test_a_path_from_the_home_of_no_known_user_is_an_error(tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    config["fonts"]["paths"] = ["~synthocr_no_such_user/fonts/*.ttf"]
    assert check_schema(config).problems == [
        "fonts.paths.0: ~synthocr_no_such_user/fonts/*.ttf: ~synthocr_no_such_user cannot be "
        "expanded: no user 'synthocr_no_such_user' is known"
    ]


def test_a_variable_holding_a_tilde_is_an_error_not_a_glob_of_nothing(monkeypatch):
    """FONT_DIR="~/fonts" (quoted, as a shell keeps it): a variable's ~ is not expanded, as in a
    shell, and ``$FONT_DIR/*.ttf`` would match nothing (a warning), the run drawing without the
    fonts: a problem naming the key and what it expands to, the path kept as written."""
    monkeypatch.setenv("SYNTHOCR_FONTS", "~/fonts")
    config = yaml.safe_load(SMOKE.read_text())
    written = "$SYNTHOCR_FONTS/*.ttf"
    config["fonts"]["paths"] = [written]
    checked = check_schema(config)
    assert checked.problems == [
        f"fonts.paths.0: {written}: expands to ~/fonts/*.ttf, whose ~ a variable's value leaves "
        "unexpanded (as a shell does): set the variable to the path written out"
    ]
    assert checked.config["fonts"]["paths"] == [written]
    monkeypatch.setenv("SYNTHOCR_FONTS", "fonts~old")  # a ~ past the start is a name's own
    assert check_schema(config).problems == []


def test_the_config_check_command_lists_every_init_from_problem(tmp_path, capsys, monkeypatch):
    """train.init_from was checked only when the workflow started, one problem a run: the
    command lists every experiment's, each naming its key and file (a cycle once), and
    --no-files those its keys give alone. The workflow refuses the config with the same lines,
    all at once."""
    from models.configcheck import main

    expr = yaml.safe_load(SMOKE.read_text())["experiments"]["expr_crnn"]
    starts = {
        "expr_crnn": "results/models/expr_crnn/model.pt",  # its own
        "expr_a": "./results/models/expr_b/model.pt",  # a cycle, however spelled
        "expr_b": "results//models/expr_a/model.pt",
        "expr_vgg": f"{tmp_path}/results/models/line_crnn_vgg/model.pt",  # crnn_vgg's
        "expr_gone": "nowhere.pt",
        "expr_left": "results/models/gone/model.pt",
        "expr_mine": "mine.pt",  # a file of yours
        "expr_tuned": "results/models/expr_a/model.pt",  # another expr_crnn's
    }
    experiments = {
        n: {**expr, "train": {**expr["train"], "init_from": p}} for n, p in starts.items()
    }
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"extends": str(SMOKE), "experiments": experiments}))
    (tmp_path / "mine.pt").write_bytes(b"not read here")
    monkeypatch.chdir(tmp_path)
    where = "experiments.{}.train.init_from: {} "
    keys = [
        where.format("expr_a", starts["expr_a"]) + "starts a cycle of experiments each starting "
        "from the next one's model (experiments.expr_a.train.init_from -> experiments.expr_b."
        "train.init_from -> experiments.expr_a.train.init_from): one of them must start from a "
        "file, or afresh",
        where.format("expr_crnn", starts["expr_crnn"]) + "is this experiment's own model; copy "
        "it elsewhere to start from it",
        where.format("expr_vgg", starts["expr_vgg"]) + "is experiment line_crnn_vgg's model "
        "(crnn_vgg); this experiment trains expr_crnn, and weights start only a model of the same "
        "architecture",
    ]
    problems = [
        keys[0],
        keys[1],
        where.format("expr_gone", "nowhere.pt") + "does not exist and no experiment makes it "
        f"(relative paths are read from {tmp_path})",
        where.format("expr_left", starts["expr_left"]) + "does not exist and no experiment "
        f"makes it (the config has no experiment 'gone') (relative paths are read from {tmp_path})",
        keys[2],
    ]
    _configcheck_lists(capsys, mine, [f"  {p}; from mine.yaml" for p in problems])
    _configcheck_lists(capsys, mine, [f"  {p}; from mine.yaml" for p in keys], "--no-files")
    # the workflow refuses the config with the same lines, all at once
    lines = [f"  {p}; from mine.yaml" for p in problems]
    assert "Cyclic" not in _the_workflow_refuses_with(tmp_path, mine, lines)
    # a file of yours, another experiment's model of the same architecture: valid
    for name in ("expr_crnn", "expr_b", "expr_vgg", "expr_gone", "expr_left"):
        del experiments[name]
    experiments["expr_a"]["train"]["init_from"] = None
    mine.write_text(yaml.safe_dump({"extends": str(SMOKE), "experiments": experiments}))
    assert main([str(mine)]) == 0, capsys.readouterr().err


def test_a_charset_of_no_character_is_listed_once_with_or_without_files(
    tmp_path, capsys, monkeypatch
):
    """source chars with blank chars and no file is empty whatever the files hold: --no-files
    called it valid, and the workflow refused it."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.yaml"
    empty = {"source": "chars", "chars": ""}
    tasks = {"expr": {"charset": empty}, "short": {"charset": {**empty, "chars": "  "}}}
    mine.write_text(yaml.safe_dump({"extends": str(SMOKE), "tasks": tasks}))
    lines = [
        f"  tasks.{task}.charset: source chars, and chars and files give no character: an empty "
        "charset; list the task's characters in chars (or in files); from mine.yaml"
        for task in ("expr", "short")
    ]
    _configcheck_lists(capsys, mine, lines)
    _configcheck_lists(capsys, mine, lines, "--no-files")


def test_the_config_check_command_lists_every_report_entry_problem(tmp_path, capsys, monkeypatch):
    """report.targets and report.references were checked only when the workflow started: the
    command lists every entry that names no figure of the run, each naming its key and file,
    --no-files too (the keys alone give them). The workflow refuses the config with the same
    lines."""
    from models.configcheck import main

    (tmp_path / "caps.tsv").write_text("a.png\tAB\n", encoding="utf-8")
    target = {"experiment": "expr_crnn", "metric": "seq_acc", "value": 0.9}
    reference = {**target, "source": "a paper"}
    targets = [
        target,
        {**target, "split": "test_heldot"},
        {**target, "experiment": "expr_crn"},
        {**target, "experiment": "hanzi_cnn", "metric": "top_1", "split": "test_caps"},
        {**target, "split": "test_caps"},  # an own test set of another task
        {**target, "experiment": "short_reader", "split": "test_caps"},
    ]
    references = [
        {**reference, "experiment": "tesseract"},  # Tesseract's rows are one per task
        {**reference, "experiment": "line_crnn_vgg", "metric": "value_acc"},
        {**reference, "metric": "value_acc"},
    ]
    mine = tmp_path / "mine.yaml"

    def write(targets, references):
        mine.write_text(
            yaml.safe_dump(
                {
                    "extends": str(SMOKE),
                    "own_tests": {"test_caps": {"task": "short", "labels": "caps.tsv"}},
                    "report": {"targets": targets, "references": references},
                }
            )
        )

    write(targets, references)
    monkeypatch.chdir(tmp_path)
    experiments = "expr_crnn, hanzi_cnn, line_crnn_grcnn, line_crnn_vgg, short_reader"
    problems = [
        "report.targets.1.split: 'test_heldot' is none of expr_crnn's test splits, test_seen, "
        "test_heldout",
        "report.targets.2.experiment: 'expr_crn' is not an experiment of the config; valid: "
        + experiments,
        "report.targets.3.split: 'test_caps' is none of hanzi_cnn's test splits, test_seen, "
        "test_heldout",
        "report.targets.3.metric: 'top_1' is not one of hanzi_cnn's figures; valid: seq_acc, cer, "
        "ned, top1, top5",
        "report.targets.4.split: 'test_caps' is none of expr_crnn's test splits, test_seen, "
        "test_heldout",
        "report.references.0.experiment: 'tesseract' is not an experiment of the config; valid: "
        + experiments,
        "report.references.1.metric: 'value_acc' is not one of line_crnn_vgg's figures; valid: "
        "seq_acc, cer, ned",
    ]
    lines = [f"  {p}; from mine.yaml" for p in problems]
    for flags in ([], ["--no-files"]):
        _configcheck_lists(capsys, mine, lines, *flags)
    # the workflow refuses the config with the same lines
    _the_workflow_refuses_with(tmp_path, mine, lines)
    # a target on an own test set of the experiment's task, the default split, a reference
    write([targets[0], targets[5]], [references[2]])
    assert main([str(mine)]) == 0, capsys.readouterr().err


def test_the_workflow_lists_every_start_problem_as_the_config_check_command_does(
    tmp_path, capsys, monkeypatch
):
    """The workflow ran the checks of its start one after another and stopped at the first
    problem of an own test set or a train.init_from: a run named the fonts, the next the labels
    file, the next the checkpoint. It runs them as the command does, once
    (models.configcheck.start_check), and lists every problem at once, in the command's lines."""
    from models.configcheck import main

    def edit(c):
        c["fonts"]["paths"] = ["nofonts/*.ttf"]
        c["own_tests"] = {"test_mine": {"task": "expr", "labels": "gone.tsv"}}
        c["report"]["targets"] = [{"experiment": "expr_crn", "metric": "seq_acc", "value": 0.9}]
        c["experiments"]["expr_crnn"]["train"]["init_from"] = "results/models/expr_crnn/model.pt"

    config = _write_config(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    assert main([str(config)]) == 1
    err = capsys.readouterr().err
    heading, *lines = err[err.index("error: ") :].splitlines()
    assert heading == f"error: {config}: invalid config (4 problems):", err
    assert [line.split(":")[0].strip() for line in lines] == [
        "fonts.paths",
        "own_tests.test_mine.labels",
        "report.targets.0.experiment",
        "experiments.expr_crnn.train.init_from",
    ], err
    _the_workflow_refuses_with(tmp_path, config, lines)


def test_no_function_of_the_project_is_named_as_pytest_collects_a_test():
    """pytest collects a function named test* that a test module imports at its top (a class
    named Test*) as a test of that module: models.configcheck.test_splits, the splits a task is
    evaluated on, was one (now evaluated_splits). No module outside tests/ defines one."""
    import ast

    named = [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.name}"
        for folder in ("models", "synth", "bench", "workflow")
        for path in sorted((REPO / folder).rglob("*.py"))
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test")
        )
        or (isinstance(node, ast.ClassDef) and node.name.startswith("Test"))
    ]
    assert named == []


# A stand-in for snakemake-executor-plugin-slurm (not installed here): a non-local executor that
# records what each job would be submitted with and touches its outputs instead of running it.
FAKE_SLURM = """
import json, os, pathlib
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings

common_settings = CommonSettings(
    non_local_exec=True, implies_no_shared_fs=False, job_deploy_sources=False,
    pass_default_storage_provider_args=True, pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False, auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
)

class Executor(RemoteExecutor):
    def run_job(self, job):
        record = {"rule": job.name, "threads": job.threads, **{
            k: job.resources.get(k) for k in ("gpu", "gres", "slurm_extra", "cpus_per_task")}}
        with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
            f.write(json.dumps(record) + "\\n")
        for out in [*job.output, *job.log, *([job.benchmark] if job.benchmark else [])]:
            pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(out).touch()
        self.report_job_success(SubmittedJobInfo(job))

    async def check_active_jobs(self, active_jobs):
        for job in active_jobs:
            yield job

    def cancel_jobs(self, active_jobs):
        pass
"""


def test_the_slurm_profile_schedules_every_job_without_cores(tmp_path):
    """Under a cluster executor no --cores is given: a job whose config threads were 0 ("every
    core") read the missing total and stopped the run at the first Tesseract or training job.
    The profile asks a GPU with the plugin's own `gpu` resource (it refuses --gres in
    slurm_extra, and gres beside gpu)."""
    plugin = tmp_path / "plugins" / "snakemake_executor_plugin_slurm"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(FAKE_SLURM)
    log = tmp_path / "submitted.jsonl"
    profile = str(REPO / "workflow" / "profiles" / "slurm")
    # the target after an option: --configfile takes every word that follows it
    cmd = snakemake_command(tmp_path / "run", "--profile", profile, "results/crnn_report.csv")
    env = {**os.environ, "PYTHONPATH": f"{plugin.parent}:{REPO}", "FAKE_SLURM_LOG": str(log)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = [json.loads(line) for line in log.read_text().splitlines()]
    by_rule = {job["rule"]: job for job in jobs}
    assert {"shard", "train", "evaluate", "tesseract", "crnn_report"} <= set(by_rule)
    assert (by_rule["train"]["threads"], by_rule["train"]["gpu"]) == (8, 1)
    assert (by_rule["evaluate"]["threads"], by_rule["evaluate"]["gpu"]) == (4, 1)
    assert by_rule["tesseract"]["threads"] == 4 and by_rule["shard"]["threads"] == 1
    assert not any(job["gres"] or job["slurm_extra"] for job in jobs)


@pytest.mark.parametrize("tasks", ["[hanzi, expr]", "hanzi", "3"])
def test_tasks_that_are_not_a_mapping_are_a_problem_of_the_config(tmp_path, capsys, tasks):
    """``tasks:`` written as a list, a word or a number: the schema's problem was never said,
    since filling in its defaults stopped at it with an AttributeError's traceback, in the
    config check, the workflow and --task-config alike. It is listed as the other keys' are."""
    from models.configcheck import main as configcheck

    config = tmp_path / "mine.yaml"
    config.write_text(f"seed: 1\ntasks: {tasks}\n")
    assert configcheck(["--no-files", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: invalid config (1 problem):\n  tasks: "), err
    assert "is not of type 'object'" in err and "Traceback" not in err


def test_only_an_experiments_model_file_is_taken_for_its_model(tmp_path, monkeypatch):
    """results/models/X/model.pt is experiment X's model; another file of its folder (a copy
    the user keeps beside it) or a model.pt deeper down is a file of the user's."""
    from models.configcheck import experiment_of

    monkeypatch.chdir(tmp_path)
    assert experiment_of("results/models/expr_crnn/model.pt") == "expr_crnn"
    for path in (
        "results/models/expr_crnn/best.pt",
        "results/models/expr_crnn/old/model.pt",
        "results/models/model.pt",
        "results/expr_crnn/model.pt",
    ):
        assert experiment_of(path) is None, path


def test_the_start_check_takes_a_model_no_experiment_makes_for_a_file_of_yours(
    tmp_path, monkeypatch, caplog
):
    """start_check tells the workflow where each experiment starts from: another experiment's
    model (its train job makes it, even when the file is there already), or a file of the
    user's (None), one left by an experiment the config no longer has too; it warns of that
    one alone."""
    from models.configcheck import start_check

    _, config = read_workflow_config([SMOKE])
    monkeypatch.chdir(tmp_path)
    experiments = config["experiments"]
    experiments["expr_tuned"] = copy.deepcopy(experiments["expr_crnn"])
    experiments["expr_tuned"]["train"]["init_from"] = "results/models/expr_crnn/model.pt"
    experiments["expr_crnn"]["train"]["init_from"] = "results/models/expr_old/model.pt"
    for name in ("expr_crnn", "expr_old"):
        made = tmp_path / "results/models" / name / "model.pt"
        made.parent.mkdir(parents=True)
        made.write_bytes(b"weights")
    with caplog.at_level("WARNING", logger="models.configcheck"):
        found = start_check(config)
    assert found.problems == []
    assert found.starts_from == {"expr_crnn": None, "expr_tuned": "expr_crnn"}
    warned = [r.getMessage() for r in caplog.records if r.name == "models.configcheck"]
    assert len(warned) == 1 and warned[0].startswith(
        "experiments.expr_crnn.train.init_from: results/models/expr_old/model.pt was made by an "
        "experiment 'expr_old' that the config no longer has"
    ), warned


def test_an_own_test_names_the_first_line_of_its_labels_with_braces(tmp_path, monkeypatch):
    """Of the image paths with braces in an own test set's labels file, the first is named,
    with its line."""
    from models.configcheck import own_test

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.tsv").write_text(
        "ok.png\t1\nfirst{1}.png\t2\nsecond{2}.png\t3\n", encoding="utf-8"
    )
    config = {
        "own_tests": {"test_mine": {"task": "expr", "labels": "mine.tsv"}},
        "experiments": {"expr_crnn": {"task": "expr"}},
    }
    assert own_test(config, "test_mine").problems == [
        "own_tests.test_mine.labels: line 2: first{1}.png: braces in a path are Snakemake's "
        "wildcards: rename the file"
    ]


def test_expr_operators_are_left_to_the_charset_files_that_may_hold_them(tmp_path, capsys):
    """An expr charset of chars and files: an operator its chars lack may be in a file (read
    when the workflow starts, checked by the shard job), so the keys alone refuse nothing;
    chars alone that lack it are refused, naming the operator."""
    from models.configcheck import main

    mine = tmp_path / "mine.yaml"
    charset = {"source": "chars", "chars": "0123456789()", "files": [str(tmp_path / "ops.txt")]}
    mine.write_text(
        yaml.safe_dump({"extends": str(SMOKE), "tasks": {"expr": {"charset": charset}}})
    )
    assert main(["--no-files", str(mine)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    charset["files"] = []
    mine.write_text(
        yaml.safe_dump({"extends": str(SMOKE), "tasks": {"expr": {"charset": charset}}})
    )
    assert main(["--no-files", str(mine)]) == 1
    assert (
        "tasks.expr.operators: '+-*' is not in tasks.expr.charset.chars" in capsys.readouterr().err
    )


def test_a_corpus_up_to_the_size_read_at_start_is_read_whole(tmp_path, monkeypatch):
    """A corpus of up to CORPUS_READ_AT_START bytes is read when the run starts (blank text is
    named then); one byte more is left to the shard jobs."""
    from models import configcheck

    monkeypatch.setattr(configcheck, "CORPUS_READ_AT_START", 8)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" " * 8, encoding="utf-8")
    assert configcheck.corpus_problem(str(corpus)) == "holds only whitespace"
    corpus.write_text(" " * 9, encoding="utf-8")
    assert configcheck.corpus_problem(str(corpus)) is None


def test_the_config_check_command_counts_one_experiment_as_one(tmp_path, capsys):
    """``FILE: valid (1 experiment)``, not "1 experiments"."""
    from models.configcheck import main

    def one(c):
        c["experiments"] = {"expr_crnn": c["experiments"]["expr_crnn"]}

    config = _write_config(tmp_path, one)
    assert main(["--no-files", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: valid (1 experiment)\n"
