"""The benchmarks in bench/ run end to end at toy scale, so the figures BENCHMARKS.md quotes
can be measured again: real fonts, real shards, real training steps, real worker processes.
Only that each bench runs and reports well-formed, positive rates is checked here; what the
rates are is BENCHMARKS.md's business (never a timed test)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from models.checkpoint import ModelMeta, save_model
from models.data import read_shard
from models.registry import build_model
from synth.fonts import Face
from synth.shards import ShardSpec, write_shard
from synth.specs import task_spec


def _run_bench(repo_root, script, *args, timeout=600):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_synth_reports_every_measurement(repo_root, tmp_path):
    nowhere = tmp_path / "nonexistent"
    out = _run_bench(
        repo_root, "bench_synth.py", "--n", 8, "--repeats", 1, "--trdg-python", nowhere
    )
    rates = {}
    for line in out.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(("ours ", "line shard", "hanzi shard")):
            rates[name.strip()] = float(value.rstrip("%"))
    for task in ("line", "hanzi"):
        for kind in ("config", "heavy", "heavy, no legibility floors"):
            assert rates[f"ours {task} {kind}"] > 0
        assert rates[f"{task} shard overhead"] > 0
        assert rates[f"{task} shard overhead (webdataset.TarWriter)"] > 0
    assert "8 images each" in out
    # Without trdg's interpreter its rows are left out, and the output says why.
    assert f"trdg skipped: no trdg interpreter at '{nowhere}'" in out
    # A path that is there but does not run (a folder) is skipped as well, saying so.
    out = _run_bench(
        repo_root, "bench_synth.py", "--n", 2, "--repeats", 1, "--trdg-python", tmp_path
    )
    assert f"trdg skipped: '{tmp_path}' does not run (Permission denied)" in out


FAKE_TRDG = """
import os, time
class FakeTextDataGenerator:
    @staticmethod
    def generate(index, text, font, out_dir, size, *args):
        time.sleep(0.02)  # 50 images/s: slower than ours, as trdg is
        with open(os.environ["FAKE_TRDG_LOG"], "a", encoding="utf-8") as f:
            f.write(f"{size} {text}\\n")
"""


@pytest.mark.slow
def test_bench_synth_times_trdg_on_the_same_texts_best_of_the_same_repeats(
    repo_root, tmp_path, monkeypatch
):
    # A stand-in for trdg in its own interpreter's path: the ratio rows come out, and trdg is
    # timed on the same texts as ours, as many times (it was timed once against our best of 3).
    package = tmp_path / "fake" / "trdg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data_generator.py").write_text(FAKE_TRDG)
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.setenv("FAKE_TRDG_LOG", str(log))
    out = _run_bench(
        repo_root, "bench_synth.py", "--n", 6, "--repeats", 2, "--trdg-python", sys.executable
    )
    calls = log.read_text(encoding="utf-8").splitlines()
    lines = [c for c in calls if c.startswith("32 ")]
    hanzi = [c for c in calls if c.startswith("64 ")]
    assert len(lines) == 6 + 2 * 6 and len(hanzi) == 2 * 6  # a warm-up, then 2 timings each
    assert lines[6:12] == lines[12:] == lines[:6]
    assert "best of 2 (ours and trdg's)" in out
    for task in ("line", "hanzi"):
        row = re.search(rf"ratio ours/trdg {task} +config ([0-9.]+)x, heavy ([0-9.]+)x", out)
        assert row is not None and float(row.group(1)) > 0, out
        assert re.search(rf"^trdg {task} +[0-9]+$", out, re.M), out


def test_bench_index_agrees_with_tarfile(repo_root, tmp_path, cjk_font):
    spec = task_spec("expr", {})
    face = Face(str(cjk_font), 0, "WenQuanYi Micro Hei", "Regular", frozenset("0123456789+-*()"))
    shards = []
    for i in range(2):
        shards.append(tmp_path / f"train-{i:06d}.tar")
        write_shard(
            shards[-1], spec, ShardSpec("expr", "train", i, 12, 0), list("0123456789+-*()"), [face]
        )
    out = _run_bench(repo_root, "bench_index.py", *shards, "--rounds", 2)
    assert "2 shards, 24 samples" in out
    rounds = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rounds) == 2
    for line in rounds:
        direct, tarfile_, ratio = (c.strip() for c in line.strip("|").split("|")[1:])
        assert float(direct) > 0 and float(tarfile_) > 0 and ratio.endswith("x")


def test_bench_tesseract_compares_settings_on_the_same_images(repo_root, tmp_path, latin_font):
    if shutil.which("tesseract") is None:
        if os.environ.get("CI"):
            pytest.fail("tesseract is not installed (CI must have it)")
        pytest.skip("tesseract is not installed")
    capitals = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    spec = task_spec("short", {"charset": {"source": "chars", "chars": capitals}})
    face = Face(str(latin_font), 0, "DejaVu Sans", "Book", frozenset(capitals))
    shard = tmp_path / "test_heldout-000000.tar"
    write_shard(shard, spec, ShardSpec("short", "test_heldout", 0, 6, 0), list(capitals), [face])
    charset = tmp_path / "short.txt"
    charset.write_text("\n".join(capitals) + "\n", encoding="utf-8")
    out = _run_bench(
        repo_root,
        "bench_tesseract.py",
        "short",
        shard,
        "--charset",
        charset,
        "--scales",
        1,
        2,
        "--max-samples",
        4,
    )
    assert "short: the first 4 samples of 1 shard(s)" in out
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| 7 |")]
    settings = {(float(r[1]), r[2].strip()) for r in rows}
    assert settings == {(1.0, "charset"), (1.0, "none"), (2.0, "charset"), (2.0, "none")}
    accuracies = [float(r[3]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    for r in rows:
        assert 0.0 <= float(r[3]) <= 1.0 and float(r[4]) >= 0.0 and float(r[5]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_bench_train_pipeline_against_memory(repo_root, tmp_path, workers):
    rows_file = tmp_path / "rows.json"
    _run_bench(
        repo_root,
        "bench_train.py",
        "--config",
        "configs/smoke.yaml",
        "--experiments",
        "expr_crnn",
        "line_crnn_vgg",
        "--threads",
        1,
        "--workers",
        workers,
        "--steps",
        2,
        "--rounds",
        1,
        "--warmup",
        1,
        "--samples",
        24,
        "--shards",
        2,
        "--out",
        tmp_path,
        "--json",
        rows_file,
    )
    rows = json.loads(rows_file.read_text())
    assert [r["experiment"] for r in rows] == ["expr_crnn", "line_crnn_vgg"]
    for row in rows:
        assert row["workers"] == workers and row["batch_size"] == 8
        assert row["pipeline_img_s"] > 0 and row["memory_img_s"] > 0
        assert row["ratio"] == pytest.approx(row["pipeline_img_s"] / row["memory_img_s"], rel=0.05)
        assert row["pixel_ratio"] > 0
    # The shards were rendered under --out, not into the repository.
    assert len(list(tmp_path.glob("shards/smoke/*/train-*.tar"))) == 4


def _bench_train_module(repo_root, monkeypatch):
    """bench/bench_train.py as `python bench/bench_train.py` runs it: its folder on the path."""
    import importlib.util

    monkeypatch.syspath_prepend(str(repo_root / "bench"))
    spec = importlib.util.spec_from_file_location("bench_train", repo_root / "bench/bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_train_steps_as_training_does_with_the_alignment_loss(
    repo_root, tmp_path, monkeypatch
):
    """The line models train with the alignment loss (`train.align_weight`, the default
    config's and the smoke config's): the bench's step took the CTC loss alone, a lighter step
    than training's. Given the experiment's settings it is training's: from the same weights, on
    the same real line batch, it moves them as CTC plus the alignment loss does, not as CTC
    alone."""
    import torch

    from models.configcheck import read_workflow_config
    from models.data import TrainStream, train_loader
    from models.devices import memory_format
    from models.families import make_family
    from models.registry import build_model, input_spec
    from models.specs import TrainSpec
    from models.train import clip_gradients, param_groups

    bench = _bench_train_module(repo_root, monkeypatch)
    config, _ = read_workflow_config([repo_root / "configs" / "smoke.yaml"])
    exp = config["experiments"]["line_crnn_vgg"]
    spec = TrainSpec.from_config(exp["train"])
    assert spec.align_weight > 0
    kwargs = dict(exp.get("model_kwargs") or {})
    paths, charset = bench.make_shards(config, "smoke", "line", 8, 1, tmp_path)
    family = make_family(exp["model"], charset, kwargs)
    stream = TrainStream(
        paths, input_spec(exp["model"], **kwargs), family, batch_size=8, seed=1, steps=1,
        need_centers=True,
    )  # fmt: skip
    cpu = torch.device("cpu")
    [batch] = list(train_loader(stream, 0, cpu))

    def weights_after(step):
        torch.manual_seed(0)
        model = build_model(exp["model"], family.num_classes, **kwargs)
        model = model.to(memory_format=memory_format(cpu)).train()
        optimizer = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=1e-3)
        step(model, optimizer)
        return [p.detach().clone() for p in model.parameters()]

    def by_hand(align: bool):
        def step(model, optimizer):  # models.train's step, as its loop writes it
            images = batch.images.to(cpu, memory_format=memory_format(cpu))
            targets = family.encode(batch.texts)
            outputs = model(images)
            loss = family.loss(outputs, targets, batch.widths, label_smoothing=spec.label_smoothing)
            if align:
                aligned = family.align_loss(outputs, targets, batch.centers, batch.widths)
                loss = loss + spec.align_weight * aligned
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model, spec.clip_grad)
            optimizer.step()

        return step

    benched = weights_after(
        lambda model, optimizer: bench.train_steps(
            model, family, optimizer, [batch], cpu, spec.clip_grad, [0],
            label_smoothing=spec.label_smoothing, align_weight=spec.align_weight, amp=spec.amp,
        )
    )  # fmt: skip
    trained = weights_after(by_hand(align=True))
    assert all(torch.equal(a, b) for a, b in zip(benched, trained, strict=True))
    ctc_alone = weights_after(by_hand(align=False))
    assert not all(torch.equal(a, b) for a, b in zip(benched, ctc_alone, strict=True))


def test_bench_train_refuses_line_shards_training_would_refuse(repo_root, tmp_path, cjk_font):
    """A results folder whose line shards say nowhere where their characters are drawn (made
    before the alignment loss): training with `align_weight` stops on them, naming the sample,
    so the bench does too, rather than time a step that training cannot take."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from synth.shards import Sample, write_samples

    text = "中文识别"
    font = ImageFont.truetype(str(cjk_font), 24)
    image = Image.new("L", (120, 32), 240)
    ImageDraw.Draw(image).text((4, 2), text, font=font, fill=10)
    shards = tmp_path / "results" / "shards" / "line"
    shards.mkdir(parents=True)
    shard = shards / "train-000000.tar"
    write_samples(shard, (Sample(f"{i:06d}", np.asarray(image), {"text": text}) for i in range(8)))
    (tmp_path / "results" / "charsets").mkdir()
    (tmp_path / "results" / "charsets" / "line.txt").write_text("\n".join(text) + "\n")
    status, said = _refused(
        repo_root, "bench_train.py", "--config", repo_root / "configs" / "smoke.yaml",
        "--experiments", "line_crnn_vgg", "--results", tmp_path / "results", "--steps", 1,
        "--rounds", 1, "--warmup", 0,
    )  # fmt: skip
    assert status == 1, said
    assert said.startswith("error: 8 training samples cannot be trained on:\n"), said
    assert f"shard {shard}: sample '000000': has no centers in its .json" in said


@pytest.mark.slow
def test_bench_cpu_layouts_side_by_side(repo_root, tmp_path):
    rows_file = tmp_path / "rows.json"
    out = _run_bench(
        repo_root,
        "bench_cpu.py",
        "--config",
        "configs/smoke.yaml",
        "--experiments",
        "expr_crnn",
        "--cores",
        2,
        "--seconds",
        0.5,
        "--rounds",
        1,
        "--samples",
        24,
        "--out",
        tmp_path,
        "--json",
        rows_file,
    )
    [row] = json.loads(rows_file.read_text())
    layouts = ["one_job_contiguous", "one_job_channels_last", "side_by_side_channels_last"]
    assert all(row[k] > 0 for k in layouts)
    assert row["overall"] == pytest.approx(
        row["side_by_side_channels_last"] / row["one_job_contiguous"], rel=0.05
    )
    assert out.splitlines()[1].split("\t")[1:4] == layouts


@pytest.mark.slow
def test_bench_memory_sets_every_jobs_peak_beside_its_declaration(repo_root, smoke_run):
    """The smoke run's benchmark records (every rule writes one) against the jobs' mem_mb."""
    out = _run_bench(
        repo_root,
        "bench_memory.py",
        "--directory",
        smoke_run,
        "--configfile",
        repo_root / "configs" / "smoke.yaml",
    )
    (count,) = [line for line in out.splitlines() if line.endswith("jobs have a record")]
    have, _, total, *_ = count.split()
    assert int(have) == int(total) > 50, count  # every job of `all` left its record
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith(("| rule", "|---"))
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert {"coverage", "shard", "train", "evaluate", "tesseract", "summary"} <= set(rows)
    for rule, (jobs, wall, pss, rss, mem_mb, ratio) in rows.items():
        assert int(jobs) >= 1 and float(wall) > 0, rule
        assert float(pss) >= 0 and float(rss) >= 0, rule
        if float(wall) >= 2:  # a job under a second is sampled once or twice, near its start
            assert float(pss) <= float(rss) + 1, rule
        assert float(ratio) < 1.0 and int(mem_mb) > 0, rule  # the smoke jobs fit their mem_mb
    assert float(rows["train"][2]) > 50  # a training process holds torch and a model: not ~0


def test_bench_memory_reads_a_run_of_several_config_files_and_says_why_a_dry_run_fails(
    repo_root, tmp_path
):
    """A run made with an overlay (--configfile A B) is sized with the same two files; a dry run
    that fails shows Snakemake's words (on its stdout), a missing file is named."""
    overlay = tmp_path / "steps.yaml"
    overlay.write_text("experiments:\n  hanzi_cnn:\n    train: {steps: 8}\n")
    bench = [sys.executable, str(repo_root / "bench" / "bench_memory.py")]
    smoke = str(repo_root / "configs" / "smoke.yaml")
    proc = subprocess.run(
        [*bench, "all", "--directory", str(tmp_path), "--configfile", smoke, str(overlay)],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )  # fmt: skip
    # the dry run read both files and listed the jobs; none has run here
    assert proc.stderr.strip() == f"error: no benchmark records of these jobs under {tmp_path}"
    overlay.write_text("experiments:\n  hanzi_cnn:\n    train: {stepz: 8}\n")
    proc = subprocess.run(
        [*bench, "--configfile", smoke, str(overlay), "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("error: the dry run failed:\n")
    assert "experiments.hanzi_cnn.train.stepz: unknown key (did you mean 'steps'?)" in proc.stderr
    missing = tmp_path / "nonexistent.yaml"
    proc = subprocess.run(
        [*bench, "--configfile", str(missing)], capture_output=True, text=True, cwd=repo_root
    )
    assert proc.stderr.strip() == f"error: --configfile {missing}: no such file"


@pytest.mark.slow
def test_bench_weight_reads_a_split_drawn_bolder_and_thinner(repo_root, smoke_run, tmp_path):
    """bench_weight on the smoke run's expr model: a shard per stroke weight, the same samples;
    at 0 the workflow's own held-out shard, read as the workflow's evaluation read it."""
    results = smoke_run / "results"
    model = results / "models" / "expr_crnn" / "model.pt"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / "bench_weight.py"), str(model),
         "--config", str(repo_root / "configs" / "smoke.yaml"), "--decoder", "grammar",
         "--amounts", "-0.5", "0", "1", "--tesseract", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=smoke_run, timeout=600,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "weight.json").read_text())
    assert [r["amount"] for r in rows] == [-0.5, 0.0, 1.0]
    workflow_shard = results / "shards" / "expr" / "test_heldout-000000.tar"
    shards = [tmp_path / f"expr-test_heldout-w{a}.tar" for a in ("-0.50", "+0.00", "+1.00")]
    assert shards[1].read_bytes() == workflow_shard.read_bytes()
    workflow = json.loads((results / "eval/expr_crnn/test_heldout/metrics.json").read_text())
    assert {k: rows[1]["model"][k] for k in ("seq_acc", "cer", "value_acc")} == {
        k: workflow[k] for k in ("seq_acc", "cer", "value_acc")
    }
    assert shards[0].read_bytes() != workflow_shard.read_bytes() != shards[2].read_bytes()
    labels = [[json.loads(s["json"])["text"] for s in read_shard(str(shard))] for shard in shards]
    assert labels[0] == labels[1] == labels[2] and len(labels[0]) == rows[0]["n"] == 20
    for row in rows:
        for reader in ("model", "tesseract"):
            assert 0 <= row[reader]["seq_acc"] <= 1 and row[reader]["cer"] >= 0, (row, reader)
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| stroke weight | model | tesseract |"
    assert [line.split(" | ")[0] for line in table[1:]] == ["| -0.50", "| +0.00", "| +1.00"]


@pytest.mark.slow
def test_bench_weight_reads_an_onnx_export_as_its_checkpoint(repo_root, smoke_run, tmp_path):
    """bench_weight on the smoke expr model's float export: at weight 0 it reads the held-out
    shard as the workflow's evaluation of the checkpoint did; a file that is neither a
    checkpoint nor an export is a usage error naming it, not a traceback."""
    from models.export import export_onnx

    results = smoke_run / "results"
    model = export_onnx(results / "models" / "expr_crnn" / "model.pt", tmp_path / "expr.onnx")
    command = [sys.executable, str(repo_root / "bench" / "bench_weight.py")]
    config = ["--config", str(repo_root / "configs" / "smoke.yaml"), "--decoder", "grammar"]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    proc = subprocess.run(
        [*command, str(model), *config, "--amounts", "0", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=smoke_run, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads((tmp_path / "out" / "weight.json").read_text())
    workflow = json.loads((results / "eval/expr_crnn/test_heldout/metrics.json").read_text())
    assert row["n"] == workflow["n"] == 20
    for key in ("seq_acc", "cer", "value_acc"):
        assert row["model"][key] == workflow[key], key
    assert f"{model} (expr_crnn, expr)" in proc.stdout
    bad = tmp_path / "notes.onnx"
    bad.write_text("not a model\n")
    proc = subprocess.run(
        [*command, str(bad), *config, "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, cwd=smoke_run, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and str(bad) in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_device_check_recognize_stage_and_its_summary(repo_root, smoke_run, tmp_path):
    """The device check's recognize stage (bench/device_check/kit.py, which the GPU run calls
    with --device cuda) on the smoke run's expr model and held-out shard, on the CPU: it writes
    the shard's first images as PNG files, reads them with models.recognize, counts the readings
    that match their labels, and the summary reports it."""
    results = smoke_run / "results"
    model = results / "models" / "expr_crnn" / "model.pt"
    shard = results / "shards" / "expr" / "test_heldout-000000.tar"
    work, images = tmp_path / "work", tmp_path / "images"
    (work / "recognize").mkdir(parents=True)
    record_path = work / "recognize" / "expr_crnn.json"
    kit = [sys.executable, str(repo_root / "bench" / "device_check" / "kit.py")]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}

    def run(*args):
        proc = subprocess.run(
            [*map(str, args)], capture_output=True, text=True, cwd=repo_root, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    run(*kit, "recognize", "--model", model, "--shard", shard, "--n", 6, "--dest", images,
        "--device", "cpu", "--json", record_path)  # fmt: skip
    record = json.loads(record_path.read_text())
    assert sorted(p.name for p in images.iterdir()) == [f"{i:04d}.png" for i in range(6)]
    assert record["n"] == 6 and record["ok"] is True
    assert list(record["runs"]) == ["cpu"]  # --device cpu: one run, nothing to compare
    cpu = record["runs"]["cpu"]
    assert cpu["rc"] == 0 and cpu["read"] == 6 and cpu["error"] is None
    # its count of correct readings is that of models.recognize against the shard's labels
    labels = {}
    for i, sample in enumerate(read_shard(str(shard))):
        if i == 6:
            break
        labels[f"{i:04d}.png"] = json.loads(sample["json"])["text"]
    out = run(sys.executable, "-m", "models.recognize", model, images, "--format", "json")
    readings = {os.path.basename(r["path"]): r["text"] for r in map(json.loads, out.splitlines())}
    assert readings.keys() == labels.keys()
    correct = sum(readings[n] == t for n, t in labels.items())
    assert cpu["correct"] == correct
    # the summary reports the stage
    (work / "stages.tsv").write_text("recognize\texpr_crnn\tok\t0\t3.0\n")
    run(*kit, "summarize", "--work", work, "--out", tmp_path, "--device", "cpu")
    summary = (tmp_path / "summary.md").read_text()
    assert f"- expr_crnn: ok; cpu: rc 0, read 6/6, {correct} correct," in summary
    assert json.loads((tmp_path / "summary.json").read_text())["recognize"]["expr_crnn"]["n"] == 6


@pytest.mark.slow
def test_device_check_draws_the_workflows_images_from_cut_down_faces(
    repo_root, smoke_run, tmp_path
):
    """The device check's full-size stages train on shards the device draws itself: kit.py
    fonts cuts each face the workflow drew a task with down to the characters it covers (here,
    before the device), and kit.py render draws the task's shards from them. Every image and
    label equals the workflow's, byte for byte, for every split of both tasks: seen faces and
    held-out ones (AR PL UKai's embedded bitmaps among them), hinted and auto-hinted faces."""
    results = smoke_run / "results"
    config = repo_root / "configs" / "smoke.yaml"
    kit = [sys.executable, str(repo_root / "bench" / "device_check" / "kit.py")]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    fonts, dest = tmp_path / "fonts", tmp_path / "results"

    def run(*args):
        proc = subprocess.run(
            [*kit, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    tasks = ["expr", "short"]
    run("fonts", "--results", results, "--config", config, "--dest", fonts, "--tasks", *tasks)
    table = json.loads((fonts / "faces.json").read_text())
    for task in tasks:
        for role in ("train", "test"):
            rows = table[task][role]
            assert rows, (task, role)
            for row in rows:
                path = fonts / row["file"]
                source = row["source"].rsplit("#", 1)[0]
                # one face, under its file's name, a small part of it
                assert path.name == os.path.basename(source)
                assert 0 < path.stat().st_size < os.path.getsize(source)
    splits = ["train", "val", "test_seen", "test_heldout"]
    out = run("render", "--config", config, "--fonts", fonts / "faces.json", "--charsets",
              results / "charsets", "--tasks", *tasks, "--splits", *splits, "--dest", dest,
              "--workers", 2)  # fmt: skip
    assert "rendered 10 shards, 280 images" in out
    for task in tasks:
        assert (dest / "charsets" / f"{task}.txt").read_bytes() == (
            results / "charsets" / f"{task}.txt"
        ).read_bytes()
        workflow = sorted((results / "shards" / task).glob("*.tar"))
        assert [p.name for p in workflow] == sorted(
            p.name for p in (dest / "shards" / task).glob("*.tar")
        )
        for path in workflow:
            theirs = list(read_shard(str(path)))
            ours = list(read_shard(str(dest / "shards" / task / path.name)))
            assert [s["__key__"] for s in ours] == [s["__key__"] for s in theirs]
            faces = set()
            for a, b in zip(theirs, ours, strict=True):
                assert a["png"] == b["png"], (path.name, a["__key__"])
                meta_a, meta_b = json.loads(a["json"]), json.loads(b["json"])
                faces.add(meta_a["font"])
                # a collection's face is a file of its own: only its index differs
                assert meta_b.pop("face") == 0
                meta_a.pop("face")
                assert meta_a == meta_b, (path.name, a["__key__"])
            if path.name.startswith("test_heldout"):
                assert any("UKai" in f for f in faces), faces


def _summarize_on_cuda(repo_root, work, out):
    """The device check kit's summary of the stages under ``work``, written to ``out``, as on
    a GPU machine."""
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    kit = repo_root / "bench" / "device_check" / "kit.py"
    cmd = [sys.executable, kit, "summarize", "--work", work, "--out", out, "--device", "cuda"]
    proc = subprocess.run([*map(str, cmd)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("seq_acc, met", [(0.9993, "met"), (0.9987, "not met")])
def test_device_check_summary_of_a_full_size_stage(repo_root, tmp_path, seq_acc, met):
    """run.sh's expr stage (gpu.yaml's expr_crnn in full): the summary reads its training and
    its held-out figures, and holds them to the stage config's report.targets (both of them)."""
    work = tmp_path / "work"
    folder = work / "expr" / "models" / "expr_crnn"
    folder.mkdir(parents=True)
    (work / "expr" / "eval").mkdir()
    (work / "stages.tsv").write_text("render\texpr\tok\t0\t31.0\nexpr\ttrain\tok\t0\t450.0\n")
    (folder / "history.csv").write_text(
        "step,train_loss,images_per_s,val_acc\n2000,0.9,5900.0,0.95\n20000,0.01,5930.0,0.999\n"
    )
    info = {"steps": 20000, "train": {"steps": 20000}, "device": "cuda", "images_per_s": 5930.4,
            "wall_s": 431.7}  # fmt: skip
    (folder / "train.json").write_text(json.dumps(info))
    metrics = {"n": 20000, "seq_acc": seq_acc, "value_acc": 0.9995, "cer": 0.0002,
               "train_steps": 20000}  # fmt: skip
    (work / "expr" / "eval" / "metrics.json").write_text(json.dumps(metrics))
    shutil.copy(repo_root / "configs" / "gpu.yaml", work / "expr.yaml")  # its report.targets
    _summarize_on_cuda(repo_root, work, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reader"] == {}  # not run
    expr = summary["expr"]
    assert expr["targets"] == {"value_acc": 0.999, "seq_acc": 0.999}
    assert expr["target_met"] is (met == "met") and expr["steps"] == 20000
    line = (
        f"Expr (gpu.yaml's expr_crnn in full, on the shards the render stage drew): ok, "
        f"20000/20000 steps in 431.7 s, 5930 img/s; held out: seq_acc {seq_acc:.4g}, value_acc "
        f"0.9995, cer 0.0002 on 20000 (model.pt, step 20000); target value_acc >= 0.999, "
        f"seq_acc >= 0.999: {met}"
    )
    assert line in (tmp_path / "summary.md").read_text()


def test_device_check_summary_of_a_training_its_time_limit_stopped(repo_root, tmp_path):
    """A training stopped by the stage's time limit has no history.csv nor train.json: the
    summary reads the history written with its last checkpoint, not the log's lines, which hold
    later steps than the checkpoint (here none at all)."""
    work = tmp_path / "work"
    folder = work / "train" / "models" / "expr_crnn"
    (folder / "resume" / "0123abcd").mkdir(parents=True)
    (work / "stages.tsv").write_text("train\texpr_crnn\ttimeout\t124\t40.0\n")
    (folder / "resume" / "0123abcd" / "history.csv").write_text(
        "step,train_loss,images_per_s,val_acc\n100,2.5,900.0,\n200,0.7,1100.0,0.61\n"
    )
    _summarize_on_cuda(repo_root, work, tmp_path)
    row = json.loads((tmp_path / "summary.json").read_text())["train"]["expr_crnn"]
    assert row["source"] == "resume/0123abcd/history.csv" and not row["finished"], row
    assert (row["steps"], row["first_loss"], row["last_loss"]) == (200, 2.5, 0.7), row
    assert row["images_per_s"] == 1000.0 and row["val_acc"] == 0.61 and row["loss_fell"], row


def test_device_check_summary_reads_the_history_of_the_run_its_log_names(repo_root, tmp_path):
    """A reused folder can hold an older run's resume state, written later than the stopped
    run's last checkpoint: the summary reads the history of the run the training log names."""
    work = tmp_path / "work"
    folder = work / "train" / "models" / "expr_crnn"
    for run, rows in [
        ("0123abcd89abcdef", "100,2.5,900.0,\n200,0.7,1100.0,0.61\n"),
        ("fedc9876543210fe", "50,9.0,10.0,\n"),
    ]:
        (folder / "resume" / run).mkdir(parents=True)
        (folder / "resume" / run / "history.csv").write_text(
            "step,train_loss,images_per_s,val_acc\n" + rows
        )
        time.sleep(0.05)  # the other run's history is the newer file
    (work / "stages.tsv").write_text("train\texpr_crnn\ttimeout\t124\t40.0\n")
    (work / "logs").mkdir()
    (work / "logs" / "train-expr_crnn.log").write_text(
        "INFO models.train: experiment expr_crnn: model expr_crnn on cuda (rank 0/1), "
        "run 0123abcd89abcdef\n"
        "INFO models.train: step 300/20000 loss=0.5\n"
    )
    _summarize_on_cuda(repo_root, work, tmp_path)
    row = json.loads((tmp_path / "summary.json").read_text())["train"]["expr_crnn"]
    assert row["source"] == "resume/0123abcd89abcdef/history.csv", row
    assert (row["steps"], row["first_loss"], row["last_loss"]) == (200, 2.5, 0.7), row


def test_device_check_summary_cut_short_keeps_the_last_whole_one(repo_root, tmp_path):
    """summary.json is what a device check is read by: a write cut short (here by a file-size
    limit, as by a full disk or the budget's kill) leaves the summary written before it whole,
    never a torn one beside it, and no temporary."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    # a summary of some 1200 bytes, over the limit below
    (work / "stages.tsv").write_text(
        "train\thanzi_cnn\tok\t0\t31.0\ntrain\texpr_crnn\ttimeout\t124\t40.0\n"
    )
    earlier = json.dumps({"device": "cuda", "stages": []}) + "\n"
    (out / "summary.json").write_text(earlier)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    kit = repo_root / "bench" / "device_check" / "kit.py"
    cmd = [sys.executable, kit, "summarize", "--work", work, "--out", out, "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [*map(str, cmd)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert proc.returncode != 0 and "File too large" in proc.stderr, proc.stderr[-3000:]
    assert (out / "summary.json").read_text() == earlier
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def _refused(repo_root, script, *args, cwd=None):
    """A bench script run with bad input: its exit status and what it said on stderr, which is
    the script's words, never a traceback."""
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=cwd or repo_root,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, proc.stderr


@pytest.fixture
def typo_config(repo_root, tmp_path):
    """The smoke config with a misspelt key, as an overlay of it."""
    path = tmp_path / "typo.yaml"
    path.write_text(
        f"extends: {repo_root / 'configs' / 'smoke.yaml'}\n"
        "experiments:\n  expr_crnn:\n    train: {stepz: 8}\n"
    )
    return path


@pytest.mark.parametrize(
    "script, option, value",
    [
        ("bench_synth.py", "--n", 0),  # it divided by zero
        ("bench_index.py", "--rounds", 0),
        ("bench_train.py", "--steps", 0),
        ("bench_cpu.py", "--seconds", 0),
        ("bench_recognize.py", "--synthetic", 0),  # it read the default shards instead
        ("bench_tesseract.py", "--psms", 14),
        ("bench_weight.py", "--samples", 0),
    ],
)
def test_bench_counts_out_of_bounds_are_usage_errors_naming_the_option(
    repo_root, tmp_path, script, option, value
):
    positional = {
        "bench_index.py": ["x.tar"],
        "bench_tesseract.py": ["expr", "x.tar"],
        "bench_weight.py": ["model.pt", "--config", "configs/smoke.yaml"],
    }.get(script, [])
    status, said = _refused(repo_root, script, *positional, option, value)
    assert status == 2 and f"error: argument {option}: must be" in said, said


@pytest.mark.parametrize("script", ["bench_train.py", "bench_cpu.py"])
def test_bench_train_and_cpu_check_their_arguments_before_measuring(
    repo_root, tmp_path, typo_config, script
):
    """A misspelt key of --config is the workflow's error (it trained with the default), an
    experiment the config lacks is named (a KeyError), and an output that cannot be written
    stops the run before it measures for minutes; the --json file is left as it was and no
    shard is rendered."""
    rows, out = tmp_path / "rows.json", tmp_path / "out"
    rows.write_text("old\n")
    where = ["--out", out, "--json", rows]
    status, said = _refused(repo_root, script, "--config", typo_config, *where)
    assert status == 1 and said.startswith(f"error: {typo_config}: invalid config (1 problem)")
    assert "experiments.expr_crnn.train.stepz: unknown key (did you mean 'steps'?)" in said
    smoke = repo_root / "configs" / "smoke.yaml"
    status, said = _refused(
        repo_root, script, "--config", smoke, "--experiments", "expr_crnn", "nope", *where
    )
    assert status == 1 and f"error: --experiments nope: no such experiment in {smoke}" in said
    status, said = _refused(repo_root, script, "--config", smoke, "--out", out, "--json", tmp_path)
    assert status == 1 and said.strip() == f"error: --json {tmp_path}: a folder, not a file"
    status, said = _refused(repo_root, script, "--config", smoke, "--out", typo_config)
    assert status == 1 and said.strip() == f"error: --out {typo_config}: a file, not a folder"
    assert rows.read_text() == "old\n" and not out.exists()


def test_bench_train_names_a_results_folder_without_shards_and_an_unknown_device(
    repo_root, tmp_path
):
    smoke = repo_root / "configs" / "smoke.yaml"
    run = ["--config", smoke, "--experiments", "expr_crnn", "--results", tmp_path]
    status, said = _refused(repo_root, "bench_train.py", *run)
    assert status == 1, said
    assert said.strip() == (
        f"error: --results {tmp_path}: no training shards {tmp_path}/shards/expr/train-*.tar"
    )
    status, said = _refused(repo_root, "bench_train.py", "--config", smoke, "--device", "gpu")
    assert status == 1 and said.startswith("error: --device: unknown device 'gpu'"), said


def test_bench_index_names_a_shard_it_cannot_read(repo_root, tmp_path):
    missing, damaged = tmp_path / "missing.tar", tmp_path / "damaged.tar"
    damaged.write_bytes(b"not a tar")
    status, said = _refused(repo_root, "bench_index.py", missing)
    assert status == 1 and said.strip() == f"error: no such shard: {missing}"
    status, said = _refused(repo_root, "bench_index.py", damaged)
    assert status == 1 and said.startswith(f"error: shard {damaged}: unreadable"), said


def test_bench_tesseract_names_a_shard_or_charset_it_cannot_read(repo_root, tmp_path):
    missing, damaged = tmp_path / "missing.tar", tmp_path / "damaged.tar"
    damaged.write_bytes(b"not a tar")
    charset = tmp_path / "charset.txt"
    status, said = _refused(repo_root, "bench_tesseract.py", "expr", missing, "--charset", charset)
    assert status == 1 and said.strip() == f"error: no such shard: {missing}"
    status, said = _refused(repo_root, "bench_tesseract.py", "expr", damaged, "--charset", charset)
    assert status == 1 and said.strip() == f"error: --charset {charset}: No such file or directory"
    charset.write_text("12\n")
    status, said = _refused(repo_root, "bench_tesseract.py", "expr", damaged, "--charset", charset)
    assert status == 1 and said.startswith(f"error: --charset: charset {charset}: lines must")
    if shutil.which("tesseract") is not None:  # the shards are read once Tesseract is found
        status, said = _refused(repo_root, "bench_tesseract.py", "expr", damaged, "--whitelists",
                                "none")  # fmt: skip
        assert status == 1 and said.startswith(f"error: shard {damaged}: not a readable tar")


def test_bench_recognize_checks_its_config_and_json_before_measuring(
    repo_root, tmp_path, typo_config
):
    rows = tmp_path / "rows.json"
    rows.write_text("old\n")
    smoke = repo_root / "configs" / "smoke.yaml"
    run = ["--synthetic", 2, "--json", rows]
    status, said = _refused(repo_root, "bench_recognize.py", "--untrained", "nope",
                            "--config", smoke, *run)  # fmt: skip
    assert status == 1 and f"error: --untrained nope: no such experiment in {smoke}" in said
    status, said = _refused(repo_root, "bench_recognize.py", "--untrained", "expr_crnn",
                            "--config", typo_config, *run)  # fmt: skip
    assert status == 1 and said.startswith(f"error: {typo_config}: invalid config (1 problem)")
    assert "stepz: unknown key" in said
    status, said = _refused(repo_root, "bench_recognize.py", "--synthetic", 2, "--json", tmp_path)
    assert status == 1 and said.strip() == f"error: --json {tmp_path}: a folder, not a file"
    assert rows.read_text() == "old\n"


def test_bench_weight_checks_its_config_and_out_before_rendering(repo_root, tmp_path, typo_config):
    """A misspelt key was a traceback; an --out that is a file was found after the first shard
    was rendered. Nothing is written either way."""
    import torch

    from models.checkpoint import ModelMeta, save_model
    from models.registry import build_model

    charset = list("0123456789+-*()")
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    meta = ModelMeta("expr_crnn", {"width": 0.25}, charset, "expr")
    save_model(model, build_model("expr_crnn", len(charset), width=0.25), meta)
    # the files it reads from the results folder it runs in: there (not read before --out)
    (tmp_path / "results" / "charsets").mkdir(parents=True)
    (tmp_path / "results" / "charsets" / "expr.txt").write_text("\n".join(charset) + "\n")
    (tmp_path / "results" / "fonts" / "expr").mkdir(parents=True)
    (tmp_path / "results" / "fonts" / "expr" / "test.tsv").write_text("")
    out = tmp_path / "out"
    status, said = _refused(repo_root, "bench_weight.py", model, "--config", typo_config,
                            "--out", out, cwd=tmp_path)  # fmt: skip
    assert status == 1 and said.startswith(f"error: {typo_config}: invalid config (1 problem)")
    assert "stepz: unknown key" in said and not out.exists()
    smoke = repo_root / "configs" / "smoke.yaml"
    status, said = _refused(repo_root, "bench_weight.py", model, "--config", smoke,
                            "--out", typo_config, cwd=tmp_path)  # fmt: skip
    assert status == 1 and said.strip() == f"error: --out {typo_config}: a file, not a folder"
    assert not list(tmp_path.glob("*.tar"))


def test_bench_memory_names_a_folder_it_cannot_use_and_a_record_cut_short_or_not_text(
    repo_root, tmp_path
):
    """A --directory that does not exist was made by the dry run (and no record found in it);
    a --configfile that is a folder was 'no such file'; an empty record was a StopIteration, one
    of other bytes than UTF-8 a UnicodeDecodeError."""
    missing = tmp_path / "run"
    status, said = _refused(repo_root, "bench_memory.py", "--directory", missing)
    assert status == 1 and said.strip() == f"error: --directory {missing}: no such folder"
    assert not missing.exists()
    status, said = _refused(repo_root, "bench_memory.py", "--configfile", tmp_path)
    assert (
        status == 1
        and said.strip() == f"error: --configfile {tmp_path}: a folder, not a config file"
    )
    record = tmp_path / "logs" / "charset" / "expr.benchmark.tsv"
    record.parent.mkdir(parents=True)
    record.write_text("")
    status, said = _refused(repo_root, "bench_memory.py", "--directory", tmp_path,
                            "--configfile", repo_root / "configs" / "smoke.yaml")  # fmt: skip
    assert status == 1
    assert said.strip() == f"error: {record}: not a benchmark record (no row under a header)"
    record.write_bytes(b"s\tmax_pss\n\xff\xfe\t12\n")  # not UTF-8: was a traceback
    status, said = _refused(repo_root, "bench_memory.py", "--directory", tmp_path,
                            "--configfile", repo_root / "configs" / "smoke.yaml")  # fmt: skip
    assert status == 1
    assert said.startswith(f"error: {record}: not a benchmark record (") and "utf-8" in said
    assert "Traceback" not in said


def test_bench_synth_names_a_font_it_draws_with_that_is_missing(repo_root, tmp_path, monkeypatch):
    """Its fonts are the Debian packages' (both renderers draw with the same three): one missing
    was a traceback from deep in the renderer, after the charsets were built."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_synth", repo_root / "bench/bench_synth.py")
    bench_synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_synth)
    missing = str(tmp_path / "gone.ttc")
    monkeypatch.setattr(bench_synth, "FONTS", [*bench_synth.FONTS[:1], missing])
    monkeypatch.setattr(sys, "argv", ["bench_synth.py", "--n", "1"])
    with pytest.raises(SystemExit) as e:
        bench_synth.main()
    assert str(e.value) == (
        f"error: {missing}: no such font; the benchmark draws with the Debian fonts the "
        "workflow's setup installs (make system-deps)"
    )


def _run_sh_defaults(repo_root) -> list[tuple[str, str]]:
    """run.sh's default ``--set`` values (``NAME_SET=${NAME_SET:-"..."}``, both the CPU
    rehearsal's and the device's, ``$SMALL`` filled in) and ``--steps`` ones (``STEPS``)."""
    import re

    text = (repo_root / "bench" / "device_check" / "run.sh").read_text(encoding="utf-8")
    small = re.search(r'^\s*SMALL="([^"]*)"', text, re.M).group(1)
    found = re.findall(r'^\s*(\w+_SET|STEPS)=\$\{\1:-"([^"]*)"\}', text, re.M)
    return [(name, value.replace("$SMALL", small)) for name, value in found]


def test_device_check_configs_are_checked_before_the_device_trains(
    repo_root, tmp_path, monkeypatch
):
    """kit.py config wrote whatever --set gave it: a misspelt key or a bad value was found only
    on the device, by the training it stopped. Every default of run.sh makes a valid config of
    gpu.yaml; a typo is named, every problem at once, and nothing is written."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "devcheck_kit", repo_root / "bench" / "device_check" / "kit.py"
    )
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    base = repo_root / "configs" / "gpu.yaml"
    defaults = _run_sh_defaults(repo_root)
    names = {name for name, _ in defaults}
    assert {"STEPS", "TRAIN_SET", "RESUME_SET", "DDP_SET", "READER_SET", "EXPR_SET"} <= names
    for i, (name, value) in enumerate(defaults):
        out = tmp_path / f"{i}.yaml"
        words = value.split()
        args = argparse.Namespace(
            base=str(base),
            out=str(out),
            set=[] if name == "STEPS" else words,
            steps=words if name == "STEPS" else [],
            # the full-size stages set their experiment's block alone (run.sh's full())
            only=kit.FULL_RUNS.get(name.removesuffix("_SET").lower()),
        )
        kit.cmd_config(args)
        config = kit._checked_config(out)
        if name == "STEPS":
            first, steps = words[0].split("=")
            assert config["experiments"][first]["train"]["steps"] == int(steps)
    out = tmp_path / "typo.yaml"
    args = argparse.Namespace(
        base=str(base), out=str(out), set=["stpes=10", "batch_size=0"], steps=[], only=None
    )
    with pytest.raises(SystemExit) as e:
        kit.cmd_config(args)
    said = str(e.value)
    n = 2 * len(config["experiments"])  # both keys of every experiment's train block
    assert said.startswith(f"error: {base} with --set stpes=10 batch_size=0: invalid config ({n} ")
    assert "stpes" in said and "batch_size" in said
    assert not out.exists()
    # the keys the workflow checks past the schema too (configcheck --no-files's): an experiment
    # starting from its own model was found only on the device, by the workflow's start
    own = "results/models/expr_crnn/model.pt"
    args = argparse.Namespace(
        base=str(base), out=str(out), set=[f"init_from={own}"], steps=[], only="expr_crnn"
    )
    with pytest.raises(SystemExit) as e:
        kit.cmd_config(args)
    assert str(e.value) == (
        f"error: {base} with --only expr_crnn --set init_from={own}: invalid config (1 problem):\n"
        f"  experiments.expr_crnn.train.init_from: {own} is this experiment's own model; copy it "
        "elsewhere to start from it"
    )
    assert not out.exists()
    # an --only naming no experiment of the config is refused: its --set would set nothing, and
    # the device would train the base config's settings
    args = argparse.Namespace(base=str(base), out=str(out), set=["steps=10"], steps=[], only="nope")
    with pytest.raises(SystemExit) as e:
        kit.cmd_config(args)
    assert str(e.value) == "error: --only names an unknown experiment 'nope'"
    assert not out.exists()
    # a path naming a variable the device sets (its files are the device's too): the keys alone,
    # as configcheck --no-files checks them, and the copy holds the path as written
    monkeypatch.delenv("SYNTHOCR_DEVICE_MODELS", raising=False)
    theirs = "$SYNTHOCR_DEVICE_MODELS/model.pt"
    args = argparse.Namespace(
        base=str(base), out=str(out), set=[f"init_from={theirs}"], steps=[], only="expr_crnn"
    )
    kit.cmd_config(args)
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert written["experiments"]["expr_crnn"]["train"]["init_from"] == theirs


def test_bench_reader_parity_compares_each_step_of_each_engine(repo_root, tmp_path, cjk_font):
    charset = list("ABCDEFGH")
    face = Face(str(cjk_font), 0, "WenQuanYi Micro Hei", "Regular", frozenset(charset))
    shard = tmp_path / "test_heldout-000000.tar"
    write_shard(
        shard, task_spec("short", {}), ShardSpec("short", "test_heldout", 0, 7, 0), charset, [face]
    )
    torch.manual_seed(0)
    model = build_model("reader", len(charset), width=0.25, hidden=32)
    save_model(
        tmp_path / "model.pt",
        model,
        ModelMeta("reader", {"width": 0.25, "hidden": 32}, charset, "short", step=3),
    )
    out = _run_bench(
        repo_root, "bench_reader_parity.py", tmp_path / "model.pt", shard, "--batch", 3
    )
    assert "reader, step 3; 7 images" in out
    rows = [line for line in out.splitlines() if " vs " in line]
    assert [row.split("|")[1].strip() for row in rows] == [
        "onnx_all vs torch32",
        "onnx_none vs torch32",
        "onnx_all vs onnx_none",
        "torch32 vs torch64",
        "onnx_all vs torch64",
        "onnx_none vs torch64",
    ]
    for row in rows:
        logits, masks, over, texts, confidence = (c.strip() for c in row.strip("|").split("|")[1:])
        # a value per step (max_len 4: five), the first mask all ones in every engine
        assert len(logits.split()) == len(masks.split()) == 5
        assert all(0 <= float(v) < 1e-3 for v in logits.split() + masks.split())
        assert float(masks.split()[0]) == 0
        assert 0 <= int(over) <= 7 and 0 <= int(texts) <= 7 and float(confidence) >= 0


def test_bench_reader_parity_names_a_model_that_is_no_reader(repo_root, tmp_path):
    save_model(
        tmp_path / "model.pt",
        build_model("expr_crnn", 4, width=0.25, hidden=16, dense=16),
        ModelMeta("expr_crnn", {"width": 0.25, "hidden": 16, "dense": 16}, list("0123"), "expr"),
    )
    shard = tmp_path / "test_heldout-000000.tar"
    shard.write_bytes(b"")
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "bench_reader_parity.py"),
            tmp_path / "model.pt",
            shard,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo_root,
    )
    assert proc.returncode == 1
    assert "model 'expr_crnn' is no attention reader" in proc.stderr
