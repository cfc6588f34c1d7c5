"""The training loop: schedules, outputs, resume (in-process and after a real SIGKILL), errors,
and the lock that keeps a second training off an output folder."""

from __future__ import annotations

import contextlib
import copy
import csv
import errno
import io
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import Terminal
from test_data import LINE, write_shards
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import models.train as train_module
from models.checkpoint import CheckpointError, load_checkpoint, load_model, read_meta
from models.crnn import CRNN
from models.data import SampleLabelError, ShardError, eval_batches
from models.devices import DistEnv, dist_env, resolve_device
from models.families import CTCFamily, make_family
from models.registry import build_model
from models.specs import (
    WEIGHT_NEUTRAL,
    TrainJob,
    TrainSpec,
    hashed_settings,
    run_hash,
    run_hashes,
    settings_drift,
    train_job_params,
)
from models.train import (
    HISTORY_COLUMNS,
    LOCK_FILE,
    WANTED_FILE,
    NonFiniteLossError,
    OutputLockedError,
    RankStoppedError,
    TrainingStopped,
    align_weight_at,
    clip_gradients,
    ema_update,
    job_from_config,
    lr_at,
    main,
    output_lock,
    param_groups,
    train,
    validate,
)
from models.transfer import TransferError
from synth.shards import sha256_file

REPO = Path(__file__).resolve().parents[1]
SQUARE64 = {"kind": "square", "size": 64}
TINY_CRNN = {"width": 0.125, "hidden": 16}


@pytest.fixture(scope="module")
def line_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("line")
    train_shards = write_shards(root / "shards", "train", 2, 24, "0123", LINE, seed=1, centers=True)
    val_shards = write_shards(root / "shards", "val", 1, 8, "0123", LINE, seed=2)
    charset = root / "charset.txt"
    charset.write_text("0\n1\n2\n3\n", encoding="utf-8")
    return root, train_shards, val_shards, str(charset)


def line_job(line_data, out_dir, **train_kw) -> TrainJob:
    _, train_shards, val_shards, charset = line_data
    spec = dict(
        steps=8,
        batch_size=4,
        warmup_steps=2,
        val_every=4,
        val_batches=1,
        checkpoint_every=3,
        log_every=2,
        num_workers=0,
        shuffle_buffer=16,
    )
    spec.update(train_kw)
    return TrainJob(
        experiment="line_tiny",
        task="line",
        model="crnn_vgg",
        model_kwargs=TINY_CRNN,
        train=TrainSpec(**spec),
        seed=11,
        device="cpu",
        charset=charset,
        train_shards=tuple(train_shards),
        val_shards=tuple(val_shards),
        out_dir=str(out_dir),
    )


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant", "wsd"])
def test_lr_schedules(schedule):
    spec = TrainSpec(steps=100, lr=0.01, warmup_steps=10, schedule=schedule, min_lr_ratio=0.1)
    lrs = [lr_at(s, spec) for s in range(100)]
    assert lrs[0] == pytest.approx(0.001)  # warm-up: linear from lr / warmup
    assert lrs[9] == pytest.approx(0.01)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(lrs[:10]))
    assert max(lrs) == pytest.approx(0.01)
    if schedule == "constant":
        assert lrs[-1] == pytest.approx(0.01)
    else:
        assert lrs[-1] == pytest.approx(0.001)  # lr * min_lr_ratio at the last step
        assert all(a >= b - 1e-12 for a, b in itertools.pairwise(lrs[10:]))
    # the fall from the peak (step 10) to the last step (99): half a cosine, or a straight line
    fall = [(s - 10) / 89 for s in range(10, 100)]
    if schedule == "cosine":
        assert lrs[10:] == pytest.approx(
            [0.001 + 0.0045 * (1 + math.cos(math.pi * x)) for x in fall]
        )
    if schedule == "onecycle":
        assert lrs[10:] == pytest.approx([0.01 - 0.009 * x for x in fall])
    assert lrs == [lr_at(s, spec) for s in range(100)]  # a pure function of the step


def test_wsd_holds_the_peak_until_its_decay_fraction_then_falls_linearly():
    spec = TrainSpec(steps=100, lr=0.01, warmup_steps=10, schedule="wsd", min_lr_ratio=0.1)
    lrs = [lr_at(s, spec) for s in range(100)]
    assert lrs[10:81] == [0.01] * 71  # held at the peak until the last 20% (the default)
    assert lrs[81] < 0.01 and lrs[99] == pytest.approx(0.001)
    steps = [a - b for a, b in itertools.pairwise(lrs[80:])]
    assert steps == pytest.approx([0.009 / 19] * 19)  # linear down over steps 80-99
    half = replace(spec, decay_fraction=0.5)
    assert [lr_at(s, half) for s in (49, 50, 51)] == [0.01, 0.01, pytest.approx(0.01 - 0.009 / 49)]
    # a decay longer than what the warm-up leaves starts when the warm-up ends
    whole = replace(spec, decay_fraction=1.0)
    assert lr_at(9, whole) == pytest.approx(0.01) and lr_at(10, whole) == pytest.approx(0.01)
    assert lr_at(11, whole) < 0.01 and lr_at(99, whole) == pytest.approx(0.001)
    # the other schedules ignore it
    cosine = replace(spec, schedule="cosine")
    assert [lr_at(s, cosine) for s in range(100)] == [
        lr_at(s, replace(cosine, decay_fraction=0.7)) for s in range(100)
    ]
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"train\.decay_fraction must be in \(0, 1\]"):
            TrainSpec(schedule="wsd", decay_fraction=bad)


def test_a_wsd_decay_of_one_step_still_ends_at_the_lowest_rate():
    # decay_fraction x steps rounding to 1: the decay's last step is the run's last, at the
    # lowest rate, rather than a decay whose only step stays at the peak (no decay at all)
    for steps, fraction in ((10, 0.1), (10, 0.05), (20, 0.07), (2, 0.2)):
        spec = TrainSpec(
            steps=steps,
            lr=0.01,
            warmup_steps=0,
            schedule="wsd",
            decay_fraction=fraction,
            min_lr_ratio=0.1,
        )
        lrs = [lr_at(s, spec) for s in range(steps)]
        assert lrs[:-1] == [0.01] * (steps - 1), (steps, fraction)
        assert lrs[-1] == pytest.approx(0.001), (steps, fraction)


def test_settings_added_later_stay_out_of_a_train_jobs_params_at_their_defaults():
    """A train job's Snakemake params: an upgrade that adds a setting (the schema fills in its
    default) must not rerun a model trained before it, nor change that run's key."""
    defaults = TrainSpec().to_dict()
    params = train_job_params(defaults)
    assert "decay_fraction" not in params and "init_from" not in params
    assert not set(params) & {"threads", "mem_mb", "priority"}  # scheduling hints
    assert params["schedule"] == "cosine" and params["lr"] == defaults["lr"]
    assert train_job_params({**defaults, "init_from": "a.pt"})["init_from"] == "a.pt"
    assert "decay_fraction" not in hashed_settings(TrainSpec(schedule="wsd"))
    wsd = {**defaults, "schedule": "wsd", "decay_fraction": 0.3}
    assert hashed_settings(TrainSpec(**wsd))["decay_fraction"] == 0.3
    assert train_job_params(wsd)["decay_fraction"] == 0.3
    # The other schedules never read it: set there, it neither keys a run nor reruns a job.
    for schedule in ("cosine", "onecycle", "constant"):
        ignored = TrainSpec(schedule=schedule, decay_fraction=0.3)
        assert hashed_settings(ignored) == hashed_settings(TrainSpec(schedule=schedule))
        assert train_job_params(ignored.to_dict()) == train_job_params(
            TrainSpec(schedule=schedule).to_dict()
        )


def test_the_alignment_loss_weight_is_a_function_of_the_step_and_keys_the_run_when_set():
    assert align_weight_at(0, TrainSpec()) == 0.0  # off by default
    held = TrainSpec(align_weight=0.5)
    assert {align_weight_at(s, held) for s in (0, 999, 10**6)} == {0.5}
    falling = TrainSpec(align_weight=2.0, align_steps=4)
    assert [align_weight_at(s, falling) for s in range(6)] == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    defaults = TrainSpec().to_dict()
    assert not {"align_weight", "align_steps"} & set(train_job_params(defaults))
    assert not {"align_weight", "align_steps"} & set(hashed_settings(TrainSpec()))
    assert hashed_settings(falling)["align_weight"] == 2.0
    assert train_job_params(falling.to_dict())["align_steps"] == 4
    for key in ("align_weight", "align_steps"):
        with pytest.raises(ValueError, match=rf"train\.{key} must be >= 0.*got -1"):
            TrainSpec(**{key: -1})


def test_the_alignment_loss_is_logged_beside_the_ctc_loss(line_data, tmp_path):
    """With ``align_weight`` the history's ``align_loss`` column holds the alignment loss of
    the steps it weighed (it is left empty after ``align_steps``), and ``train_loss`` stays
    the CTC loss: the same run without it logs the same first CTC loss."""
    on_job = line_job(line_data, tmp_path / "on", log_every=1, align_weight=1.0, align_steps=4)
    train(on_job)
    train(line_job(line_data, tmp_path / "off", log_every=1))
    with open(tmp_path / "on" / "history.csv", newline="") as f:
        on = list(csv.DictReader(f))
    with open(tmp_path / "off" / "history.csv", newline="") as f:
        off = list(csv.DictReader(f))
    # a row at step s logs step s - 1: steps 0-3 weigh the alignment loss, step 4 on do not
    assert [int(r["step"]) for r in on if r["align_loss"]] == [1, 2, 3, 4]
    assert all(float(r["align_loss"]) > 0 for r in on if r["align_loss"])
    assert all(not r["align_loss"] for r in off)
    assert on[0]["train_loss"] == off[0]["train_loss"]  # step 0: the same weights and batch
    assert on[1]["train_loss"] != off[1]["train_loss"]  # step 0's update differed


def test_onecycle_without_warmup_uses_30_percent():
    spec = TrainSpec(steps=100, lr=1.0, warmup_steps=0, schedule="onecycle")
    lrs = [lr_at(s, spec) for s in range(100)]
    assert max(range(100), key=lrs.__getitem__) == 29


def test_weight_average_warms_up():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = AveragedModel(model, multi_avg_fn=ema_update(0.9), use_buffers=True)
    average.update_parameters(model)  # the first update copies the weights
    expected = model[0].weight.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model(torch.randn(4, 2))  # batch norm statistics and counter move too
        average.update_parameters(model)
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * model[0].weight.detach()
    assert torch.allclose(average.module[0].weight, expected)
    assert int(average.module[1].num_batches_tracked) == 29

    # The initial weights are soon forgotten: after 29 updates to weights of 0 they keep a share
    # of 2/11 * 3/12 * ... * 30/39 < 1e-6, where a fixed decay of 0.9 keeps 0.9**29 = 4.7%.
    linear = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(linear.weight, 1.0)
    warm = AveragedModel(linear, multi_avg_fn=ema_update(0.9))
    fixed = AveragedModel(linear, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    for n in range(30):
        warm.update_parameters(linear)
        fixed.update_parameters(linear)
        if n == 0:
            torch.nn.init.constant_(linear.weight, 0.0)
    with torch.no_grad():
        assert float(warm.module.weight.max()) < 1e-6
        assert float(fixed.module.weight.min()) == pytest.approx(0.9**29, rel=1e-4)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("train_shards", "/data/train-000000.tar", r"train_shards must be a list of paths"),
        ("val_shards", ["a.tar", 3], r"val_shards must be a list of paths, got \['a\.tar', 3\]"),
        ("seed", "7", r"seed must be an integer, got '7'"),
        ("seed", True, r"seed must be an integer, got True"),
        ("seed", 7.0, r"seed must be an integer, got 7\.0"),
        ("model", None, r"model must be a string, got None"),
        ("out_dir", ["x"], r"out_dir must be a string"),
        ("model_kwargs", [1], r"model_kwargs must be a mapping \(an object\), got \[1\]"),
        ("train", "fast", r"train must be a mapping"),
        ("train.steps", "100", r"train\.steps must be an integer, got '100'"),
        ("train.lr", True, r"train\.lr must be a number, got True"),
        ("train.amp", 1, r"train\.amp must be true or false, got 1"),
        ("train.schedule", 2, r"train\.schedule must be a string, got 2"),
        ("train.init_from", 0, r"train\.init_from must be a string or null, got 0"),
        ("train.shards", "8", r"train\.shards must be an integer or null, got '8'"),
    ],
)
def test_a_spec_field_of_the_wrong_type_is_named(tmp_path, capsys, field, value, error):
    good = {
        "experiment": "x",
        "task": "line",
        "model": "crnn_vgg",
        "model_kwargs": dict(TINY_CRNN),
        # every setting, so each annotation has its check; an int is a number, null no path
        "train": {**TrainSpec().to_dict(), "steps": 2, "lr": 1},
        "seed": 7,
        "device": "cpu",
        "charset": "c.txt",
        "train_shards": ["t.tar"],
        "val_shards": [],
        "out_dir": "out",
    }
    assert TrainJob.from_dict(good).train_shards == ("t.tar",)
    assert TrainJob.from_dict({**good, "model_kwargs": None, "train": None}).train == TrainSpec()
    bad = copy.deepcopy(good)
    if field.startswith("train."):
        bad["train"][field[6:]] = value
    else:
        bad[field] = value
    with pytest.raises(ValueError, match=r"^spec: " + error):
        TrainJob.from_dict(bad)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(bad))
    with pytest.raises(SystemExit) as e:  # the CLI: one line, before anything is read
        main(["--spec", f"@{spec}"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert re.search(r"error: --spec @.*: spec: " + error, err) and "Traceback" not in err


@pytest.mark.parametrize(
    ("train", "seed", "error"),
    [
        ({"log_every": 0}, 7, r"train\.log_every: 0 is less than the minimum of 1"),
        ({"lr": float("nan")}, 7, r"train\.lr: nan is not a number"),
        ({"lr": float("inf")}, 7, r"train\.lr: inf is not a finite number"),
        ({"clip_grad": -1, "warmup_steps": -5}, 7,
         r"train\.clip_grad: -1 is less than the minimum of 0; train\.warmup_steps: -5 is less"),
        ({"num_workers": -2}, 7, r"train\.num_workers: -2 is less than the minimum of 0"),
        ({"schedule": "cosin"}, 7, r"train\.schedule: 'cosin' is not one of"),
        ({}, -1, r"seed: -1 is less than the minimum of 0"),
        ({}, 2**64, r"seed: 18446744073709551616 is greater than the maximum of 4294967295"),
    ],
)  # fmt: skip
def test_a_specs_settings_are_held_to_the_configs_bounds(train, seed, error):
    """A spec written by hand (python -m models.train --spec) gets the schema's bounds, as a
    config does: these failed with a ZeroDivisionError, torch's own errors, or trained on to a
    NaN loss naming no key."""
    job = {
        "experiment": "x", "task": "line", "model": "crnn_vgg", "model_kwargs": dict(TINY_CRNN),
        "train": {"steps": 2}, "seed": 7, "device": "cpu", "charset": "c.txt",
        "train_shards": ["t.tar"], "val_shards": [], "out_dir": "out",
    }  # fmt: skip
    assert TrainJob.from_dict(job).train.steps == 2
    with pytest.raises(ValueError, match=r"^spec: " + error):
        TrainJob.from_dict({**job, "train": {"steps": 2, **train}, "seed": seed})


def test_a_spec_file_given_without_its_at_sign_is_pointed_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("job.json").write_text("{}")
    for spec, hint in [("job.json", True), ("{not json", False), ("x" * 5000, False)]:
        with pytest.raises(SystemExit) as e:
            main(["--spec", spec])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert "error: --spec " in err and "Traceback" not in err
        assert ("(a file: give it as --spec @job.json)" in err) == hint, err


def test_a_spec_file_is_read_as_utf8_whatever_the_locale(tmp_path):
    """A spec file is JSON, UTF-8: its paths read the same in a process whose locale is ASCII
    (LC_ALL=C without Python's UTF-8 mode), where a Latin-1 locale read 字 as three other
    characters and an ASCII one refused the file."""
    job = {
        "experiment": "x",
        "task": "line",
        "model": "crnn_vgg",
        "model_kwargs": dict(TINY_CRNN),
        "train": {"steps": 2},
        "seed": 7,
        "device": "cpu",
        "charset": "字符/line.txt",
        "train_shards": ["t.tar"],
        "val_shards": [],
        "out_dir": "out",
    }
    (tmp_path / "spec.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "models.train", "--spec", "@spec.json"],
        cwd=tmp_path,
        env={**env, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        timeout=120,
    )
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 1, err
    assert "error: x needs 字符/line.txt, t.tar" in err, err


@pytest.mark.parametrize(
    ("given", "option"),
    [
        (["--config", "c.yaml"], "--config"),
        (["--experiment", "tiny"], "--experiment"),
        (["--config", "c.yaml", "--experiment", "tiny"], "--config"),
        (["--results", "elsewhere"], "--results"),
    ],
)
def test_a_spec_with_a_config_experiment_or_results_is_refused(
    tmp_path, capsys, monkeypatch, given, option
):
    """The spec names the job, its files and its output folder: these were silently ignored."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--spec", "@job.json", *given])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[-1]
        == f"python -m models.train: error: argument --spec: not allowed with argument {option}"
    )
    assert not list(tmp_path.iterdir())


def test_train_spec_defaults_match_the_schema():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["definitions"]["train"]["properties"]
    defaults = TrainSpec().to_dict()
    assert set(props) == set(defaults)
    for key, prop in props.items():
        assert prop["default"] == defaults[key], key
        assert prop.get("description"), key
    with pytest.raises(ValueError, match=r"unknown key.*'stpes'"):
        TrainSpec.from_config({"stpes": 3})
    with pytest.raises(ValueError, match=r"train\.curriculum_steps must be >= 0, got -1"):
        TrainSpec(curriculum_steps=-1)
    with pytest.raises(ValueError, match=r"train\.label_smoothing must be in \[0, 1\), got 1"):
        TrainSpec(label_smoothing=1)
    with pytest.raises(ValueError, match=r"train\.threads must be >= 0 \(0 = every core\), got -1"):
        TrainSpec(threads=-1)


def test_run_hash_follows_what_the_weights_depend_on(line_data, tmp_path):
    job = line_job(line_data, tmp_path)
    charset = list("0123")
    same = replace(
        job,
        out_dir="elsewhere",
        device="cuda",
        train=replace(job.train, mem_mb=9, threads=1, priority=5),
    )
    assert run_hash(same, charset) == run_hash(job, charset)
    assert run_hash(replace(job, seed=12), charset) != run_hash(job, charset)
    assert run_hash(job, list("01234")) != run_hash(job, charset)
    assert run_hash(replace(job, train=replace(job.train, lr=0.5)), charset) != run_hash(
        job, charset
    )
    # A setting added later keys only the runs that set it: older runs keep their key.
    smoothed = replace(job, train=replace(job.train, label_smoothing=0.1))
    assert run_hash(smoothed, charset) != run_hash(job, charset)
    assert "label_smoothing" not in hashed_settings(job.train)
    assert hashed_settings(smoothed.train)["label_smoothing"] == 0.1
    # Regenerated data under the same names (new fonts, say) is a new run, not a finished one.
    before = run_hash(job, charset)
    copies = []
    for i, shard in enumerate(job.train_shards):
        copy = tmp_path / "copy" / Path(shard).name
        copy.parent.mkdir(exist_ok=True)
        data = Path(shard).read_bytes()
        copy.write_bytes(data if i else data[:-1024] + b"\1" + data[-1023:])
        copies.append(str(copy))
    assert run_hash(replace(job, train_shards=tuple(copies)), charset) != before
    copies[0] = job.train_shards[0]
    assert run_hash(replace(job, train_shards=tuple(copies)), charset) == before


def test_a_curriculum_that_cuts_segments_keys_its_run_afresh(line_data, tmp_path, monkeypatch):
    """A curriculum whose stages end inside checkpoint segments draws another stream since the
    stream cuts them there (models.data.TrainStream.piece_start): its run is keyed afresh,
    not resumed half in the old stream; one of whole segments keeps its key."""
    import models.specs as specs_module

    keys = []
    digest = specs_module._digest
    monkeypatch.setattr(specs_module, "_digest", lambda key: keys.append(key) or digest(key))
    job = line_job(line_data, tmp_path)
    every = job.train.checkpoint_every
    for curriculum, cut in ((0, False), (2 * every, False), (every + 1, True)):
        keys.clear()
        run_hash(replace(job, train=replace(job.train, curriculum_steps=curriculum)), ["0"])
        assert ("stream" in keys[-1]) is cut, (curriculum, job.train.checkpoint_every)


def test_the_run_key_follows_the_process_count(line_data, tmp_path):
    _, _, _, charset = line_data
    job = line_job(line_data, tmp_path)
    # one process keeps the key it had before the process count was part of it
    assert run_hash(job, charset, world_size=1) == run_hash(job, charset)
    assert run_hash(job, charset, world_size=2) != run_hash(job, charset)
    assert run_hashes(job, charset, 2) == (run_hash(job, charset, 2), run_hash(job, charset))
    assert run_hashes(job, charset) == (run_hash(job, charset),) * 2


def test_settings_drift_names_what_an_experiment_changed_since_its_run():
    experiment = {
        "task": "line",
        "model": "crnn_vgg",
        "model_kwargs": {"width": 0.25},
        "train": {"steps": 300, "lr": 0.002},
    }
    recorded = {**experiment, "seed": 7, "train": TrainSpec(steps=300, lr=0.002).to_dict()}
    assert settings_drift(recorded, experiment, seed=7) == []
    # scheduling settings are no drift; the rest are, each named with both values
    assert (
        settings_drift(
            recorded, {**experiment, "train": {"steps": 300, "lr": 0.002, "mem_mb": 1}}, 7
        )
        == []
    )
    edited = {
        **experiment,
        "model_kwargs": {"width": 0.5},
        "train": {"steps": 3000, "lr": 0.002, "init_from": "a.pt"},
    }
    assert settings_drift(recorded, edited, seed=8) == [
        "model_kwargs: {'width': 0.25} -> {'width': 0.5}",
        "seed: 7 -> 8",
        "train.init_from: None -> 'a.pt'",
        "train.steps: 300 -> 3000",
    ]
    # the training shards the config gives it, when the run recorded how many it read
    assert settings_drift(recorded, experiment, 7, train_shards=4) == []  # recorded none
    read = {**recorded, "train_shards": 2}
    assert settings_drift(read, experiment, 7, train_shards=2) == []
    assert settings_drift(read, experiment, 7, train_shards=4) == ["training shards: 2 -> 4"]


def test_the_run_key_follows_the_bytes_of_the_checkpoint_it_started_from(line_data, tmp_path):
    job = line_job(line_data, tmp_path)
    charset = list("0123")
    (tmp_path / "a.pt").write_bytes(b"one")
    (tmp_path / "moved.pt").write_bytes(b"one")
    (tmp_path / "b.pt").write_bytes(b"two")

    def keyed(path):
        return run_hash(replace(job, train=replace(job.train, init_from=str(path))), charset)

    assert keyed(tmp_path / "a.pt") != run_hash(job, charset)
    assert keyed(tmp_path / "moved.pt") == keyed(tmp_path / "a.pt")  # its bytes, not its path
    assert keyed(tmp_path / "b.pt") != keyed(tmp_path / "a.pt")
    assert "init_from" not in hashed_settings(job.train)  # unset: older runs keep their key
    with pytest.raises(ValueError, match=r"train\.init_from must be a checkpoint path, got ''"):
        TrainSpec(init_from="")


def test_fine_tuning_starts_from_the_source_weights_and_resumes(line_data, tmp_path):
    train(line_job(line_data, tmp_path / "base"))
    source = tmp_path / "base" / "model.pt"
    # A learning rate too small to move the weights: the run ends where it started.
    still = dict(steps=5, lr=1e-9, weight_decay=0.0, warmup_steps=0, val_every=5)
    tuned = train(line_job(line_data, tmp_path / "tuned", init_from=str(source), **still))
    scratch = train(line_job(line_data, tmp_path / "scratch", **still))
    assert tuned.run_hash != scratch.run_hash
    base_model, _ = load_model(source)
    tuned_model, meta = load_model(tmp_path / "tuned" / "model.pt")
    scratch_model, _ = load_model(tmp_path / "scratch" / "model.pt")
    base_params = dict(base_model.named_parameters())
    for name, p in tuned_model.named_parameters():
        assert torch.allclose(p, base_params[name], atol=1e-6), name
    assert not any(
        torch.allclose(p, base_params[name], atol=1e-6)
        for name, p in scratch_model.named_parameters()
        if p.numel() > 1
    )
    assert meta.train["init_from"] == str(source)
    info = json.loads((tmp_path / "tuned" / "train.json").read_text())["init_from"]
    assert info["sha256"] == sha256_file(source) and info["step"] == 8
    assert (info["classes_kept"], info["classes_new"], info["classes_dropped"]) == (4, 0, 0)
    assert json.loads((tmp_path / "scratch" / "train.json").read_text())["init_from"] is None

    # Interrupted, a fine-tuning resumes from its own checkpoint and ends as an uninterrupted one.
    moving = dict(steps=7, init_from=str(source))
    full = train(line_job(line_data, tmp_path / "full", **moving))
    _interrupt(line_job(line_data, tmp_path / "part", **moving), at_step=5)
    resumed = train(line_job(line_data, tmp_path / "part", **moving))
    assert resumed.resumed_from == 3 and resumed.run_hash == full.run_hash
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_source_that_does_not_fit_stops_training_before_it_starts(line_data, tmp_path, capsys):
    train(line_job(line_data, tmp_path / "base"))
    wide = replace(
        line_job(line_data, tmp_path / "wide", init_from=str(tmp_path / "base" / "model.pt")),
        model_kwargs={"width": 0.25, "hidden": 16},
    )
    with pytest.raises(TransferError, match=r"base/model\.pt: backbone\..*width: 0\.125 there"):
        train(wide)
    assert not (tmp_path / "wide" / "model.pt").exists()
    spec = tmp_path / "wide.json"
    spec.write_text(json.dumps(replace(wide, train=replace(wide.train, init_from=None)).to_dict()))
    with pytest.raises(SystemExit) as e:  # the CLI: one line naming the file, no traceback
        main(["--spec", f"@{spec}", "--init-from", str(tmp_path / "gone.pt")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "error: train.init_from: checkpoint" in err and "gone.pt does not exist" in err
    assert "Traceback" not in err
    # A run's own model.pt (its next rerun would start from this one's end) is refused too.
    own = line_job(line_data, tmp_path / "base", init_from=str(tmp_path / "base" / "model.pt"))
    with pytest.raises(TransferError, match=r"model\.pt is this run's own model\.pt"):
        train(own)


def test_the_command_line_names_user_errors_and_ctrl_c_in_one_line(
    line_data, tmp_path, capsys, monkeypatch
):
    def run(job: TrainJob) -> tuple[int, str]:
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps(job.to_dict()))
        try:
            code = main(["--spec", f"@{spec}"])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    # A diverging run: the loss, the step and the advice, not a traceback.
    job = line_job(line_data, tmp_path / "nan", lr=1e9, warmup_steps=0, clip_grad=0)
    code, err = run(job)
    assert code == 1 and "training stopped" in err and "Lower train.lr" in err, err
    # A charset file that is not one, named.
    bad = tmp_path / "charset.txt"
    bad.write_text("01\n2\n", encoding="utf-8")
    code, err = run(replace(line_job(line_data, tmp_path / "cs"), charset=str(bad)))
    assert code == 1 and f"charset {bad}: lines must hold one character each" in err, err
    bad.write_bytes(b"0\n\xff\n")
    code, err = run(replace(line_job(line_data, tmp_path / "cs"), charset=str(bad)))
    assert code == 1 and f"charset {bad}: not UTF-8" in err, err
    # A device this machine lacks, or a name that is none, as evaluate and recognize say it.
    job = line_job(line_data, tmp_path / "dev")
    for device, said in (
        ("cuda:7" if not torch.cuda.is_available() else "cuda:4096", "device 'cuda:"),
        ("cpu:x", "unknown device 'cpu:x'"),
    ):
        code, err = run(replace(job, device=device))
        assert code == 1 and said in err, err

    # Ctrl-C: one line saying the resume state is kept, and the shell's status for SIGINT.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    code, err = run(line_job(line_data, tmp_path / "stopped"))
    assert code == 130 and "interrupted; its resume state is kept" in err, err


def _command_line_training(job: TrainJob, spec: Path, **popen: Any) -> subprocess.Popen:
    """``python -m models.train --spec @spec`` of ``job`` started, its log on a pipe (stderr)."""
    spec.write_text(json.dumps(job.to_dict()))
    repo = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "models.train", "--spec", f"@{spec}"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _log_until(proc: subprocess.Popen, pattern: str, seconds: float = 300) -> list[str]:
    """The lines of ``proc``'s log up to the first that matches ``pattern``. A log that ends,
    or shows none within ``seconds`` (the process is then killed), fails the test, rather
    than waiting for a 100,000-step training to end."""
    import threading

    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if re.search(pattern, line):
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"no log line matching {pattern!r} within {seconds} s:\n{''.join(lines)}")


@contextlib.contextmanager
def _killed_after(proc: subprocess.Popen, group: bool = False) -> Iterator[None]:
    """Whatever the test asserts, ``proc`` (and its process group) does not outlive it."""
    try:
        yield
    finally:
        if proc.poll() is None:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout=60)


def test_ctrl_c_stops_the_command_line_in_one_line_and_the_rerun_resumes(line_data, tmp_path):
    job = line_job(line_data, tmp_path / "out", steps=100_000, checkpoint_every=3)
    proc = _command_line_training(
        job,
        tmp_path / "job.json",
        # Ctrl-C's default action, which a test run started in the background (SIGINT ignored,
        # and so inherited) would otherwise leave out of Python's start-up
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with _killed_after(proc):
        lines = _log_until(proc, r"step [4-9]/100000")  # a checkpoint's worth of steps
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "python -m models.train: interrupted; its resume state is kept" in err, err
    assert "Traceback" not in err, err
    [state] = (tmp_path / "out" / "resume").iterdir()
    assert json.loads((state / "run.json").read_text())["step"] >= 3


def test_sigterm_saves_the_step_it_reached_and_the_command_line_exits_143(line_data, tmp_path):
    """SIGTERM (SLURM's at a job's time limit, before SIGKILL) stops the run after the step
    under way, its state saved at that step, not at the last checkpoint: with checkpoint_every
    far off, the rerun resumes from the step the log last showed. SLURM signals the job's
    whole process group, DataLoader workers too: they ignore it (torch's own handler ended
    them, and the step failed with "DataLoader worker is killed", nothing saved)."""
    job = line_job(
        line_data, tmp_path / "out", steps=100_000, checkpoint_every=10_000, num_workers=2
    )
    # a process group of its own: the trainer and its workers
    proc = _command_line_training(job, tmp_path / "job.json", start_new_session=True)
    with _killed_after(proc, group=True):
        lines = _log_until(proc, r"step [4-9]/100000")
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True)
        assert len(workers.stdout.split()) == 2, workers  # the two DataLoader workers
        os.killpg(proc.pid, signal.SIGTERM)  # as SLURM does: every process of the job
        rest = proc.communicate(timeout=60)[1]
    err = "".join(lines) + rest
    assert proc.returncode == 143, err
    said = re.search(r"stopped by SIGTERM at step (\d+) of 100000; its state is saved in", err)
    assert said and "Traceback" not in err, err
    [state] = (tmp_path / "out" / "resume").iterdir()
    assert json.loads((state / "run.json").read_text())["step"] == int(said[1]) >= 4


def test_a_run_that_raises_leaves_no_dataloader_worker_behind(line_data, tmp_path):
    """The workers ignore SIGTERM (SLURM's goes to the whole process group); the interpreter's
    exit ends daemonic processes with SIGTERM and then joins them, so a worker outliving its
    run held the exit for ever: a CI run hung after its last test. A run that raises (its
    traceback kept, as a test runner keeps it) has stopped its workers."""
    import multiprocessing

    real_lr_at = train_module.lr_at

    def interrupting(step, spec):
        if step == 5:
            raise KeyboardInterrupt
        return real_lr_at(step, spec)

    job = line_job(line_data, tmp_path, steps=7, num_workers=2)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt) as kept:
        patch.setattr(train_module, "lr_at", interrupting)
        train(job)
    assert kept.traceback  # the frames that hold the loader's iterator, kept alive
    assert [p for p in multiprocessing.active_children() if p.is_alive()] == []


def test_a_run_stopped_by_sigterm_resumes_to_the_same_weights(line_data, tmp_path):
    """In process: SIGTERM during step 4 (checkpoint_every 3) saves step 5; the rerun resumes
    there and ends as a run never stopped, weights and history alike."""
    settings = dict(steps=7, checkpoint_every=3, ema_decay=0.8)
    full = train(line_job(line_data, tmp_path / "full", **settings))
    real_lr_at = train_module.lr_at

    def terminating(step, spec):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before this step's figures are made
        return real_lr_at(step, spec)

    before = signal.getsignal(signal.SIGTERM)
    part = line_job(line_data, tmp_path / "part", **settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "lr_at", terminating)
        with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM at step 5 of 7"):
            train(part)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's alone
    resumed = train(part)
    assert resumed.resumed_from == 5 and resumed.run_hash == full.run_hash
    _assert_same_run(tmp_path / "part", tmp_path / "full")


def test_state_killed_before_its_run_json_is_still_found_by_another_process_count(
    line_data, tmp_path
):
    """A kill between a run's first last.pt and its run.json left state that a run on another
    process count did not see: it trained afresh, and deleted that state as stale."""
    from models.train import RUN_INFO, _run_on_other_process_count

    result = train(line_job(line_data, tmp_path, steps=4, checkpoint_every=2))
    state = tmp_path / "resume" / result.run_hash
    info = json.loads((state / RUN_INFO).read_text())
    (state / RUN_INFO).unlink()
    found = _run_on_other_process_count(tmp_path / "resume", info["one_process_hash"], "other")
    assert found == (result.run_hash, info)
    assert _run_on_other_process_count(tmp_path / "resume", "another job", "other") is None


def test_resume_state_that_does_not_fit_the_model_starts_afresh(line_data, tmp_path, caplog):
    first = train(line_job(line_data, tmp_path, steps=3))
    last = tmp_path / "resume" / first.run_hash / "last.pt"
    # The model's code changed under an unchanged config: the saved weights no longer fit.
    ckpt = load_checkpoint(last)
    ckpt["state_dict"] = {k: v[..., :1] for k, v in ckpt["state_dict"].items() if v.dim()}
    torch.save(ckpt, last)
    again = train(line_job(line_data, tmp_path, steps=3))
    assert again.resumed_from == 0 and again.steps == 3
    assert "does not fit the model" in caplog.text and "starting afresh" in caplog.text
    # afresh means the fresh weights, not the stale tensors that still fitted
    fresh = train(line_job(line_data, tmp_path / "fresh", steps=3))
    a = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "fresh" / "model.pt", weights_only=True)["state_dict"]
    assert fresh.run_hash == again.run_hash and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_state_whose_tensors_changed_shape_alone_starts_afresh(line_data, tmp_path, caplog):
    # The same keys, one of another shape (a layer's size changed in the model's code).
    first = train(line_job(line_data, tmp_path, steps=3))
    last = tmp_path / "resume" / first.run_hash / "last.pt"
    ckpt = load_checkpoint(last)
    key = next(k for k, v in ckpt["state_dict"].items() if v.dim() == 2)
    ckpt["state_dict"][key] = ckpt["state_dict"][key][:, :1].clone()
    torch.save(ckpt, last)
    again = train(line_job(line_data, tmp_path, steps=3))
    assert again.resumed_from == 0 and again.steps == 3
    assert f"does not fit the model (1 tensors differ, e.g. {key})" in caplog.text


def test_the_history_so_far_is_written_beside_each_checkpoint(line_data, tmp_path):
    """history.csv is a final output, written when training ends: a long run is followed, and a
    stopped one read, by the copy written with each checkpoint in its resume folder."""
    real_lr_at = train_module.lr_at

    def interrupting(step, spec):
        if step == 7:
            raise KeyboardInterrupt
        return real_lr_at(step, spec)

    job = line_job(line_data, tmp_path, steps=8, checkpoint_every=3, log_every=2)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(train_module, "lr_at", interrupting)
        train(job)
    assert not (tmp_path / "history.csv").exists()
    [state] = (tmp_path / "resume").iterdir()
    with open(state / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the checkpoint of step 6 holds the rows of steps 2, 4 (validated) and 6
    assert [r["step"] for r in rows] == ["2", "4", "6"], rows
    assert rows[1]["val_loss"] and all(float(r["train_loss"]) > 0 for r in rows)
    kept = load_checkpoint(state / "last.pt")["resume"]["history"]
    assert [str(r["step"]) for r in kept] == ["2", "4", "6"]
    result = train(job)  # resumed, and finished: the copy is the final history
    assert result.resumed_from == 6
    assert (state / "history.csv").read_bytes() == (tmp_path / "history.csv").read_bytes()


def test_a_kill_between_the_last_checkpoint_and_its_history_is_put_right(line_data, tmp_path):
    """The copy of the history is written after last.pt: killed between the two at the last
    step, the rerun finds the run finished and trains no step (so writes no checkpoint), and the
    copy must still end as the final history.csv, not a checkpoint behind it."""
    real_write_history = train_module._write_history

    def killed_at_the_end(path, rows):
        if path.parent.parent.name == "resume" and rows and rows[-1]["step"] == 8:
            raise KeyboardInterrupt  # SIGKILL: last.pt of step 8 is on disk, its history is not
        real_write_history(path, rows)

    job = line_job(line_data, tmp_path, steps=8, checkpoint_every=3, log_every=2)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(train_module, "_write_history", killed_at_the_end)
        train(job)
    [state] = (tmp_path / "resume").iterdir()
    with open(state / "history.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "4", "6"]
    result = train(job)
    assert result.resumed_from == 8 == result.steps
    assert (state / "history.csv").read_bytes() == (tmp_path / "history.csv").read_bytes()


# Loading weights into a model on the meta device copies nothing, and torch says so.
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_resume_on_a_gpu_keeps_the_rng_state_on_the_cpu(line_data, tmp_path):
    """A run on a GPU resumes as `train` resumes one: weights, optimizer, weight average, RNG.
    The RNG states must come back as CPU byte tensors, the only kind ``torch.set_rng_state``
    takes: read onto the run's device, every resume on CUDA stopped with 'RNG state must be a
    torch.ByteTensor'. The meta device stands in for the GPU this machine lacks."""
    first = train(line_job(line_data, tmp_path, steps=3, ema_decay=0.8))
    path = tmp_path / "resume" / first.run_hash / "last.pt"
    device = torch.device("meta")
    model = build_model("crnn_vgg", 4, **TINY_CRNN).to(device)
    ckpt = train_module._load_resume(path, model)
    assert ckpt is not None
    state = ckpt["resume"]
    with torch.random.fork_rng(devices=[]):
        train_module._set_rng_state(state["rng"], device)
        assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    optimizer = torch.optim.AdamW(train_module.param_groups(model, 1e-4))
    optimizer.load_state_dict(state["optimizer"])
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.8), use_buffers=True)
    ema.load_state_dict(state["ema"])


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    with pytest.raises(ValueError, match=r"unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    env = dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert env.distributed and not env.is_main and env.local_rank == 1
    assert not dist_env({}).distributed


def _fake_gpus(monkeypatch, tmp_path, count: int) -> None:
    """``count`` CUDA devices as far as `resolve_device` can tell, locks under ``tmp_path``."""
    import models.devices as devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"GPU-uuid-{i}")
    )
    monkeypatch.setattr(devices, "GPU_LOCK_DIR", tmp_path)
    monkeypatch.setattr(devices, "_CLAIMED", {})


def test_a_gpu_past_those_there_are_is_named(monkeypatch, tmp_path):
    _fake_gpus(monkeypatch, tmp_path, 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"'cuda:2' asked for, but this machine shows 2 GPU"):
        resolve_device("cuda:2")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    # torchrun --nproc_per_node 3 on two GPUs: two ranks would share one, and NCCL refuses that
    for name in ("auto", "cuda"):
        with pytest.raises(ValueError, match=r"local rank 2 has no GPU.*--nproc_per_node 2"):
            resolve_device(name, local_rank=2)


def test_jobs_side_by_side_claim_gpus_of_their_own(monkeypatch, tmp_path, caplog):
    # Snakemake with --resources gpu=3 runs three training or evaluation jobs at once, each a
    # process outside torchrun: each takes the first GPU no other holds (a lock per GPU UUID).
    _fake_gpus(monkeypatch, tmp_path, 3)
    holder = subprocess.Popen(  # another job, holding GPU 0 until it ends
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'ab'); "
            "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('held', flush=True); "
            "time.sleep(60)",
            str(tmp_path / "synthocr-gpu-GPU-uuid-0.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert resolve_device("auto", claim=True) == torch.device("cuda", 1)
        assert resolve_device("cuda", claim=True) == torch.device("cuda", 1)  # its own, again
        assert resolve_device("cuda:0", claim=True) == torch.device("cuda", 0)  # as asked
        assert resolve_device("auto") == torch.device("cuda", 0)  # without claim: local rank
    finally:
        holder.kill()
        holder.wait()
    # Once that job has ended, its GPU is free to the next one; with every GPU held, GPU 0.
    # (Forgetting this process's claims keeps their locks held, as another process's would be.)
    import models.devices as devices

    assert devices.claim_gpu(3, tmp_path) == 1  # this process's
    claims = []
    for _ in range(3):
        claims.append(devices.claim_gpu(3, tmp_path))
        monkeypatch.setattr(devices, "_CLAIMED", {})
    assert claims == [1, 0, 2]
    with caplog.at_level(logging.WARNING, logger="models.devices"):
        assert devices.claim_gpu(3, tmp_path) == 0
    assert "all 3 GPUs are held" in caplog.text


# ---------------------------------------------------------------- a run


def test_training_writes_its_outputs_and_resumes(line_data, tmp_path):
    out = tmp_path / "exp"
    job = line_job(line_data, out, tensorboard=True)
    result = train(job)
    assert (out / "tb").is_dir()  # the set-up installs the tensorboard extra
    assert result.steps == 8 and result.resumed_from == 0
    model, meta = load_model(out / "model.pt")
    assert meta.model == "crnn_vgg" and meta.charset == list("0123") and meta.step == 8
    assert meta.train["steps"] == 8 and meta.input == LINE
    assert "resume" not in load_checkpoint(out / "model.pt")
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert [bool(r["val_loss"]) for r in rows] == [False, True, False, True]
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    info = json.loads((out / "train.json").read_text())
    for key in ("steps", "wall_s", "params", "device", "final_val_acc", "model", "task"):
        assert key in info, key
    assert info["params"] == sum(p.numel() for p in model.parameters())

    # A rerun with the same spec finds the finished run and does not train again.
    resume_dir = out / "resume" / result.run_hash
    assert (resume_dir / "last.pt").is_file()
    # the schedule reached the optimizer: its last step (7) ran at lr_at(7), not at the first's
    groups = load_checkpoint(resume_dir / "last.pt")["resume"]["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [lr_at(7, job.train)] * 2 != [lr_at(0, job.train)] * 2
    recorded = load_checkpoint(resume_dir / "last.pt")["resume"]["elapsed_s"]
    again = train(job)
    assert again.resumed_from == 8 and again.steps == 8
    assert again.final_val_loss == pytest.approx(result.final_val_loss)
    # the training's time, as its last checkpoint recorded it, the rerun's own start-up not added
    assert again.wall_s == recorded <= result.wall_s
    # Killed between the finished last.pt and its run.json: the rerun puts run.json right
    # (another process count reads it to decide whether the run finished).
    info = json.loads((resume_dir / "run.json").read_text())
    assert info["finished"] and info["step"] == 8
    (resume_dir / "run.json").write_text(json.dumps({**info, "finished": False, "step": 6}))
    assert train(job).resumed_from == 8
    assert json.loads((resume_dir / "run.json").read_text()) == info
    # An edited config starts afresh and removes the stale run's state.
    edited = train(replace(job, train=replace(job.train, lr=0.002)))
    assert edited.resumed_from == 0 and edited.run_hash != result.run_hash
    assert sorted(p.name for p in (out / "resume").iterdir()) == [edited.run_hash]


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_damaged_shard_removes_no_resume_state(line_data, tmp_path, caplog, split):
    """A damaged shard changes the run's key (its bytes are hashed), and the training stops on
    it: the state of the run it interrupted must survive that, so that putting the shard right
    resumes the run instead of starting it again from step 0."""
    root, train_shards, val_shards, charset = line_data
    shards = tmp_path / "shards"
    shards.mkdir()
    copies = {}
    for path in (*train_shards, *val_shards):
        copies[path] = shards / Path(path).name
        copies[path].write_bytes(Path(path).read_bytes())
    local = (root, [str(copies[p]) for p in train_shards], [str(copies[p]) for p in val_shards])
    data = (*local, charset)
    out = tmp_path / "out"
    job = line_job(data, out, steps=7)
    _interrupt(job, at_step=5)  # after the checkpoint at step 3
    (kept,) = (out / "resume").iterdir()
    damaged = Path((data[1] if split == "train" else data[2])[0])
    good = damaged.read_bytes()
    damaged.write_bytes(good[: len(good) // 2])
    with pytest.raises(ShardError, match=re.escape(str(damaged))):
        train(job)
    assert [p.name for p in (out / "resume").iterdir()] == [kept.name]
    assert (kept / "last.pt").is_file() and "removing stale" not in caplog.text
    damaged.write_bytes(good)
    resumed = train(job)
    assert resumed.resumed_from == 3 and resumed.run_hash == kept.name


def test_a_new_run_removes_the_stale_state_at_its_first_checkpoint(line_data, tmp_path):
    job = line_job(line_data, tmp_path, steps=7)
    _interrupt(job, at_step=5)
    (old,) = (tmp_path / "resume").iterdir()
    edited = replace(job, train=replace(job.train, lr=0.002))
    _interrupt(edited, at_step=2)  # stopped before its first checkpoint (step 3): nothing goes
    assert [p.name for p in (tmp_path / "resume").iterdir()] == [old.name]
    _interrupt(edited, at_step=4)  # after it: the old run's state is gone
    (new,) = (tmp_path / "resume").iterdir()
    assert new.name != old.name and (new / "last.pt").is_file()
    assert train(job).resumed_from == 0  # the old config now trains afresh


def test_the_last_step_is_logged_and_validated_when_no_interval_ends_there(line_data, tmp_path):
    result = train(line_job(line_data, tmp_path, steps=7, log_every=2, val_every=4))
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 7]
    assert [int(r["step"]) for r in rows if r["val_loss"]] == [4, 7]
    assert all(r["train_loss"] and r["grad_norm"] for r in rows)  # step 7's own window too
    assert float(rows[-1]["val_loss"]) == pytest.approx(result.final_val_loss, rel=1e-5)
    assert float(rows[-1]["val_acc"]) == pytest.approx(result.final_val_acc, rel=1e-5)
    assert read_meta(tmp_path / "model.pt").step == 7


def test_a_failed_checkpoint_write_keeps_the_last_good_one(line_data, tmp_path, monkeypatch):
    """A full disk while last.pt is written: the one before it stays whole (written to a
    temporary name, then renamed), and a rerun resumes from it."""
    job = line_job(line_data, tmp_path, steps=7)
    real_save = torch.save
    saves = []

    def fails_the_second(obj, f, *args, **kwargs):
        saves.append(obj["meta"]["step"])
        if len(saves) < 2:
            return real_save(obj, f, *args, **kwargs)
        with contextlib.ExitStack() as stack:
            if isinstance(f, str | os.PathLike):
                f = stack.enter_context(open(f, "wb"))
            f.write(b"PK\x03\x04" + bytes(100))  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fails_the_second)
    with pytest.raises(OSError, match="No space left"):
        train(job)
    monkeypatch.setattr(torch, "save", real_save)
    assert saves == [3, 6]
    (state,) = (tmp_path / "resume").iterdir()
    assert load_checkpoint(state / "last.pt")["resume"]["step"] == 3
    assert sorted(p.name for p in state.iterdir()) == ["history.csv", "last.pt", "run.json"]
    assert train(job).resumed_from == 3


def test_a_finished_run_found_again_removes_other_runs_state(line_data, tmp_path):
    """State of another run left beside a run's own (a kill between a first checkpoint and the
    removal of the others): the rerun that finds its run finished, and writes no checkpoint
    again, removes it."""
    job = line_job(line_data, tmp_path, steps=3)
    result = train(job)
    own = tmp_path / "resume" / result.run_hash
    stale = tmp_path / "resume" / "0123456789abcdef"
    shutil.copytree(own, stale)
    info = json.loads((stale / "run.json").read_text())
    other = {**info, "run_hash": stale.name, "one_process_hash": stale.name, "finished": False}
    (stale / "run.json").write_text(json.dumps(other))
    again = train(job)
    assert again.resumed_from == 3 and again.run_hash == result.run_hash
    assert [p.name for p in (tmp_path / "resume").iterdir()] == [own.name]


def test_train_json_says_whether_the_command_line_ran_it(line_data, tmp_path):
    job = line_job(line_data, tmp_path / "cli", steps=2)
    main(["--spec", json.dumps(job.to_dict())])
    train(replace(job, out_dir=str(tmp_path / "rule")))

    def ran_by_command_line(run: str) -> bool:
        return json.loads((tmp_path / run / "train.json").read_text())["command_line"]

    assert (ran_by_command_line("cli"), ran_by_command_line("rule")) == (True, False)


def _interrupt(job: TrainJob, at_step: int) -> None:
    """Run ``job`` and stop it, as a Ctrl-C would, when step ``at_step`` begins: its last
    checkpoint stays for a rerun to resume from."""
    real_lr_at = train_module.lr_at

    def interrupting(step, spec):
        if step == at_step:
            raise KeyboardInterrupt
        return real_lr_at(step, spec)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "lr_at", interrupting)
        with pytest.raises(KeyboardInterrupt):
            train(job)


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows of ``folder``'s logs: each scalar's (step, value) pairs, with what
    a resumed run's ``purge_step`` hides left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _history_scalars(out: Path, tag: str) -> list[tuple[int, float]]:
    rows = csv.DictReader((out / "history.csv").open())
    return [(int(r["step"]), float(r[tag])) for r in rows if r[tag]]


def test_tensorboard_logs_hold_the_whole_run_once(line_data, tmp_path):
    """Interrupted and resumed, a run's TensorBoard logs show each step once (what the first
    part logged after its checkpoint is hidden); a run trained without them, found finished by
    a rerun that asks for them, logs its history."""
    resumed = tmp_path / "resumed"
    job = line_job(line_data, resumed, tensorboard=True)
    _interrupt(job, at_step=5)  # logged step 4 after its checkpoint at step 3
    assert [s for s, _ in _tensorboard_scalars(resumed / "tb")["train_loss"]] == [2, 4]
    train(job)
    shown = _tensorboard_scalars(resumed / "tb")
    for tag in ("train_loss", "val_loss", "lr"):
        steps, values = zip(*_history_scalars(resumed, tag), strict=True)
        assert [s for s, _ in shown[tag]] == list(steps), tag
        assert [v for _, v in shown[tag]] == pytest.approx(values, rel=1e-4), tag

    # A checkpoint on a logged step (4): that step's rows stay, though the resumed run
    # starts after it and does not log them again.
    on_log = tmp_path / "on_log"
    job = line_job(line_data, on_log, tensorboard=True, checkpoint_every=4)
    _interrupt(job, at_step=6)
    train(job)
    shown = _tensorboard_scalars(on_log / "tb")
    for tag in ("train_loss", "val_loss"):
        assert [s for s, _ in shown[tag]] == [s for s, _ in _history_scalars(on_log, tag)], tag
    assert [s for s, _ in shown["val_loss"]] == [4, 8]
    # A finished run rerun with its logs there shows its last step still.
    train(job)
    assert [s for s, _ in _tensorboard_scalars(on_log / "tb")["train_loss"]] == [2, 4, 6, 8]

    later = tmp_path / "later"
    train(line_job(line_data, later))
    assert not (later / "tb").exists()
    again = train(line_job(line_data, later, tensorboard=True))  # not part of the run's key
    assert again.resumed_from == 8
    shown = _tensorboard_scalars(later / "tb")
    assert [s for s, _ in shown["train_loss"]] == [2, 4, 6, 8]
    steps, values = zip(*_history_scalars(later, "val_loss"), strict=True)
    assert [s for s, _ in shown["val_loss"]] == list(steps) == [4, 8]
    assert [v for _, v in shown["val_loss"]] == pytest.approx(values, rel=1e-4)

    # Another run's logs in the folder (another lr, trained with them; then this run without
    # them, found finished by a rerun that asks for them) are replaced by this run's.
    mixed = tmp_path / "mixed"
    train(line_job(line_data, mixed, tensorboard=True, lr=1e-3))
    train(line_job(line_data, mixed, lr=3e-3))
    train(line_job(line_data, mixed, tensorboard=True, lr=3e-3))
    shown = _tensorboard_scalars(mixed / "tb")
    for tag in ("train_loss", "val_loss"):
        steps, values = zip(*_history_scalars(mixed, tag), strict=True)
        assert [s for s, _ in shown[tag]] == list(steps), tag
        assert [v for _, v in shown[tag]] == pytest.approx(values, rel=1e-4), tag


@pytest.mark.parametrize(
    "settings",
    [{}, {"ema_decay": 0.8}, {"align_weight": 1.0, "align_steps": 6}],
    ids=["plain", "weight-average", "alignment-loss"],
)
def test_resume_in_process_gives_identical_weights(line_data, tmp_path, settings):
    full = train(line_job(line_data, tmp_path / "full", steps=7, **settings))
    # The same run, interrupted at step 5 (after the checkpoint at step 3), then rerun.
    _interrupt(line_job(line_data, tmp_path / "part", steps=7, **settings), at_step=5)
    resumed = train(line_job(line_data, tmp_path / "part", steps=7, **settings))
    assert resumed.resumed_from == 3 and resumed.run_hash == full.run_hash
    # The history too: the row at step 4 averages steps 3 (before the kill) and 4 (after it),
    # as log_every 2 does not divide checkpoint_every 3.
    _assert_same_run(tmp_path / "part", tmp_path / "full")


def _assert_same_run(ours: Path, theirs: Path) -> None:
    """Two output folders hold the same weights and the same history, but for its timings."""
    a = torch.load(theirs / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ours / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = {"images_per_s", "elapsed_s"}

    def rows(folder: Path) -> list[dict[str, str]]:
        with open(folder / "history.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]

    assert rows(ours) == rows(theirs)


def test_a_resumed_run_draws_the_dropout_of_an_uninterrupted_one(tmp_path):
    """The global RNG (dropout) is seeded by (seed, rank, step) at each step: a resumed run
    draws what the uninterrupted one drew, whatever the set-up before its first step drew."""
    shards = write_shards(tmp_path, "train", 1, 16, "0123", SQUARE64, length=(1, 1), seed=3)
    charset = tmp_path / "charset.txt"
    charset.write_text("0\n1\n2\n3\n", encoding="utf-8")

    def job(out: str) -> TrainJob:
        return TrainJob(
            experiment="dropout",
            task="hanzi",
            model="hanzi_cnn",
            model_kwargs={"width": 0.125, "dropout": 0.5},
            train=TrainSpec(
                steps=7,
                batch_size=4,
                warmup_steps=2,
                val_every=4,
                val_batches=1,
                checkpoint_every=3,
                log_every=2,
                num_workers=0,
                shuffle_buffer=8,
            ),
            seed=5,
            device="cpu",
            charset=str(charset),
            train_shards=tuple(shards),
            val_shards=tuple(shards),
            out_dir=str(tmp_path / out),
        )

    train(job("full"))
    _interrupt(job("part"), at_step=5)
    assert train(job("part")).resumed_from == 3
    _assert_same_run(tmp_path / "part", tmp_path / "full")


@pytest.mark.parametrize("threads", [1, 2], ids=["same-threads", "other-threads"])
def test_resuming_on_another_cpu_thread_count_warns(line_data, tmp_path, caplog, threads):
    job = line_job(line_data, tmp_path, steps=7)
    assert torch.get_num_threads() == 1  # the session's (conftest), for the interrupted part
    _interrupt(job, at_step=5)
    caplog.clear()
    torch.set_num_threads(threads)
    try:
        resumed = train(job)
    finally:
        torch.set_num_threads(1)
    assert resumed.resumed_from == 3 and resumed.steps == 7
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "models.train" and r.levelno >= logging.WARNING
    ]
    if threads == 1:
        assert warnings == []
    else:
        assert warnings == [
            f"run {resumed.run_hash} started with 1 CPU threads and resumes with 2: its weights "
            "will differ from an uninterrupted run's (CPU kernels sum in another order)"
        ]
    # The checkpoint now records the thread count it was written with.
    last = load_checkpoint(tmp_path / "resume" / resumed.run_hash / "last.pt")
    assert last["resume"]["threads"] == threads


def test_a_finished_run_taken_over_records_the_threads_it_trained_with(line_data, tmp_path, caplog):
    """The train rule (one thread) taking over a run torchrun finished on two threads a rank
    trains nothing: its model.pt and train.json say the run's 2, not the rule's 1, and no
    word of weights that will differ."""
    job = line_job(line_data, tmp_path, steps=3)
    torch.set_num_threads(2)
    try:
        first = train(job)
    finally:
        torch.set_num_threads(1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.train"):
        again = train(job)
    assert again.resumed_from == again.steps == first.steps == 3
    assert json.loads((tmp_path / "train.json").read_text())["train"]["threads"] == 2
    assert read_meta(tmp_path / "model.pt").train["threads"] == 2
    assert "resumes with" not in caplog.text


def test_the_rule_and_the_command_line_record_the_same_run(line_data, tmp_path):
    """The train rule leaves the scheduling settings out of its job (editing them reruns
    nothing) and sets the thread count itself; ``python -m models.train`` passes the config's.
    Both train the same job, so both write the same model.pt and the same settings in
    train.json, and what they record as threads is the count the run used (1), not the rule's
    default (0, every core) nor a scheduling hint (mem_mb, priority) only one of them was given."""
    assert torch.get_num_threads() == 1  # the session's (conftest)
    command_line = line_job(line_data, tmp_path / "cli", threads=1, mem_mb=3000, priority=4)
    rule = line_job(line_data, tmp_path / "rule")  # threads 0, mem_mb and priority defaults
    train(command_line)
    train(rule)
    assert (tmp_path / "cli" / "model.pt").read_bytes() == (
        tmp_path / "rule" / "model.pt"
    ).read_bytes()

    def recorded(run):
        return json.loads((tmp_path / run / "train.json").read_text(encoding="utf-8"))["train"]

    assert recorded("cli") == recorded("rule")
    assert recorded("rule")["threads"] == 1
    assert "mem_mb" not in recorded("rule") and "priority" not in recorded("rule")
    assert load_model(tmp_path / "rule" / "model.pt")[1].train == recorded("rule")


def test_a_run_on_the_first_shards_is_the_run_of_those_shards(line_data, tmp_path):
    """``train.shards: 1`` of two shards trains what a job given only the first shard trains
    (the rule gives its job those shards and no setting): the same key, the same model.pt, the
    same recorded settings, and train.json says how many shards the run read."""
    assert len(line_data[1]) == 2
    first = line_job(line_data, tmp_path / "first", shards=1)
    alone = replace(line_job(line_data, tmp_path / "alone"), train_shards=first.train_shards[:1])
    assert first.read_train_shards == alone.read_train_shards == alone.train_shards
    assert "shards" not in train_job_params(first.train.to_dict())
    key = train(first).run_hash
    assert train(alone).run_hash == key
    assert (tmp_path / "first" / "model.pt").read_bytes() == (
        tmp_path / "alone" / "model.pt"
    ).read_bytes()
    info = {r: json.loads((tmp_path / r / "train.json").read_text()) for r in ("first", "alone")}
    assert info["first"]["train"] == info["alone"]["train"]
    assert "shards" not in info["first"]["train"]
    assert info["first"]["train_shards"] == info["alone"]["train_shards"] == 1
    both = train(line_job(line_data, tmp_path / "both"))  # every shard: another run
    assert both.run_hash != key
    assert json.loads((tmp_path / "both" / "train.json").read_text())["train_shards"] == 2
    with pytest.raises(ValueError, match=r"train\.shards: 3, but the job has 2 training shard"):
        line_job(line_data, tmp_path / "x", shards=3)
    with pytest.raises(ValueError, match=r"train\.shards must be >= 1 \(null = every shard\)"):
        TrainSpec(shards=0)


def test_the_weight_average_is_validated_and_shipped(line_data, tmp_path):
    plain = train(line_job(line_data, tmp_path / "plain"))
    averaged = train(line_job(line_data, tmp_path / "ema", ema_decay=0.5))
    assert averaged.run_hash != plain.run_hash
    # Unset, the setting leaves a run's key as it was before the setting existed.
    assert "ema_decay" not in hashed_settings(line_job(line_data, tmp_path).train)
    last = load_checkpoint(tmp_path / "ema" / "resume" / averaged.run_hash / "last.pt")
    trained = last["state_dict"]
    average = {k.removeprefix("module."): v for k, v in last["resume"]["ema"].items()}
    plain_weights = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)["state_dict"]
    shipped = torch.load(tmp_path / "ema" / "model.pt", weights_only=True)["state_dict"]
    # The average only follows the training: the trained weights are those of the plain run.
    assert all(torch.equal(plain_weights[k], trained[k]) for k in plain_weights)
    # model.pt holds the average, batch-norm statistics included, not the trained weights.
    assert all(torch.equal(shipped[k], average[k]) for k in shipped)
    for name in ("running_mean", "weight"):
        key = next(k for k in shipped if k.endswith(name))
        assert not torch.allclose(shipped[key], trained[key]), key
    # Validation reads the average too.
    assert averaged.final_val_loss != pytest.approx(plain.final_val_loss)
    with pytest.raises(ValueError, match=r"train\.ema_decay must be in \[0, 1\), got 1"):
        TrainSpec(ema_decay=1)


def test_the_weight_average_is_updated_at_every_step(line_data, tmp_path):
    """With a decay near 0 the average is the trained weights of the last step, not the
    initial weights it was made from."""
    result = train(line_job(line_data, tmp_path, steps=4, ema_decay=1e-6))
    trained = load_checkpoint(tmp_path / "resume" / result.run_hash / "last.pt")["state_dict"]
    shipped = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    torch.manual_seed(11)  # line_job's seed: the initial weights
    initial = build_model("crnn_vgg", 5, **TINY_CRNN).state_dict()
    floats = [k for k in shipped if shipped[k].is_floating_point()]
    assert all(torch.allclose(shipped[k], trained[k], rtol=1e-4, atol=1e-6) for k in floats)
    assert not all(torch.allclose(shipped[k], initial[k]) for k in floats)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(line_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = CTCFamily.loss

    def poisoned(self, outputs, targets, widths=None, **kwargs):
        loss = real_loss(self, outputs, targets, widths, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:  # the 5th training step
                return loss * float("nan")
        return loss

    monkeypatch.setattr(CTCFamily, "loss", poisoned)
    out = tmp_path / "nan"
    job = line_job(line_data, out)
    with pytest.raises(NonFiniteLossError, match=r"nan.*step 4.*Last good checkpoint.*step 3"):
        train(job)
    assert not (out / "model.pt").exists()
    key = run_hash(job, list("0123"))
    ckpt = load_checkpoint(out / "resume" / key / "last.pt")
    assert ckpt["resume"]["step"] == 3
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_a_loss_not_finite_at_the_first_step_points_at_the_model(line_data, tmp_path, monkeypatch):
    real_loss = CTCFamily.loss

    def poisoned(self, outputs, targets, widths=None, **kwargs):
        loss = real_loss(self, outputs, targets, widths, **kwargs)
        return loss * float("nan") if torch.is_grad_enabled() else loss

    monkeypatch.setattr(CTCFamily, "loss", poisoned)
    with pytest.raises(
        NonFiniteLossError,
        match=r"at step 0 .*Last good checkpoint: none\. At the first step: the model's forward",
    ):
        train(line_job(line_data, tmp_path))
    assert not (tmp_path / "resume").exists() or not list((tmp_path / "resume").rglob("last.pt"))


def test_each_step_clips_the_gradient_and_adamw_keeps_the_decay_out_of_it(line_data, tmp_path):
    # After one step AdamW's first moment is 0.1 (1 - beta1) x the gradient it stepped with: the
    # clipped one, of norm clip_grad, and without the weight decay, which AdamW applies to the
    # weights apart (Adam's weight_decay would add 0.5 x each weight to it).
    out = tmp_path / "clip"
    job = line_job(
        line_data,
        out,
        steps=1,
        warmup_steps=0,
        val_every=1,
        checkpoint_every=1,
        log_every=1,
        clip_grad=0.01,
        weight_decay=0.5,
    )
    result = train(job)
    [row] = csv.DictReader((out / "history.csv").open())
    assert float(row["grad_norm"]) > 1.0  # the norm before clipping, which the history keeps
    state = load_checkpoint(out / "resume" / result.run_hash / "last.pt")["resume"]["optimizer"]
    first_moment = math.sqrt(
        sum(float(s["exp_avg"].double().square().sum()) for s in state["state"].values())
    )
    assert first_moment == pytest.approx(0.1 * 0.01, rel=1e-4)
    # the decay on weight matrices and kernels, none on biases and norms
    assert [g["weight_decay"] for g in state["param_groups"]] == [0.5, 0.0]


@pytest.mark.parametrize("clip_grad", [0.0, 0.5, 100.0])
def test_clip_gradients_scales_to_clip_grad_and_zero_leaves_them(clip_grad):
    # What training and bench/bench_train.py clip with: clip_grad 0 means no clipping, as the
    # config says, not gradients of norm 0 (clip_grad_norm_'s own reading of a max_norm of 0).
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(4, 3)).square().sum().backward()
    before = [p.grad.clone() for p in layer.parameters()]
    norm = float(clip_gradients(layer, clip_grad))
    assert norm == pytest.approx(math.sqrt(sum(float(g.square().sum()) for g in before)))
    scale = min(1.0, clip_grad / norm) if clip_grad > 0 else 1.0
    assert scale != 0.0
    for p, g in zip(layer.parameters(), before, strict=True):
        assert torch.allclose(p.grad, g * scale, rtol=1e-5)


def test_adamw_decays_every_weight_matrix_and_kernel_and_no_bias_or_norm():
    # A linear layer's or an LSTM's weight matrix (2 dimensions) decays as a conv kernel does.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )
    decay, no_decay = param_groups(model, 0.5)
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "3.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "0.bias",
        "1.bias",
        "1.weight",
        "3.bias",
    ]


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_a_terminal_shows_a_progress_bar_and_a_log_file_none(
    line_data, tmp_path, monkeypatch, terminal
):
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    train(line_job(line_data, tmp_path / "bar", steps=4))
    bar = re.search(r"100%\|.*\| 4/4 \[.*loss=[0-9.]+, lr=[0-9.e+-]+\]", stderr.getvalue())
    assert (bar is not None) == terminal, stderr.getvalue()


def test_outputs_not_finite_in_eval_mode_stop_training_at_the_validation(
    line_data, tmp_path, monkeypatch
):
    # A model whose eval-mode outputs are NaN (batch norm's running statistics) trained on with
    # val_loss nan in its history, and its evaluation read every image as nothing.
    real_forward = CRNN.forward

    def nan_in_eval(self, x):
        out = real_forward(self, x)
        return out if self.training else out * float("nan")

    monkeypatch.setattr(CRNN, "forward", nan_in_eval)
    out = tmp_path / "evalnan"
    job = line_job(line_data, out, steps=8, val_every=4)
    with pytest.raises(NonFiniteLossError, match=r"validation loss nan at step 4: .* eval mode"):
        train(job)
    assert not (out / "model.pt").exists()
    # Decoding such outputs (evaluation, recognition) is an error naming the model too.
    family = make_family("crnn_vgg", list("0123"))
    with pytest.raises(ValueError, match=r"'crnn_vgg' gave outputs that are not finite .* 2 of 2"):
        family.decode(torch.full((8, 2, 5), float("nan")))


# Another value of each `WEIGHT_NEUTRAL` setting than line_job's (log_every 2).
_NEUTRAL_VALUES = {"log_every": 3}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("setting", WEIGHT_NEUTRAL)
def test_a_weight_neutral_setting_changes_the_history_and_not_the_weights(
    line_data, tmp_path, setting
):
    """Seed copies that differ in a `WEIGHT_NEUTRAL` setting are grouped as copies
    (`models.report.seed_table`): the same run with another value of it ends with the same
    weights (its history rows at other steps), where another checkpoint_every, which cuts the
    data stream into other freshly seeded segments, ends with other weights."""
    baseline = line_job(line_data, tmp_path / "baseline")
    other = _NEUTRAL_VALUES[setting]
    assert getattr(baseline.train, setting) != other
    train(baseline)
    train(line_job(line_data, tmp_path / "neutral", **{setting: other}))
    a, b = _weights(tmp_path / "baseline"), _weights(tmp_path / "neutral")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the setting was used: the history's rows are at other steps
    assert _history_scalars(tmp_path / "baseline", "train_loss") != _history_scalars(
        tmp_path / "neutral", "train_loss"
    )
    train(line_job(line_data, tmp_path / "segments", checkpoint_every=4))
    c = _weights(tmp_path / "segments")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping(line_data, tmp_path, monkeypatch):
    losses = iter([1.0, 0.9, 0.95, 0.97, 0.5])
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: (next(losses), 0.0))
    job = line_job(line_data, tmp_path / "early", steps=10, val_every=2, early_stop_patience=2)
    result = train(job)
    # validations at steps 2, 4, 6, 8: best at 4, no gain at 6 and 8 -> stop at 8
    assert result.stopped_early and result.steps == 8 and result.best_step == 4
    assert json.loads((tmp_path / "early" / "train.json").read_text())["stopped_early"]


@pytest.mark.parametrize("was_training", [True, False])
def test_validation_gives_the_mean_over_samples_and_leaves_the_mode_as_it_was(
    line_data, was_training
):
    _, _, val_shards, _ = line_data
    family = make_family("crnn_vgg", list("0123"))
    torch.manual_seed(0)
    model = build_model("crnn_vgg", family.num_classes, **TINY_CRNN)
    model.train(was_training)
    batches = list(eval_batches(val_shards, LINE, 3, family))
    sizes = [len(b.texts) for b in batches]
    assert sum(sizes) == 8 and len(set(sizes)) > 1  # batches of unequal sizes
    loss, acc = validate(model, family, batches, torch.device("cpu"), amp=False)
    assert model.training == was_training
    # the mean over the samples, each batch weighed by its size (not a mean of batch means)
    model.eval()
    with torch.no_grad():
        losses = [
            float(family.loss(model(b.images), family.encode(b.texts), b.widths)) for b in batches
        ]
        reads = [p.text for b in batches for p in family.decode(model(b.images), b.widths)]
    assert loss == pytest.approx(sum(x * n for x, n in zip(losses, sizes, strict=True)) / 8)
    assert loss != pytest.approx(sum(losses) / len(losses))
    texts = [t for b in batches for t in b.texts]
    assert acc == sum(r == t for r, t in zip(reads, texts, strict=True)) / 8


def _validations_by_step(monkeypatch, losses: dict[int, float]) -> None:
    """``validate`` gives ``losses[step]`` at the validation after optimizer step ``step``
    (the step read from the schedule, which each step asks its rate of first)."""
    now = {}
    real_lr_at = train_module.lr_at

    def recording(step, spec):
        now["step"] = step
        return real_lr_at(step, spec)

    monkeypatch.setattr(train_module, "lr_at", recording)
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: (losses[now["step"] + 1], 0.0))


def test_a_validation_loss_equal_to_the_best_is_no_gain(line_data, tmp_path, monkeypatch):
    _validations_by_step(monkeypatch, {2: 1.0, 4: 1.0, 6: 1.0, 8: 1.0, 10: 1.0})
    job = line_job(line_data, tmp_path, steps=10, val_every=2, early_stop_patience=2)
    result = train(job)
    assert result.stopped_early and result.steps == 6 and result.best_step == 2


def test_early_stopping_state_survives_a_resume_and_a_stopped_run_stays_stopped(
    line_data, tmp_path, monkeypatch
):
    # Best at 4, no gain at 6 and 8: stopped at 8 with patience 2, though step 10 would gain.
    _validations_by_step(monkeypatch, {2: 1.0, 4: 0.5, 6: 0.6, 8: 0.7, 10: 0.4, 12: 0.3})
    job = line_job(line_data, tmp_path, steps=12, val_every=2, early_stop_patience=2)
    _interrupt(job, at_step=7)  # after the checkpoint at step 6, one validation without gain
    resumed = train(job)
    assert resumed.resumed_from == 6
    assert (resumed.stopped_early, resumed.steps, resumed.best_step) == (True, 8, 4)
    assert resumed.best_val_loss == 0.5
    # The state at the stop was saved: a rerun finds the run finished and trains no further.
    again = train(job)
    assert (again.resumed_from, again.steps, again.stopped_early) == (8, 8, True)
    assert json.loads((tmp_path / "train.json").read_text())["best_step"] == 4


def test_the_loop_runs_under_bf16_autocast(line_data, tmp_path, monkeypatch):
    # The GPU path (train.amp on CUDA) enters models.devices.autocast around each forward, in
    # training and validation. Here that context is the CPU's bf16 autocast: the loop's losses,
    # gradient norms, validation and checkpoints must cope with bf16 outputs.
    entered = []

    def bf16(device, enabled=True):
        entered.append(device.type)
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)

    monkeypatch.setattr(train_module, "autocast", bf16)
    out = tmp_path / "bf16"
    result = train(line_job(line_data, out))
    assert len(entered) >= 8 + 2  # every training step, and the validation batches
    assert result.steps == 8 and math.isfinite(result.final_val_loss)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    model, _ = load_model(out / "model.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_damaged_resume_state_is_named_and_kept(line_data, tmp_path):
    """A last.pt cut short (a full disk when it was copied, say) stops the rerun naming the
    folder to delete to train afresh; nothing is deleted for the user."""
    job = line_job(line_data, tmp_path / "out", steps=4, checkpoint_every=2)
    last = tmp_path / "out" / "resume" / train(job).run_hash / "last.pt"
    cut = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(cut)
    folder = re.escape(str(last.parent))
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(last))}.*; delete {folder} to "):
        train(job)
    assert last.read_bytes() == cut


def test_label_outside_the_charset_stops_training(line_data, tmp_path):
    bad = write_shards(tmp_path / "bad", "train", 1, 6, "0129", LINE, length=(4, 4), seed=5)
    job = replace(line_job(line_data, tmp_path / "out"), train_shards=tuple(bad))
    with pytest.raises(SampleLabelError, match=r"train-000000\.tar: sample 't_train.*'9'"):
        train(job)
    # refused before any step: no model, no history, no resume state to take for a run
    out = tmp_path / "out"
    assert not (out / "model.pt").exists() and not (out / "history.csv").exists()
    assert not list(out.glob("resume/*/last.pt"))


def test_overfits_a_handful_of_samples(tmp_path):
    shards = write_shards(tmp_path, "train", 1, 8, "0123", SQUARE64, length=(1, 1), seed=3)
    charset = tmp_path / "charset.txt"
    charset.write_text("0\n1\n2\n3\n", encoding="utf-8")
    job = TrainJob(
        experiment="fit",
        task="hanzi",
        model="hanzi_cnn",
        model_kwargs={"width": 0.125, "dropout": 0.0},
        train=TrainSpec(
            steps=100,
            batch_size=8,
            lr=0.002,
            warmup_steps=5,
            val_every=100,
            val_batches=1,
            checkpoint_every=100,
            log_every=10,
            num_workers=0,
            shuffle_buffer=8,
        ),
        seed=1,
        device="cpu",
        charset=str(charset),
        train_shards=tuple(shards),
        val_shards=tuple(shards),
        out_dir=str(tmp_path / "out"),
    )
    result = train(job)
    assert result.final_val_acc >= 0.9


def test_cli_reads_a_config(line_data, tmp_path):
    _, train_shards, val_shards, charset = line_data
    results = tmp_path / "results"
    (results / "shards" / "line").mkdir(parents=True)
    for i, p in enumerate(train_shards):
        os.symlink(p, results / "shards" / "line" / f"train-{i:06d}.tar")
    os.symlink(val_shards[0], results / "shards" / "line" / "val-000000.tar")
    (results / "charsets").mkdir()
    os.symlink(charset, results / "charsets" / "line.txt")
    config = {
        "seed": 3,
        "device": "cpu",
        "tasks": {"line": {"splits": {"train": {"shards": 2}, "val": {"shards": 1}}}},
        "experiments": {
            "tiny": {
                "task": "line",
                "model": "crnn_vgg",
                "model_kwargs": TINY_CRNN,
                "train": {"steps": 2, "batch_size": 4, "val_every": 2, "num_workers": 0},
            }
        },
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    job = job_from_config(config, "tiny", results)
    assert job.train_shards == tuple(
        str(results / f"shards/line/train-{i:06d}.tar") for i in (0, 1)
    )
    with pytest.raises(ValueError, match=r"unknown experiment 'nope'.*tiny"):
        job_from_config(config, "nope", results)
    # The root seed, unless the experiment has one of its own (as the workflow's train job)
    assert job.seed == 3
    own = copy.deepcopy(config)
    own["experiments"]["tiny"]["seed"] = 2
    assert job_from_config({**own, "seed": 5}, "tiny", results).seed == 2
    main(["--config", str(cfg), "--experiment", "tiny", "--results", str(results)])
    assert (results / "models" / "tiny" / "model.pt").is_file()
    # An overlay: the config it extends, with only what it changes
    overlay = tmp_path / "o.yaml"
    overlay.write_text("extends: c.yaml\nexperiments: {tiny: {train: {steps: 3}}}\n")
    main(["--config", str(overlay), "--experiment", "tiny", "--results", str(results)])
    summary = json.loads((results / "models" / "tiny" / "train.json").read_text())
    assert summary["steps"] == 3
    # Several files merge in order, as `snakemake --configfile c.yaml o.yaml last.yaml` does:
    # the job, and so its output hash, is the workflow's.
    last = tmp_path / "last.yaml"
    last.write_text("experiments: {tiny: {train: {steps: 4}}}\n")
    files = [str(cfg), str(overlay), str(last)]
    main(["--config", *files, "--experiment", "tiny", "--results", str(results)])
    summary = json.loads((results / "models" / "tiny" / "train.json").read_text())
    assert summary["steps"] == 4
    main(["--config", str(last), str(overlay), "--experiment", "tiny", "--results", str(results)])
    summary = json.loads((results / "models" / "tiny" / "train.json").read_text())
    assert summary["steps"] == 3  # the overlay, last, wins


def test_cli_names_what_is_missing_before_training(tmp_path, capsys, monkeypatch):
    config = {
        "tasks": {"line": {"splits": {"train": {"shards": 2}, "val": {"shards": 1}}}},
        "experiments": {"tiny": {"task": "line", "model": "crnn_vgg", "train": {"steps": 2}}},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # the default --results folder, results/, holds nothing here
    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"
    for argv, expected in [
        (["--config", str(cfg), "--experiment", "tiny"], "tiny needs results/charsets/line.txt"),
        (["--config", str(cfg), "--experiment", "tiny"], "train-000001.tar and 1 more"),
        # the target before --configfile, which takes every word after it as a config file
        (
            ["--config", str(cfg), "--experiment", "tiny"],
            # outside the repository, with its Snakefile named
            f"snakemake results/shards/line/manifest.tsv --cores all -s {snakefile} "
            f"--configfile {cfg}",
        ),
        (
            ["--config", str(cfg), "--experiment", "tiny", "--results", "x/results"],
            f"--cores all -s {snakefile} --directory x --configfile {cfg}",
        ),
        (["--config", str(cfg), "--experiment", "nope"], "unknown experiment 'nope'"),
        (["--config", "missing.yaml", "--experiment", "tiny"], "missing.yaml"),
        (["--config", str(cfg), "missing.yaml", "--experiment", "tiny"], "missing.yaml"),
        # several config files: the hint names them all, in order
        (
            ["--config", str(cfg), str(cfg), "--experiment", "tiny"],
            f"--cores all -s {snakefile} --configfile {cfg} {cfg}\n",
        ),
        (["--spec", "{not json"], "--spec {not json"),
        (["--spec", "[1, 2]"], "spec: a JSON object of a training job's keys, not a list"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 1
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # nothing written
    # A typo the workflow refuses is refused here too, before anything is trained or written.
    config["experiments"]["tiny"]["modle_kwargs"] = {"width": 0.25}
    config["sead"] = 1
    cfg.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(cfg), "--experiment", "tiny"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "experiments.tiny.modle_kwargs: unknown key (did you mean 'model_kwargs'?)" in err
    assert "sead: unknown key (did you mean 'seed'?)" in err
    assert "invalid config (2 problems):\n  " in err and "\n    " not in err, err  # as the workflow
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(cfg), "--experiment", "tiny", "--threads", "-3"])
    assert exc.value.code == 2 and "--threads" in capsys.readouterr().err
    # The workflow's parse-time checks of an experiment too: a model argument the model does
    # not take, and a CTC output too short for the task's labels (narrow characters: 4 px
    # each give 1 frame each), which would train on zero losses.
    del config["experiments"]["tiny"]["modle_kwargs"], config["sead"]
    for edit, expected in [
        (lambda c: c["experiments"]["tiny"].update(model_kwargs={"widht": 0.25}), "widht"),
        (lambda c: c["tasks"]["line"].update(min_char_width=4), "experiments.tiny"),
    ]:
        edited = copy.deepcopy(config)
        edit(edited)
        cfg.write_text(yaml.safe_dump(edited))
        with pytest.raises(SystemExit) as exc:
            main(["--config", str(cfg), "--experiment", "tiny"])
        assert exc.value.code == 1
        err = capsys.readouterr().err
        assert expected in err and "needs results" not in err, err
    assert not (tmp_path / "results").exists()


def test_cli_threads_0_is_a_thread_per_core_as_in_the_config(tmp_path, monkeypatch):
    """``--threads 0`` means what ``train.threads: 0`` means (torch's default, a thread per core):
    it overrides the config's count rather than falling back to it."""
    results = tmp_path / "results"
    for name in ("charsets/line.txt", "shards/line/train-000000.tar", "shards/line/val-000000.tar"):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).touch()  # the command checks they are there; train() is stubbed
    config = {
        "device": "cpu",
        "experiments": {
            "tiny": {"task": "line", "model": "crnn_vgg", "train": {"steps": 2, "threads": 1}}
        },
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    monkeypatch.setattr(train_module, "train", lambda job, command_line: None)
    argv = ["--config", str(cfg), "--experiment", "tiny", "--results", str(results)]
    main(argv)
    assert set_to == [1]  # the config's
    main([*argv, "--threads", "0"])
    assert set_to == [1]  # torch's default: the config's 1 is not set


# ---------------------------------------------------------------- SIGKILL, then resume


SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _command(spec_file: Path) -> list[str]:
    return [sys.executable, "-m", "models.train", "--spec", f"@{spec_file}", "--threads", "1"]


def _run(spec_file: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        _command(spec_file),
        cwd=REPO,
        env=SUBPROCESS_ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_sigkill_then_rerun_ends_with_the_same_weights(line_data, tmp_path):
    # Enough steps that the run is still training when its first checkpoint (step 4) appears,
    # however fast the machine: the kill comes within a few steps of it, 190 steps from the end.
    steps = 200
    jobs = {}
    for name in ("straight", "killed"):
        job = line_job(line_data, tmp_path / name, steps=steps, checkpoint_every=4, log_every=4)
        jobs[name] = tmp_path / f"{name}.json"
        jobs[name].write_text(json.dumps(job.to_dict()))
    key = run_hash(
        line_job(line_data, tmp_path, steps=steps, checkpoint_every=4, log_every=4), list("0123")
    )

    # The interrupted run: SIGKILL as soon as a checkpoint exists, mid-training.
    ckpt = tmp_path / "killed" / "resume" / key / "last.pt"
    proc = _run(jobs["killed"], tmp_path / "killed-1.log")
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(
            f"the training exited ({proc.returncode}) before it could be killed: "
            f"checkpoint {'present' if ckpt.exists() else 'absent'}\n"
            + (tmp_path / "killed-1.log").read_text()
        )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed-1.log").read_text()
    killed_at = load_checkpoint(ckpt)["resume"]["step"]
    assert 0 < killed_at < steps
    assert not (tmp_path / "killed" / "model.pt").exists()

    # Rerun it to the end, and run an uninterrupted one beside it.
    for name, log in (("killed", "killed-2.log"), ("straight", "straight.log")):
        proc = _run(jobs[name], tmp_path / log)
        assert proc.wait(timeout=300) == 0, (tmp_path / log).read_text()
    assert f"resuming run {key} from step {killed_at}" in (tmp_path / "killed-2.log").read_text()

    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = (tmp_path / "straight" / "history.csv").read_text().splitlines()
    hb = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    loss_col = HISTORY_COLUMNS.index("train_loss")
    assert [r.split(",")[loss_col] for r in ha] == [r.split(",")[loss_col] for r in hb]


# ---------------------------------------------------------------- one training per output folder


def _wait_for_lock(proc: subprocess.Popen, lock: Path, log: Path) -> None:
    """Return once ``proc`` holds ``lock`` (it writes its pid there right after locking)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if lock.is_file() and lock.read_text().split()[:1] == [str(proc.pid)]:
            return
        time.sleep(0.01)
    pytest.fail(f"training {proc.pid} never held {lock}:\n{log.read_text()}")


def test_a_second_training_of_one_output_stops_at_once(line_data, tmp_path):
    out = tmp_path / "exp"
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(line_job(line_data, out, steps=16).to_dict()))
    first = _run(spec, tmp_path / "first.log")
    try:
        _wait_for_lock(first, out / LOCK_FILE, tmp_path / "first.log")
        # Paused while it holds the lock (as by Ctrl-Z, or a starved orphan), the first cannot
        # finish, and release the lock, before the second one has even imported torch.
        # A second one that waited for the lock would so wait forever: the timeout is the only
        # clock here, a generous one, since a busy machine can take long to import torch.
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(
                _command(spec),
                cwd=REPO,
                env=SUBPROCESS_ENV,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the second training waited for the lock: still running after 300 s")
        first.send_signal(signal.SIGCONT)
        assert second.returncode == 1, second.stderr
        assert f"{out} is being trained by another process (pid {first.pid} on " in second.stderr, (
            second.stderr
        )
        assert f"wait for it to finish, or stop it (kill {first.pid}) and rerun" in second.stderr
        assert "Traceback" not in second.stderr
        # it stopped before reading the resume state or the data: the loop's first line is absent
        assert "experiment line_tiny: model" not in second.stderr
        # The first is none the worse: it trains to the end from step 0 and releases the lock.
        assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:  # a failed assertion above must not leave a stopped process
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.wait()
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == 16 and info["resumed_from"] == 0
    assert (out / LOCK_FILE).read_text() == ""
    with output_lock(out) as lock:
        assert lock == out / LOCK_FILE


@pytest.mark.parametrize("name", ["model.pt", "history.csv", "train.json"])
def test_a_folder_where_an_output_goes_is_named_before_training(
    line_data, tmp_path, capsys, monkeypatch, name
):
    """The final write failed after the whole training; the folder is left as it was."""
    import models.train as train_module

    out = tmp_path / "exp"
    (out / name).mkdir(parents=True)
    (out / "resume" / "abc").mkdir(parents=True)
    (out / "resume" / "abc" / "last.pt").write_bytes(b"state")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(line_job(line_data, out).to_dict()))

    def trains(*args, **kwargs):
        raise AssertionError("trained with an output it cannot write")

    monkeypatch.setattr(train_module, "_train", trains)
    with pytest.raises(SystemExit) as e:
        main(["--spec", f"@{spec}"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.endswith(
        f"python -m models.train: error: {out}: {out / name} is a folder, where the file {name} "
        "is written\n"
    ), err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "resume" / "abc" / "last.pt").read_bytes() == b"state"
    # an output folder that is a file, or under one: named too, not a FileExistsError
    out.rename(tmp_path / "kept")
    out.write_text("mine")
    for where, said in [
        (
            out,
            f"{out}: a file, not a folder (model.pt and history.csv and train.json are "
            "written into it)",
        ),
        (out / "sub", f"{out / 'sub'}: cannot be written: {out} is not a folder"),
    ]:
        spec.write_text(json.dumps(line_job(line_data, where).to_dict()))
        with pytest.raises(SystemExit):
            main(["--spec", f"@{spec}"])
        assert capsys.readouterr().err.endswith(f"error: {said}\n")
    assert out.read_text() == "mine"


def test_a_lock_left_by_a_killed_training_does_not_block_the_next(line_data, tmp_path):
    out = tmp_path / "exp"
    job = line_job(line_data, out, steps=16)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job.to_dict()))
    proc = _run(spec, tmp_path / "killed.log")
    try:
        _wait_for_lock(proc, out / LOCK_FILE, tmp_path / "killed.log")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    # The file is left behind, naming the dead process; the kernel dropped its lock.
    assert (out / LOCK_FILE).read_text().split()[0] == str(proc.pid)
    result = train(job)
    assert result.steps == 16 and (out / "model.pt").is_file()
    assert (out / LOCK_FILE).read_text() == ""


def test_a_killed_trainings_dataloader_workers_do_not_keep_its_lock(line_data, tmp_path):
    """A DataLoader worker is forked with the trainer's flock and outlives a SIGKILL of it by
    seconds (it polls for its parent): a retry at once was refused, told to stop a dead pid."""
    out = tmp_path / "exp"
    job = line_job(line_data, out, steps=100_000, num_workers=1, checkpoint_every=2)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job.to_dict()))
    log_file = tmp_path / "killed.log"
    proc = _run(spec, log_file)
    try:
        deadline = time.monotonic() + 120
        while "step 2/" not in log_file.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.05)  # the worker is up once a step is logged
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    finally:
        proc.send_signal(signal.SIGKILL)  # the trainer alone, as the OOM killer kills
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log_file.read_text()
    assert children.stdout.split(), "no DataLoader worker to hold the lock"
    with output_lock(out) as lock:  # at once: no wait for the orphaned worker to go
        assert lock == out / LOCK_FILE


def test_training_refuses_an_output_folder_another_process_holds(line_data, tmp_path):
    out = tmp_path / "exp"
    with output_lock(out) as lock:
        assert lock == out / LOCK_FILE
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(OutputLockedError, match=rf"is being trained.*\(pid {os.getpid()} on "):
            train(line_job(line_data, out))
        # flock: another open of the file conflicts within one process too
        with pytest.raises(OutputLockedError, match=re.escape(str(out))), output_lock(out):
            pass
        # nothing read or written but the refused run's wish (its run key: see below)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, WANTED_FILE]
    assert train(line_job(line_data, out, steps=2)).steps == 2  # released on leaving the block
    assert not (out / WANTED_FILE).exists()  # a run that holds the lock clears it


@pytest.mark.parametrize("same", [False, True])
def test_a_run_refused_for_other_settings_leaves_the_holders_outputs_unwritten(
    line_data, tmp_path, monkeypatch, caplog, same
):
    """A killed Snakemake's orphaned training goes on; the config is edited and the job refused
    while it runs; the orphan then finished and wrote the old settings' model, newer than its
    inputs, and the rerun found nothing to do (the README's "wait for the first, and rerun").
    Now the refused job leaves its run key, and the holder, finishing, writes no output when
    that is not its own: the rerun trains the new settings, and a run of the old ones takes the
    finished run over. A refusal of the same settings changes nothing."""
    out = tmp_path / "exp"
    holder = line_job(line_data, out, steps=4)
    refused = holder if same else line_job(line_data, out, steps=4, lr=holder.train.lr / 2)
    real, asked = train_module._on_main, []

    def on_main(fn, what, env, device):
        if what.startswith("writing") and "resume" in what and not asked:
            asked.append(what)  # mid-run, the holder holding the lock: a job is started
            with pytest.raises(OutputLockedError):
                train(refused)
        return real(fn, what, env, device)

    monkeypatch.setattr(train_module, "_on_main", on_main)
    with caplog.at_level(logging.WARNING, logger="models.train"):
        assert train(holder).steps == 4
    assert asked
    assert (out / "model.pt").exists() == same and (out / "train.json").exists() == same
    if same:
        assert "outputs are not written" not in caplog.text
        return
    assert (
        f"{out}: a training of other settings (or of settings it could not read) was started "
        "and refused while this run went on"
    ) in caplog.text
    monkeypatch.setattr(train_module, "_on_main", real)
    # the old settings again: the finished run, taken over at once (no step trained)
    assert train(holder).resumed_from == 4 and (out / "model.pt").exists()
    assert not (out / WANTED_FILE).exists()
    assert train(refused).resumed_from == 0  # the new ones train
    assert json.loads((out / "train.json").read_text())["train"]["lr"] == refused.train.lr


def test_outputs_are_wanted_elsewhere_unless_the_wish_is_this_runs_or_there_is_none(tmp_path):
    wanted = tmp_path / WANTED_FILE
    assert not train_module._wanted_elsewhere(tmp_path, "abc")  # no training was refused meanwhile
    for wish, elsewhere in (({"run": "abc"}, False), ({"run": "xyz"}, True), ({"run": None}, True)):
        wanted.write_text(json.dumps(wish))
        assert train_module._wanted_elsewhere(tmp_path, "abc") == elsewhere, wish
    for unreadable in ("{not json", "[]"):  # a wish that cannot be read is another run's
        wanted.write_text(unreadable)
        assert train_module._wanted_elsewhere(tmp_path, "abc"), unreadable


def test_under_torchrun_rank_0_alone_locks_and_tells_every_rank(tmp_path, monkeypatch):
    out, cpu = tmp_path / "exp", torch.device("cpu")
    rank0_said, sent, barriers = [0.0], [], []

    def broadcast(values, env, device):  # rank 0's values on every rank, as torch.distributed
        sent.append((env.rank, list(values)))
        return list(values) if env.is_main else rank0_said

    monkeypatch.setattr(train_module, "_broadcast_floats", broadcast)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: barriers.append(1))
    rank0, rank1 = DistEnv(rank=0, world_size=2), DistEnv(rank=1, world_size=2)
    with train_module._writer_lock(out, rank0, cpu):
        # rank 1 of the same run goes on beside rank 0: it never takes the lock itself
        with train_module._writer_lock(out, rank1, cpu):
            pass
        # a second run: its rank 0 is refused, and its rank 1 stops too, on rank 0's word
        refused = rf"\(pid {os.getpid()} on "
        with (
            pytest.raises(OutputLockedError, match=refused),
            train_module._writer_lock(out, rank0, cpu),
        ):
            pass
        rank0_said[0] = 1.0
        told = rf"rank 0 stopped while locking {re.escape(str(out))} .*rank 1 stops with it"
        with (
            pytest.raises(RankStoppedError, match=told),
            train_module._writer_lock(out, rank1, cpu),
        ):
            pass
    assert sent == [(0, [0.0]), (1, [0.0]), (0, [1.0]), (1, [0.0])]
    assert len(barriers) == 2  # each refused rank waits for the other before leaving the group

    # Any failure of rank 0's, not only a held lock: a folder it cannot create stops both ranks.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sent.clear()
    with (
        pytest.raises(train_module.OutputPathError, match="a-file is not a folder"),
        train_module._writer_lock(blocker / "exp", rank0, cpu),
    ):
        pass
    assert sent == [(0, [1.0])]


def test_rank_0_validates_and_every_rank_gets_its_figures_in_one_broadcast(monkeypatch):
    cpu, sent = torch.device("cpu"), []

    def broadcast(values, env, device):
        sent.append((env.rank, list(values)))
        return [0.0, 0.25, 0.5]  # rank 0's: no failure, then its figures

    monkeypatch.setattr(train_module, "_broadcast_floats", broadcast)
    rank0, rank1 = DistEnv(rank=0, world_size=2), DistEnv(rank=1, world_size=2)
    figures = lambda: (0.25, 0.5)  # noqa: E731
    assert train_module._main_floats(figures, 2, "validating", rank0, cpu) == [0.25, 0.5]
    assert train_module._main_floats(lambda: 1 / 0, 2, "validating", rank1, cpu) == [0.25, 0.5]
    assert sent == [(0, [0.0, 0.25, 0.5]), (1, [0.0, 0.0, 0.0])]  # rank 1 never ran fn
    # One process: no broadcast, fn's own figures, its error as raised.
    assert train_module._main_floats(figures, 2, "validating", DistEnv(), cpu) == [0.25, 0.5]
    with pytest.raises(ZeroDivisionError):
        train_module._main_floats(lambda: (1 / 0,), 1, "validating", DistEnv(), cpu)
    assert len(sent) == 2


def test_the_lock_is_skipped_where_flock_is_missing_or_refused(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(train_module, "fcntl", None)  # Windows
    with output_lock(tmp_path / "win") as lock:
        assert lock is None
    assert not (tmp_path / "win").exists()
    assert not caplog.records

    def refused(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    fcntl = pytest.importorskip("fcntl")
    monkeypatch.setattr(
        train_module,
        "fcntl",
        types.SimpleNamespace(flock=refused, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB),
    )
    with output_lock(tmp_path / "nfs") as lock:
        assert lock is None
    assert (
        f"cannot lock {tmp_path / 'nfs' / LOCK_FILE} ({os.strerror(errno.ENOLCK)})" in caplog.text
    )


def test_settings_drift_sees_a_setting_put_back_to_its_default():
    experiment = {"task": "line", "model": "crnn_vgg", "model_kwargs": {}, "train": {"steps": 3}}
    smoothed = TrainSpec(steps=3, label_smoothing=0.1, ema_decay=0.999).to_dict()
    recorded = {**experiment, "seed": 1, "train": smoothed}
    assert settings_drift(recorded, experiment, seed=1) == [
        "train.ema_decay: 0.999 -> 0.0",
        "train.label_smoothing: 0.1 -> 0.0",
    ]
