"""Evaluation: real shards and a real checkpoint in, predictions.csv and metrics.json out."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Terminal
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein
from test_images import bomb_png

from models.checkpoint import ModelMeta, save_model
from models.evaluate import (
    EvalSpec,
    Reading,
    Sample,
    backbone_name,
    evaluate,
    iter_samples,
    prediction_rows,
    read_predictions,
    sample_metrics,
    training_record,
    write_metrics,
)
from models.registry import build_model
from models.specs import TrainSpec, recorded_settings
from synth.shards import REBUILD_HINT, write_samples
from synth.shards import Sample as ShardSample
from synth.text import evaluate as evaluate_expression
from synth.text import expression_value

# (model, kwargs, charset, task, image size (w, h), texts)
CASES = {
    "line": (
        "crnn_vgg",
        {"width": 0.125, "hidden": 16},
        list("中国人abc"),
        "line",
        (96, 32),
        ["中国", "人a", "abc", "中", "国人", "c"],
    ),
    "expr": (
        "expr_crnn",
        {"width": 0.25},
        list("0123456789+-*()"),
        "expr",
        (180, 60),
        ["1+2", "(3+4)*5", "9-8", "7*6"],
    ),
    "hanzi": (
        "hanzi_cnn",
        {"width": 0.125},
        list("一二三四五六七"),
        "hanzi",
        (64, 64),
        ["一", "二", "三", "四", "五"],
    ),
    "short": ("reader", {"width": 0.25}, list("0123"), "short", (40, 40), ["01", "3", "2"]),
}
FONTS = ["Font A", "Font B"]


def render(text: str, font: Path, size: tuple[int, int]) -> np.ndarray:
    h = size[1]
    image = Image.new("L", size, 255)
    face = ImageFont.truetype(str(font), max(8, int(h * 0.6)))
    ImageDraw.Draw(image).text((2, h // 8), text, font=face, fill=0)
    return np.asarray(image)


def make_shard(path: Path, task: str, split: str, texts, font: Path, size) -> Path:
    """A real shard in `synth.shards` format; fonts alternate between two names, two faces of
    one file (as a .ttc collection's)."""
    samples = []
    for i, text in enumerate(texts):
        meta = {"text": text, "task": task, "split": split, "font": FONTS[i % 2]}
        meta["font_file"] = "two-faces.ttc"
        if task == "expr":
            meta["value"] = evaluate_expression(text)
        key = f"{task}_{split}_000000_{i:06d}"
        samples.append(ShardSample(key, render(text, font, size), meta))
    write_samples(path, iter(samples))
    return path


def make_checkpoint(path: Path, case: str, steps: int = 6) -> Path:
    name, kwargs, charset, task, _, _ = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, len(charset), **kwargs)
    meta = ModelMeta(name, kwargs, charset, task, train={"steps": steps}, step=steps)
    save_model(path, model, meta)
    return path


def test_iter_samples_streams_in_order_with_limit(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["line"]
    a = make_shard(tmp_path / "a.tar", task, "test_seen", texts[:4], cjk_font, size)
    b = make_shard(tmp_path / "b.tar", task, "test_seen", texts[4:], cjk_font, size)
    got = list(iter_samples([a, b]))
    assert [s.label for s in got] == texts
    assert [s.font for s in got] == [FONTS[i % 2] for i in range(4)] + FONTS
    assert all(s.image.mode == "L" and s.image.size == size for s in got)
    assert [s.label for s in iter_samples([a, b], limit=5)] == texts[:5]


def test_an_image_far_longer_than_its_label_stops_evaluation_naming_the_sample(tmp_path):
    # A 100000 x 1 px member labelled "12", scaled to the model's height (3.2 million px wide):
    # evaluation grew to 24 GB and was killed, naming nothing.
    path = tmp_path / "test_seen-000000.tar"
    thread = np.full((1, 100_000), 255, np.uint8)
    write_samples(path, [ShardSample("000000", thread, {"text": "12", "font": "f"})])
    with pytest.raises(ValueError) as e:
        list(iter_samples([path]))
    assert str(e.value) == (
        f"shard {path}: sample '000000': its image is 100000x1 px, longer than a label of 2 "
        "characters is drawn: more than 240:1 (200:1 and 20:1 per character): a damaged or "
        "foreign image"
    )


@pytest.mark.parametrize(
    ("label", "recorded", "error"),
    [
        ("3/(2-2)", None, r"'3/\(2-2\)': division by zero at position 1"),
        ("3+", None, r"'3\+': expected a number"),
        ("7*6", 41, r"'7\*6' evaluates to 42, its record says 41"),
        ("(" * 400 + "1" + ")" * 400, None, r"'\(+1\)+': parentheses nested more than 100 deep"),
        ("1" * 5000, None, r"'1+': a number of more than 1000 digits"),
        ("*".join(["9" * 900] * 5), None, r"'[9*]+': a value of more than 4000 digits"),
    ],
    ids=["zero", "malformed", "wrong-value", "nested", "long-number", "large-value"],
)
def test_an_expr_label_without_its_value_is_an_error_naming_the_sample(
    tmp_path, cjk_font, label, recorded, error
):
    _, _, _, task, size, _ = CASES["expr"]
    meta = {"text": label, "task": task, "split": "test_seen", "font": "F"}
    if recorded is not None:
        meta["value"] = recorded
    good = {"text": "7/2*2", "task": task, "split": "test_seen", "font": "F", "value": 7}
    path = tmp_path / "bad.tar"
    image = render("1", cjk_font, size)
    write_samples(path, iter([ShardSample("k0", image, good), ShardSample("k1", image, meta)]))
    samples = iter_samples([path], task="expr")
    assert next(samples).value == 7  # a division that comes out whole reads as it is labelled
    with pytest.raises(ValueError, match=rf"shard .*bad\.tar: sample 'k1': label {error}"):
        next(samples)


def _rewrite_member(src: Path, dst: Path, key: str, ext: str, data: bytes) -> Path:
    """A copy of a shard with one member's bytes replaced."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            body = tin.extractfile(member).read()
            if member.name == f"{key}.{ext}":
                body = data
                member.size = len(data)
            tout.addfile(member, io.BytesIO(body))
    return dst


def test_a_damaged_test_shard_is_an_error_naming_the_shard_and_the_sample(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["line"]
    good = make_shard(tmp_path / "good.tar", task, "test_seen", texts[:3], cjk_font, size)
    key = f"{task}_test_seen_000000_000001"
    data = good.read_bytes()
    with tarfile.open(good) as tar:
        boundary = tar.getmembers()[2].offset  # where sample 1's first member begins
    cases = {
        "empty.tar": (b"", r"shard .*empty\.tar: not a readable tar"),
        # cut inside a member the tar is unreadable; cut between two, it lacks its closing blocks
        "cut.tar": (data[: len(data) // 2 + 100], r"shard .*cut\.tar: (not a readable|ends)"),
        "between.tar": (data[:boundary], rf"between\.tar: ends after sample '{key[:-1]}0' without"),
    }
    for name, (body, error) in cases.items():
        (tmp_path / name).write_bytes(body)
        with pytest.raises(ValueError, match=error) as info:
            list(iter_samples([tmp_path / name]))
        assert str(info.value).endswith(REBUILD_HINT)  # the workflow writes it again
    png = _rewrite_member(good, tmp_path / "png.tar", key, "png", b"garbage")
    json_ = _rewrite_member(good, tmp_path / "json.tar", key, "json", b"{oops")
    bomb = _rewrite_member(good, tmp_path / "bomb.tar", key, "png", bomb_png())
    for path, what in ((png, "png"), (json_, "json"), (bomb, "png: .*decompression bomb")):
        with pytest.raises(
            ValueError, match=rf"{path.name}: sample '{key}': cannot decode \.{what}"
        ):
            list(iter_samples([path]))
    # Text that is not UTF-8 is told from text that is not JSON.
    latin = _rewrite_member(good, tmp_path / "latin.tar", key, "json", b'{"text": "\xff"}')
    with pytest.raises(ValueError, match=r"cannot decode \.json: not UTF-8 \(byte 10: b'\\xff'\)"):
        list(iter_samples([latin]))
    with pytest.raises(ValueError, match=r"cannot decode \.json: not valid JSON: Expecting"):
        list(iter_samples([json_]))
    # A sample without one of its members names the one it lacks.
    for ext, other in (("png", "json"), ("json", "png")):
        alone = _drop_member(good, tmp_path / f"no-{ext}.tar", key, ext)
        with pytest.raises(
            ValueError, match=rf"sample '{key}' lacks its \.{ext} member \(it has \.{other}\)$"
        ):
            list(iter_samples([alone]))


@pytest.mark.parametrize(
    ("case", "field", "text", "kind"),
    [
        ("line", "text", b"null", "null"),
        ("line", "text", b"12", r"a number \(12\)"),
        ("expr", "text", b"null", "null"),
        ("line", "font", b'["a"]', r'an array \(\["a"\]\)'),
        ("line", "font", b"null", "null"),
    ],
    ids=["null", "number", "expr-null", "font-array", "font-null"],
)
def test_a_label_or_font_that_is_not_a_string_is_an_error_and_nothing_is_scored(
    tmp_path, cjk_font, case, field, text, kind
):
    """A font that is no string became the per-font figures' key "['a']" or "None"."""
    _, _, _, task, size, texts = CASES[case]
    good = make_shard(tmp_path / "good.tar", task, "test_seen", texts[:3], cjk_font, size)
    key = f"{task}_test_seen_000000_000001"
    with tarfile.open(good) as tar:
        meta = json.loads(tar.extractfile(f"{key}.json").read())
    meta[field] = json.loads(text)
    bad = _rewrite_member(good, tmp_path / "bad.tar", key, "json", json.dumps(meta).encode())
    error = rf"bad\.tar: sample '{key}': '{field}' in its \.json is {kind}, not a string$"
    with pytest.raises(ValueError, match=error):
        list(iter_samples([bad], task=task))
    checkpoint = make_checkpoint(tmp_path / "m" / "model.pt", case)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=error):
        spec = EvalSpec("m", "test_seen", device="cpu")
        evaluate(checkpoint, [bad], out / "metrics.json", out / "predictions.csv", spec)
    assert not (out / "predictions.csv").exists()


def _reorder_members(src: Path, dst: Path, names: list[str]) -> Path:
    """A copy of a shard whose members are ``names`` in this order (a name may come twice)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        members = {m.name: m for m in tin.getmembers()}
        for name in names:
            tout.addfile(members[name], io.BytesIO(tin.extractfile(members[name]).read()))
    return dst


def test_a_duplicate_key_is_an_error_naming_the_shard_and_the_key(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["line"]
    good = make_shard(tmp_path / "good.tar", task, "test_seen", texts[:2], cjk_font, size)
    k0, k1 = (f"{task}_test_seen_000000_{i:06d}" for i in range(2))
    cases = {
        "twice.tar": (
            [f"{k0}.png", f"{k0}.json", f"{k0}.png", f"{k0}.json", f"{k1}.png", f"{k1}.json"],
            rf"twice\.tar: sample '{k0}' has a second \.png member: a duplicate key",
        ),
        "again.tar": (
            [f"{k0}.png", f"{k0}.json", f"{k1}.png", f"{k1}.json", f"{k0}.png", f"{k0}.json"],
            rf"again\.tar: sample '{k0}' appears again \({k0}\.png after sample '{k1}'\)",
        ),
        # a member of an earlier sample, not a sample lacking its .png and .json
        "stray.tar": (
            [f"{k0}.png", f"{k0}.json", f"{k1}.png", f"{k1}.json", f"{k0}.json"],
            rf"stray\.tar: sample '{k0}' appears again \({k0}\.json after sample '{k1}'\)",
        ),
    }
    for name, (names, error) in cases.items():
        path = _reorder_members(good, tmp_path / name, names)
        with pytest.raises(ValueError, match=error) as info:
            list(iter_samples([path]))
        assert str(info.value).endswith(REBUILD_HINT)
    checkpoint = make_checkpoint(tmp_path / "m" / "model.pt", "line")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"twice\.tar: .*a duplicate key"):
        spec = EvalSpec("m", "test_seen", device="cpu")
        evaluate(checkpoint, [tmp_path / "twice.tar"], out / "m.json", out / "p.csv", spec)
    assert not (out / "p.csv").exists()


def _drop_member(src: Path, dst: Path, key: str, ext: str) -> Path:
    """A copy of a shard without one member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            if member.name != f"{key}.{ext}":
                tout.addfile(member, io.BytesIO(tin.extractfile(member).read()))
    return dst


def test_a_model_on_shards_of_another_task_says_so(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["expr"]
    shard = make_shard(tmp_path / "s.tar", task, "test_seen", texts, cjk_font, size)
    hanzi = make_checkpoint(tmp_path / "hanzi" / "model.pt", "hanzi")
    spec = EvalSpec(experiment="hanzi", split="test_seen", device="cpu")
    with pytest.raises(
        ValueError,
        match=r"sample 'expr_test_seen_000000_000000': a hanzi model on expr shards \(the "
        r"sample's JSON says task 'expr'\): label '1\+2' has",
    ):
        evaluate(hanzi, [shard], tmp_path / "m.json", tmp_path / "p.csv", spec)


def test_shards_of_another_task_whose_labels_the_model_reads_draw_a_warning(
    tmp_path, cjk_font, caplog
):
    """A line model's charset holds the expressions' characters: expr shards given to it by
    mistake are read, and said to be another task's, once per shard."""
    _, _, _, _, size, texts = CASES["line"]
    shards = [
        make_shard(tmp_path / f"s{i}.tar", "short", "test_seen", texts, cjk_font, size)
        for i in range(2)
    ]
    line = make_checkpoint(tmp_path / "line" / "model.pt", "line")
    spec = EvalSpec(experiment="line", split="test_seen", device="cpu")
    with caplog.at_level(logging.WARNING, logger="models.evaluate"):
        evaluate(line, shards, tmp_path / "m.json", tmp_path / "p.csv", spec)
    said = [r.getMessage() for r in caplog.records if "shards" in r.getMessage()]
    assert said == [
        f"shard {shard}: a line model on short shards (the sample's JSON says task 'short') "
        "read anyway"
        for shard in shards
    ]
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 2 * len(texts)
    caplog.clear()
    own = make_shard(tmp_path / "own.tar", "line", "test_seen", texts, cjk_font, size)
    with caplog.at_level(logging.WARNING, logger="models.evaluate"):
        evaluate(line, [own], tmp_path / "m2.json", tmp_path / "p2.csv", spec)
    assert not [r for r in caplog.records if "shards" in r.getMessage()]


def test_a_test_label_outside_the_models_charset_is_an_error(tmp_path, cjk_font):
    _, _, charset, task, size, texts = CASES["line"]
    shard = make_shard(tmp_path / "s.tar", task, "test_seen", [texts[0], "aΩ"], cjk_font, size)
    assert len(list(iter_samples([shard]))) == 2  # without a charset (Tesseract) it is read
    with pytest.raises(
        ValueError, match=r"sample '.*_000001': label 'aΩ' has 'Ω' \(U\+03A9\), not in"
    ):
        list(iter_samples([shard], charset=charset))


def test_sample_metrics_overall_and_per_font():
    image = Image.new("L", (4, 4))
    samples = [
        Sample("k0", image, "1+2", "A", 3),
        Sample("k1", image, "3*4", "B", 12),
        Sample("k2", image, "5-1", "A", 4),
    ]
    readings = [Reading("1+2", 0.9), Reading("3*3", 0.5), Reading("5-", 0.2)]
    out = sample_metrics(samples, readings, "expr", with_topk=False)
    assert out["n"] == 3
    assert out["seq_acc"] == pytest.approx(1 / 3)
    assert out["cer"] == pytest.approx(2 / 9)
    assert out["value_acc"] == pytest.approx(1 / 3)
    assert out["per_font"]["A"]["n"] == 2
    assert out["per_font"]["A"]["seq_acc"] == 0.5
    assert out["per_font"]["A"]["cer"] == pytest.approx(1 / 6)
    assert out["per_font"]["B"]["value_acc"] == 0.0


def test_a_rows_value_is_correct_when_its_reading_has_the_labels_value():
    """predictions.csv's value_correct is by value, as value_acc is: another expression with
    the label's value is read right."""
    image = Image.new("L", (4, 4))
    samples = [Sample("k0", image, "(7+5)+4", "A", 16), Sample("k1", image, "3*4", "A", 12)]
    readings = [Reading("4+(5+7)", 0.9), Reading("3*3", 0.5)]
    rows = prediction_rows(samples, readings, "expr")
    assert [(r["correct"], r["reading_value"], r["value_correct"]) for r in rows] == [
        (0, 16, 1),
        (0, 9, 0),
    ]
    assert sample_metrics(samples, readings, "expr", with_topk=False)["value_acc"] == 0.5


def test_per_font_file_figures_only_when_every_sample_names_its_file():
    image = Image.new("L", (4, 4))
    named = [
        Sample("k0", image, "1", "A", meta={"font_file": "a.ttf"}),
        Sample("k1", image, "2", "A", meta={"font_file": "b.ttc"}),
    ]
    readings = [Reading("1", 0.9), Reading("3", 0.5)]
    out = sample_metrics(named, readings, "line", with_topk=False)
    assert {k: v["seq_acc"] for k, v in out["per_font_file"].items()} == {"a.ttf": 1, "b.ttc": 0}
    mixed = [named[0], Sample("k1", image, "2", "A", meta={})]  # an image packed from a file
    assert "per_font_file" not in sample_metrics(mixed, readings, "line", with_topk=False)


def test_backbone_names():
    assert backbone_name(build_model("crnn_vgg", 3, width=0.125, hidden=8)) == "vgg"
    assert backbone_name(build_model("crnn_grcnn", 3, width=0.125, hidden=8)) == "grcnn"
    assert backbone_name(build_model("expr_crnn", 3, width=0.25)) == "expr"


def test_eval_spec_from_config():
    spec = EvalSpec.from_config("x", "test_seen", {"batch_size": 4, "decoder": "beam"}, "cpu")
    assert (spec.batch_size, spec.decoder, spec.device) == (4, "beam", "cpu")
    assert (
        EvalSpec.from_config("x", "test_seen", {"decoder": "grammar"}, "cpu").decoder == "grammar"
    )
    drawn = {"operands": [2, 3], "max_digits": 1}
    spec = EvalSpec.from_config(
        "x", "test_seen", {"decoder": "grammar", "task_settings": drawn}, "cpu"
    )
    assert spec.task_settings == drawn
    with pytest.raises(ValueError) as exc:
        EvalSpec.from_config("x", "test_seen", {"decoder": "viterbi"}, "cpu")
    assert str(exc.value) == (
        "experiments.x.eval.decoder: 'viterbi' is not one of greedy, beam, grammar"
    )
    with pytest.raises(ValueError, match="unknown keys"):
        EvalSpec.from_config("x", "test_seen", {"batchsize": 4}, "cpu")


_SCORES = ("seq_acc", "cer", "ned", "top1", "top5", "value_acc")


def _scores_from_predictions(rows, task):
    """The scores of predictions.csv rows, from their label, reading (and top_k) columns alone:
    exact-match share, edit distances over the labels' total length (cer) and, per reading,
    over the longer of reading and label (ned); top-1/top-5 for the classifier, the share of
    readings that evaluate to the label's value for expr."""
    n = len(rows)
    labels = [r["label"] for r in rows]
    readings = [r["reading"] for r in rows]
    pairs = list(zip(readings, labels, strict=True))
    out = {
        "n": n,
        "seq_acc": sum(a == b for a, b in pairs) / n,
        "cer": sum(Levenshtein.distance(a, b) for a, b in pairs) / sum(map(len, labels)),
        "ned": sum(Levenshtein.distance(a, b) / max(len(a), len(b), 1) for a, b in pairs) / n,
    }
    if task == "hanzi":
        candidates = [[text for text, _ in json.loads(r["top_k"])] for r in rows]
        for k in (1, 5):
            out[f"top{k}"] = sum(b in c[:k] for c, b in zip(candidates, labels, strict=True)) / n
    if task == "expr":
        hits = [
            expression_value(a) is not None and expression_value(a) == evaluate_expression(b)
            for a, b in pairs
        ]
        out["value_acc"] = sum(hits) / n
    return out


def test_the_training_record_names_the_settings_that_tell_two_runs_apart():
    """Two experiments of one model and kwargs that differ in their learning rate alone: the
    record of each names its own (the report tables' ``train_settings``), and leaves out what
    has a column of its own (steps, init_from), what schedules a job (threads), what the
    schedule does not read (decay_fraction under cosine) and a setting this release lacks."""
    spec = TrainSpec(steps=6, lr=0.002, threads=1, decay_fraction=0.5, init_from="a.pt")
    train = {**recorded_settings(spec, threads=1), "from_a_later_release": 1}
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line", train=train, step=6)
    assert training_record(meta)["train_settings"] == {"lr": 0.002}
    wsd = recorded_settings(TrainSpec(schedule="wsd", decay_fraction=0.5), threads=0)
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line", train=wsd)
    assert training_record(meta)["train_settings"] == {"decay_fraction": 0.5, "schedule": "wsd"}
    defaults = ModelMeta("crnn_vgg", {}, list("ab"), "line", train=TrainSpec().to_dict())
    assert training_record(defaults)["train_settings"] == {}
    # a checkpoint without its settings (an export's metadata) says nothing rather than "none"
    assert training_record(ModelMeta("crnn_vgg", {}, list("ab"), "line"))["train_settings"] is None


def test_the_training_record_gives_the_steps_configured_beside_those_run(tmp_path):
    """A run that early stopping ended before its budget: ``budget_steps`` is the checkpoint's
    recorded ``train.steps`` (what seed copies of one configuration share), ``train_steps``
    the steps it ran (its ``train.json``'s, else the checkpoint's)."""
    spec = TrainSpec(steps=6, early_stop_patience=1, val_every=2)
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line", train=recorded_settings(spec, 1), step=4)
    assert (training_record(meta)["budget_steps"], training_record(meta)["train_steps"]) == (6, 4)
    info = tmp_path / "train.json"
    info.write_text(json.dumps({"steps": 4, "stopped_early": True, "seed": 7}))
    record = training_record(meta, info)
    assert (record["budget_steps"], record["train_steps"]) == (6, 4)
    assert "steps" not in record["train_settings"]  # a column of its own
    assert training_record(ModelMeta("crnn_vgg", {}, list("ab"), "line"))["budget_steps"] is None


def test_the_training_record_gives_the_training_shards_the_run_read(tmp_path):
    """The settings leave ``train.shards`` out (the rule gives the job its shards): the record's
    ``train_shards`` is the count the run's ``train.json`` holds, what tells apart the runs of a
    data-scaling study; None without the file, or from a run that predates the count."""
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line", train=recorded_settings(TrainSpec(), 1))
    records = {}
    for n in (4, 16):
        info = tmp_path / f"train-{n}.json"
        info.write_text(json.dumps({"steps": 6, "seed": 7, "train_shards": n}))
        records[n] = training_record(meta, info)
    assert [records[n]["train_shards"] for n in (4, 16)] == [4, 16]
    # all else the two runs record alike: the shard count alone tells them apart
    assert {k: v for k, v in records[4].items() if k != "train_shards"} == {
        k: v for k, v in records[16].items() if k != "train_shards"
    }
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"steps": 6, "seed": 7}))
    assert training_record(meta, older)["train_shards"] is None
    assert training_record(meta)["train_shards"] is None


@pytest.mark.parametrize(
    ("case", "decoder"),
    [
        *((case, "greedy") for case in sorted(CASES)),
        ("line", "beam"),
        ("expr", "beam"),
        ("short", "beam"),
        ("expr", "grammar"),
    ],
)
def test_evaluate_writes_metrics_and_predictions(tmp_path, cjk_font, case, decoder):
    name, _, _, task, size, texts = CASES[case]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "model.pt", case)
    train_info = tmp_path / "train.json"
    train_info.write_text(
        json.dumps({"steps": 6, "wall_s": 12.5, "device": "cpu", "seed": 7, "train_shards": 3})
    )
    spec = EvalSpec(f"{case}_exp", "test_seen", batch_size=2, decoder=decoder, device="cpu")
    out = tmp_path / "eval"
    record = evaluate(
        ckpt, [shard], out / "metrics.json", out / "predictions.csv", spec, train_info=train_info
    )

    assert json.loads((out / "metrics.json").read_text()) == record
    assert record["experiment"] == f"{case}_exp"
    assert record["model"] == name and record["task"] == task and record["split"] == "test_seen"
    assert record["n"] == len(texts)
    assert record["device"] == "cpu"
    assert record["decoder"] == (decoder if task in ("expr", "line", "short") else "greedy")
    assert record["eval_img_per_s"] > 0
    assert record["train_steps"] == record["budget_steps"] == 6
    assert record["train_wall_s"] == 12.5
    assert record["seed"] == 7  # the run's training seed: what tells seed copies apart
    assert record["train_shards"] == 3  # the shards it read: what tells data-scaling runs apart
    assert record["params_m"] > 0
    assert ("value_acc" in record) == (task == "expr")
    assert ("top1" in record and "top5" in record) == (task == "hanzi")

    rows = read_predictions(out / "predictions.csv")
    # Every score of metrics.json recomputed from the readings predictions.csv holds, by the
    # README's definitions: overall, per font, and per font file (both faces, one file).
    scores = {k: v for k, v in record.items() if k in ("n", *_SCORES)}
    assert scores == pytest.approx(_scores_from_predictions(rows, task), rel=1e-12)
    assert record["per_font"] == {
        font: pytest.approx(
            _scores_from_predictions([r for r in rows if r["font"] == font], task), rel=1e-12
        )
        for font in FONTS
    }
    assert record["per_font_file"] == {"two-faces.ttc": pytest.approx(scores, rel=1e-12)}
    assert [r["label"] for r in rows] == texts  # streamed in order
    assert [int(r["index"]) for r in rows] == list(range(len(texts)))
    for r in rows:
        assert 0.0 <= float(r["confidence"]) <= 1.0
        assert r["correct"] == str(int(r["reading"] == r["label"]))
        assert int(r["edit_distance"]) == Levenshtein.distance(r["reading"], r["label"])
        top_k = json.loads(r["top_k"])
        assert top_k and top_k[0][0] == r["reading"]
        # the best reading's probability is its confidence, to the same six digits (not 0.0)
        assert top_k[0][1] == pytest.approx(float(r["confidence"]), rel=1e-5, abs=0)
        if task == "hanzi":
            assert len(top_k) == 5
    if task == "expr":
        assert [int(r["value"]) for r in rows] == [3, 35, 1, 42]


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_evaluation_counts_its_images_in_a_bar_on_a_terminal_only(
    tmp_path, cjk_font, monkeypatch, terminal
):
    _, _, _, task, size, texts = CASES["line"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    spec = EvalSpec("line_exp", "test_seen", batch_size=2, device="cpu")
    ckpt = make_checkpoint(tmp_path / "model.pt", "line")
    evaluate(ckpt, [shard], tmp_path / "m.json", tmp_path / "p.csv", spec)
    bar = re.search(rf"line_exp test_seen: {len(texts)} images \[", stderr.getvalue())
    assert (bar is not None) == terminal, stderr.getvalue()


def test_cli_evaluates_a_checkpoint_on_any_shards_of_its_task(tmp_path, cjk_font, capsys):
    from models.evaluate import main

    _, _, _, task, size, texts = CASES["expr"]
    shard = make_shard(tmp_path / "mine-000000.tar", task, "mine", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "expr_tiny" / "model.pt", "expr")
    out = tmp_path / "eval"
    assert main([str(ckpt), str(shard), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["experiment"] == "expr_tiny" and metrics["split"] == "mine"
    assert metrics["n"] == len(texts) == len(read_predictions(out / "predictions.csv"))
    assert printed.startswith(f"n={len(texts)} seq_acc=") and "value_acc=" in printed
    assert main([str(ckpt), str(tmp_path / "nope.tar"), "--out", str(out)]) == 1
    assert "no such shard" in capsys.readouterr().err
    # One shard given twice, however spelt (its samples were read and counted twice)
    link = tmp_path / "links" / "link.tar"
    link.parent.mkdir()
    os.symlink(shard, link)
    for again, said in [
        (shard, f"{shard} is given twice"),
        (f"{tmp_path}/./{shard.name}", f"{tmp_path}/./{shard.name} is the same file as {shard}"),
        (link, f"{link} is the same file as {shard}"),
    ]:
        assert main([str(ckpt), str(shard), str(again), "--out", str(tmp_path / "twice")]) == 1
        err = capsys.readouterr().err
        assert err == f"error: {said}: give each shard once (its samples would be counted twice)\n"
    assert not (tmp_path / "twice").exists()
    # A folder is said to be one, with the glob of its shards.
    assert main([str(ckpt), str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder: shards are .tar files; give its shards, e.g. " in err
    assert f"{tmp_path / 'mine-*.tar'}" in err
    # A file of another kind (an image, labels) is said not to be a shard: no advice to delete
    # it; a .tar that does not read keeps the damaged shard's words.
    image = tmp_path / "scan.png"
    Image.new("L", (40, 20), 255).save(image)
    assert main([str(ckpt), str(image), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{image}: not a shard (a .tar file of samples" in err and "delete" not in err, err
    assert image.is_file()
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(image.read_bytes())
    assert main([str(ckpt), str(damaged), "--out", str(out)]) == 1
    assert f"shard {damaged}: not a readable tar" in capsys.readouterr().err
    # --out that cannot be made: named before any work
    assert main([str(ckpt), str(shard), "--out", str(image / "eval")]) == 1
    assert f"--out {image / 'eval'}: cannot be written: {image} is not a folder" in (
        capsys.readouterr().err
    )
    # nor is a folder made for a run that stops on its checkpoint
    missing = tmp_path / "gone.pt"
    assert main([str(missing), str(shard), "--out", str(tmp_path / "new" / "eval")]) == 1
    assert str(missing) in capsys.readouterr().err and not (tmp_path / "new").exists()
    # --out a file: named, not a FileExistsError traceback; the file is left as it was.
    (tmp_path / "afile").write_text("mine")
    assert main([str(ckpt), str(shard), "--out", str(tmp_path / "afile")]) == 1
    assert f"--out {tmp_path / 'afile'}: a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"
    # An output that cannot be written (a folder where predictions.csv goes): one line naming
    # it, before any work; a folder where metrics.json goes had predictions.csv replaced first,
    # and the pair no longer matched.
    for name, other in (("predictions.csv", "metrics.json"), ("metrics.json", "predictions.csv")):
        blocked = tmp_path / f"blocked-{name}"
        (blocked / name).mkdir(parents=True)
        (blocked / other).write_text("old")
        assert main([str(ckpt), str(shard), "--out", str(blocked), "--threads", "1"]) == 1
        err = capsys.readouterr().err
        said = f"--out {blocked}: {blocked / name} is a folder, where the file {name} is written"
        assert err == f"error: {said}\n", err
        assert (blocked / other).read_text() == "old"


def test_cli_evaluates_an_onnx_export_float_or_int8_as_its_checkpoint(tmp_path, cjk_font, capsys):
    from models.evaluate import main
    from models.export import export_onnx
    from models.quantize import quantize_onnx

    _, _, _, task, size, texts = CASES["expr"]
    shard = make_shard(tmp_path / "mine-000000.tar", task, "mine", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "expr_tiny" / "model.pt", "expr")
    plain = export_onnx(ckpt, tmp_path / "expr_tiny.onnx")
    int8 = tmp_path / "expr_int8.onnx"
    quantize_onnx(plain, int8, [shard])
    runs = {}
    for name, path in [("pt", ckpt), ("onnx", plain), ("int8", int8)]:
        out = tmp_path / f"eval-{name}"
        args = [str(path), str(shard), "--out", str(out), "--threads", "1"]
        assert main([*args, "--decoder", "grammar"]) == 0, capsys.readouterr().err
        runs[name] = (
            json.loads((out / "metrics.json").read_text()),
            read_predictions(out / "predictions.csv"),
        )
    (pt, pt_rows), (fl, fl_rows), (q, _) = runs["pt"], runs["onnx"], runs["int8"]
    # the float export reads as its checkpoint does; the record says what read it
    assert [r["reading"] for r in fl_rows] == [r["reading"] for r in pt_rows]
    assert fl["seq_acc"] == pt["seq_acc"] and fl["n"] == pt["n"] == len(texts)
    assert "engine" not in pt and fl["engine"] == q["engine"] == "onnxruntime"
    assert fl["experiment"] == "expr_tiny" and q["experiment"] == "expr_int8"
    assert fl["params_m"] == pt["params_m"] and fl["backbone"] == pt["backbone"] == "expr"
    assert fl["device"] == "cpu" and fl["train_steps"] == pt["train_steps"] == 6
    assert "quantization" not in fl and q["quantization"]["ops"] == ["Conv"]
    # --task-config reads the export's task from its metadata, as a checkpoint's
    config = tmp_path / "mine.yaml"
    config.write_text("tasks:\n  expr: {operands: [2, 3], max_digits: 2, baidu_fraction: 0}\n")
    out = tmp_path / "eval-config"
    args = [str(int8), str(shard), "--out", str(out), "--threads", "1", "--decoder", "grammar"]
    assert main([*args, "--task-config", str(config)]) == 0
    assert json.loads((out / "metrics.json").read_text())["grammar"]["max_digits"] == 2
    capsys.readouterr()
    # onnxruntime runs on the CPU: another device is refused, naming the file
    assert main([str(int8), str(shard), "--out", str(tmp_path / "x"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "expr_int8.onnx: an .onnx file runs on the CPU (onnxruntime), not on device" in err
    assert "'cuda'" in err
    # a file that is no export is named, in one line
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    assert main([str(tmp_path / "bad.onnx"), str(shard), "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.onnx: not a readable ONNX file" in err
    assert "Traceback" not in err
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert main([str(tmp_path / "empty.onnx"), str(shard), "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'empty.onnx'}: empty file (0 bytes): not an ONNX model\n"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[]", "holds a JSON list, not an evaluation's record"),
        ('{"experiment": "e", "split": "test_seen"}', "lacks task (as text)"),
        ('{"experiment": 3, "task": "expr"}', "lacks experiment, split (as text)"),
    ],
)
def test_a_metrics_file_that_is_no_evaluations_record_is_named(tmp_path, text, said):
    from models.evaluate import read_metrics
    from models.report import build_table

    path = tmp_path / "metrics.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"metrics file {path} {re.escape(said)}"):
        read_metrics(path)
    with pytest.raises(ValueError, match=rf"metrics file {path}"):
        build_table("crnn", [path], tmp_path / "table.csv")


def test_cli_holds_grammar_readings_to_a_configs_expressions(tmp_path, cjk_font, capsys):
    from models.evaluate import main
    from synth.text import DrawnExpressionGrammar, grammar_accepts

    _, _, _, task, size, texts = CASES["expr"]
    shard = make_shard(tmp_path / "mine-000000.tar", task, "mine", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "expr_tiny" / "model.pt", "expr")
    config = tmp_path / "mine.yaml"
    config.write_text("tasks:\n  expr: {operands: [2, 3], max_digits: 2, baidu_fraction: 0}\n")
    out = tmp_path / "eval"
    args = [str(ckpt), str(shard), "--out", str(out), "--threads", "1", "--decoder", "grammar"]
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["grammar"] == "evaluates"
    assert main([*args, "--task-config", str(config)]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["grammar"] == {"operand_counts": [2, 3], "max_digits": 2, "operators": "+-*"}
    drawn = DrawnExpressionGrammar({"operands": [2, 3], "max_digits": 2, "baidu_fraction": 0})
    for row in read_predictions(out / "predictions.csv"):
        # an untrained model's readings, all texts the settings draw
        assert grammar_accepts(drawn, row["reading"]), row["reading"]
    with pytest.raises(SystemExit) as exc:  # a usage error, argparse's status 2
        main([str(ckpt), str(shard), "--out", str(out), "--task-config", str(config)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.endswith(
        ": error: --task-config holds the grammar decoder's readings: add --decoder grammar\n"
    )
    config.write_text("tasks:\n  line: {height: 32}\n")
    assert main([*args, "--task-config", str(config)]) == 1
    assert f"{config}: no tasks.expr settings" in capsys.readouterr().err
    # Checked against the workflow's schema, as the workflow and models.train do
    config.write_text("tasks: {expr: {max_digitz: 1}}\n")
    assert main([*args, "--task-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: {config}: invalid config (1 problem):" in err
    assert "tasks.expr.max_digitz: unknown key (did you mean 'max_digits'?)" in err


def test_a_label_with_a_space_the_charset_lacks_points_at_charset_space():
    from models.evaluate import label_problem
    from models.families import LabelError, make_family

    assert label_problem("ab", list("abc")) is None
    assert label_problem("a x", list("abc")) == (
        "label 'a x' has ' ' (U+0020), 'x' (U+0078), not in the charset (a charset holds the "
        "space only when its task asks for it: tasks.line.charset.space)"
    )
    assert label_problem("ax", list("abc")) == "label 'ax' has 'x' (U+0078), not in the charset"
    with pytest.raises(
        LabelError, match=r"only when its task asks for it: tasks\.line\.charset\.space\)"
    ):
        make_family("crnn_vgg", list("abc")).encode(["a b"])
    assert make_family("crnn_vgg", [*"abc", " "]).encode(["a b"]).indices.tolist() == [1, 4, 2]


def test_metrics_of_a_model_under_a_name_of_other_bytes_than_utf8_are_written(tmp_path):
    """A model folder named with bytes that are not UTF-8 (Linux allows any) gives the record a
    name Python holds as surrogates: writing metrics.json failed, after the whole evaluation,
    with a message naming nothing. JSON's escape keeps the name, and it reads back as it was."""
    name = os.fsdecode(b"m\xff")
    path = tmp_path / "metrics.json"
    write_metrics(path, {"experiment": name, "split": "test_seen", "seq_acc": 0.5})
    record = json.loads(path.read_bytes().decode("utf-8"))
    assert os.fsencode(record["experiment"]) == b"m\xff"
    assert record["seq_acc"] == 0.5
    write_metrics(path, {"experiment": "算式", "seq_acc": 1.0})  # readable names stay readable
    assert '"experiment": "算式"' in path.read_text(encoding="utf-8")


def test_undefined_figures_are_written_as_null_not_nan(tmp_path):
    # JSON has no NaN: a strict reader (a browser, jq) refuses the whole file
    path = tmp_path / "metrics.json"
    nan = float("nan")
    write_metrics(
        path,
        {
            "experiment": "x",
            "task": "line",
            "split": "s",
            "cer": nan,
            "per_font": {"A": {"ned": nan}},
        },
    )
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert record["cer"] is None and record["per_font"]["A"]["ned"] is None


def test_a_grammar_fallback_prefix_is_given_no_value_in_rows_or_metrics():
    """The grammar decoder's fallback, the best prefix its grammar rejects, is scored as no
    value even where its text evaluates (``12`` for ``3*4``): in predictions.csv as in
    value_acc. The same text read grammatically has its value."""
    image = Image.new("L", (4, 4))
    samples = [Sample("k0", image, "3*4", "A", 12)]
    for grammatical, value in [(False, ""), (True, 12)]:
        readings = [Reading("12", 0.3, [("12", 0.3)], grammatical=grammatical)]
        (row,) = prediction_rows(samples, readings, "expr")
        assert (row["reading_value"], row["value_correct"]) == (value, int(grammatical))
        scores = sample_metrics(samples, readings, "expr", with_topk=False)
        assert scores["value_acc"] == scores["per_font"]["A"]["value_acc"] == int(grammatical)


def test_a_reading_off_by_a_space_is_not_correct_in_its_row_as_in_seq_acc():
    image = Image.new("L", (4, 4))
    samples = [Sample("k0", image, "ab c", "A"), Sample("k1", image, "abc", "A")]
    readings = [Reading("ab c ", 0.9), Reading("abc", 0.9)]
    rows = prediction_rows(samples, readings, "line")
    assert [(r["correct"], r["edit_distance"]) for r in rows] == [(0, 1), (1, 0)]
    assert sample_metrics(samples, readings, "line", with_topk=False)["seq_acc"] == 0.5


def test_a_reading_without_alternatives_is_its_own_top1_and_top5():
    """Tesseract reads one character per image, with no candidates: its reading is its only
    candidate, not none (which scored every right reading a miss in top1)."""
    image = Image.new("L", (4, 4))
    samples = [Sample("k0", image, "一", "A"), Sample("k1", image, "三", "A")]
    readings = [Reading("一", 0.9, []), Reading("二", 0.5, [])]
    scores = sample_metrics(samples, readings, "hanzi", with_topk=True)
    assert scores["top1"] == scores["top5"] == scores["seq_acc"] == 0.5


def test_a_limit_of_zero_reads_no_sample(tmp_path, cjk_font):
    _, _, _, task, size, texts = CASES["line"]
    shard = make_shard(tmp_path / "s.tar", task, "test_seen", texts, cjk_font, size)
    assert list(iter_samples([shard], limit=0)) == []
    assert len(list(iter_samples([shard], limit=1))) == 1


def test_a_classifier_is_recorded_as_read_greedily_whatever_the_decoder(tmp_path, cjk_font):
    """The hanzi classifier's reading is an argmax over its classes: a ``beam`` asked of it is
    recorded as what it did, ``greedy``, so its rows compare with the other decoders'."""
    _, _, _, task, size, texts = CASES["hanzi"]
    shard = make_shard(tmp_path / "test_heldout-000000.tar", task, "x", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "model.pt", "hanzi")
    out = tmp_path / "eval"
    spec = EvalSpec("hanzi_exp", "test_heldout", batch_size=2, decoder="beam", device="cpu")
    record = evaluate(ckpt, [shard], out / "metrics.json", out / "predictions.csv", spec)
    assert record["decoder"] == "greedy" and record["split"] == "test_heldout"


def test_throughput_leaves_out_the_warm_up_call(tmp_path, cjk_font, monkeypatch):
    """``eval_img_per_s`` times the readings alone: the first call, which pays for kernel
    selection and allocator growth, is made untimed (``eval_wall_s`` holds it)."""
    import time

    import models.predict

    real = models.predict.predict
    calls = []

    def slow_first(*args, **kwargs):
        if not calls:
            time.sleep(1.0)
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(models.predict, "predict", slow_first)
    _, _, _, task, size, texts = CASES["hanzi"]
    shard = make_shard(tmp_path / "test_seen-000000.tar", task, "test_seen", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "model.pt", "hanzi")
    out = tmp_path / "eval"
    spec = EvalSpec("hanzi_exp", "test_seen", batch_size=2, device="cpu")
    record = evaluate(ckpt, [shard], out / "metrics.json", out / "predictions.csv", spec)
    assert len(calls) == 2 and record["eval_wall_s"] >= 1.0
    assert record["eval_img_per_s"] > len(texts) / 1.0


def test_cli_names_the_split_after_the_first_shard_less_its_number(tmp_path, cjk_font):
    from models.evaluate import main

    _, _, _, task, size, texts = CASES["expr"]
    shard = make_shard(tmp_path / "my-fonts-000000.tar", task, "x", texts, cjk_font, size)
    ckpt = make_checkpoint(tmp_path / "expr_tiny" / "model.pt", "expr")
    out = tmp_path / "eval"
    assert main([str(ckpt), str(shard), "--out", str(out), "--threads", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["split"] == "my-fonts"


def test_shards_without_a_sample_are_an_error_naming_the_split(tmp_path):
    empty = tmp_path / "test_heldout-000000.tar"
    with tarfile.open(empty, "w"):
        pass
    ckpt = make_checkpoint(tmp_path / "model.pt", "hanzi")
    out = tmp_path / "eval"
    spec = EvalSpec("hanzi_exp", "test_heldout", device="cpu")
    with pytest.raises(ValueError, match=rf"no samples in the shards of test_heldout: {empty}$"):
        evaluate(ckpt, [empty], out / "metrics.json", out / "predictions.csv", spec)
    assert not out.exists()
