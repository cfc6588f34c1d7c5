"""Recognition of users' images: the command line (a real subprocess) and `load_recognizer`."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import Terminal
from PIL import Image, ImageDraw, ImageFont
from test_images import cut_short_tiff, damaged_tiff

from models.checkpoint import ModelMeta, save_model
from models.cli import INTERRUPTED
from models.families import Prediction, make_family
from models.images import ImageLoadError, trim_to_ink
from models.preprocess import prepare_image, to_tensor_batch
from models.recognize import (
    EXIT_SOME_FAILED,
    SmallImageWarning,
    TallLineWarning,
    format_json,
    format_tsv,
    load_recognizer,
    main,
    tsv_field,
    tsv_unescape,
)
from models.registry import build_model
from synth.text import evaluate

CASES = {
    "line": ("crnn_vgg", {"width": 0.125, "hidden": 16}, "line", "中文识别字体一二三0123"),
    "hanzi": ("hanzi_cnn", {"width": 0.125}, "hanzi", "一二三四五六七八九十"),
    "expr": ("expr_crnn", {"width": 0.25, "hidden": 16, "dense": 16}, "expr", "0123456789+-*()"),
    "short": ("reader", {"width": 0.25}, "short", "ABCD"),
}


class Payload:
    """A custom class: pickling it puts a code reference into the file."""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """task -> an untrained tiny checkpoint of that task (plumbing, not accuracy)."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for task, (name, kwargs, task_name, chars) in CASES.items():
        torch.manual_seed(0)
        model = build_model(name, len(chars), **kwargs)
        path = folder / f"{task}.pt"
        save_model(path, model, ModelMeta(name, kwargs, list(chars), task_name))
        out[task] = path
    return out


def _line(font_path, text="中文识别 123", width=220) -> Image.Image:
    font = ImageFont.truetype(str(font_path), 26)
    im = Image.new("L", (width, 40), 240)
    ImageDraw.Draw(im).text((6, 4), text, font=font, fill=10)
    return im


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, cjk_font):
    """Good images of several modes in nested folders, and bad ones beside them."""
    root = tmp_path_factory.mktemp("images")
    line = _line(cjk_font)
    (root / "sub" / "deeper").mkdir(parents=True)
    line.save(root / "a_gray.png")
    line.convert("RGBA").save(root / "sub" / "b_rgba.png")
    Image.eval(line, lambda v: 255 - v).save(root / "sub" / "c_negative.png")
    line.convert("RGB").save(root / "sub" / "deeper" / "d_photo.jpg", quality=90)
    (root / "e_empty.png").write_bytes(b"")
    good_png = (root / "a_gray.png").read_bytes()
    (root / "f_truncated.png").write_bytes(good_png[: len(good_png) // 3])
    (root / "readme.txt").write_text("not an image, and not walked\n", encoding="utf-8")
    return root


GOOD = ["a_gray.png", "sub/b_rgba.png", "sub/c_negative.png", "sub/deeper/d_photo.jpg"]
BAD = ["e_empty.png", "f_truncated.png"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.recognize", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reads_folders_and_reports_bad_files(checkpoints, image_folder, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n", encoding="utf-8")
    too_long = tmp_path / ("a" * 300 + ".png")  # past the file system's 255 bytes a name
    proc = _cli(
        str(checkpoints["line"]),
        str(image_folder),
        str(text_file),
        str(too_long),
        "--batch-size",
        "2",
        "--threads",
        "1",
    )
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    # good images in sorted walk order, each path, text, confidence
    assert [r[0] for r in rows] == [str(image_folder / g) for g in GOOD]
    for row in rows:
        assert len(row) == 3
        assert 0.0 <= float(row[2]) <= 1.0
    # the four images hold the same line, so the polarity fix makes the negative read the same
    assert rows[2][1:] == rows[0][1:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    for bad, reason in zip(BAD, ("empty file", "corrupt image"), strict=True):
        assert any(str(image_folder / bad) in e and reason in e for e in errors), errors
    assert any(str(text_file) in e and "not an image" in e for e in errors)
    assert any(str(too_long) in e and "file name too long" in e for e in errors)
    assert "4 of 8 images could not be read" in proc.stderr


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_readings_to_a_file_count_the_images_in_a_bar_on_a_terminal(
    checkpoints, image_folder, monkeypatch, terminal
):
    # the error lines stay whole lines above the bar; the readings (a file here) never hold it
    stderr = Terminal() if terminal else io.StringIO()
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main([str(checkpoints["line"]), str(image_folder), "--threads", "1"]) == 2
    err = stderr.getvalue()
    assert (re.search(r"100%\|.*\| 6/6 \[", err) is not None) == terminal, err
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 2, err
    assert "%|" not in stdout.getvalue() and len(stdout.getvalue().splitlines()) == 4


def test_warning_lines_print_whole_above_the_bar(checkpoints, tmp_path, monkeypatch):
    # A warning printed while the bar showed ended the bar's line ("| 1/2 [...]warning: ..."),
    # and the bar's copy stayed above the next one.
    tiny = tmp_path / "tiny.png"
    Image.new("L", (5, 5), 255).save(tiny)
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert main([str(checkpoints["short"]), str(tiny), str(tiny), "--threads", "1"]) == 0
    lines = re.split(r"[\r\n]+", stderr.getvalue())
    assert sum(line.startswith(f"warning: {tiny}: 5x5 px") for line in lines) == 2, lines
    assert re.search(r"100%\|.*\| 2/2 \[", stderr.getvalue())


def test_cli_polarity_overrides_the_guess(checkpoints, image_folder, capsys):
    """README: white text on a dark background is inverted first; ``--polarity dark-on-light``
    or ``light-on-dark`` overrides the guess (dark-on-light reads the pixels as they are)."""
    positive, negative = (str(image_folder / name) for name in ("a_gray.png", "sub/c_negative.png"))

    def read(path: str, *options: str) -> list[str]:
        assert main([str(checkpoints["line"]), path, "--threads", "1", *options]) == 0
        out, err = capsys.readouterr()
        [line] = out.splitlines()
        assert err == ""
        return line.split("\t")[1:]  # text, confidence

    upright = read(positive)
    # the negative, guessed light-on-dark or said to be, is inverted: it reads as the positive
    assert read(negative) == read(negative, "--polarity", "light-on-dark") == upright
    # said dark-on-light, it is read as it is: as the positive inverted by the flag reads
    as_is = read(negative, "--polarity", "dark-on-light")
    assert as_is == read(positive, "--polarity", "light-on-dark")
    assert as_is != upright
    # and the positive, said dark-on-light, as the guess reads it
    assert read(positive, "--polarity", "dark-on-light") == upright


def test_cli_refuses_untrusted_checkpoint_in_one_line(tmp_path, image_folder):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "synthocr-checkpoint", "version": 1, "x": Payload()}, evil)
    proc = _cli(str(evil), str(image_folder / "a_gray.png"))
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: checkpoint ") and str(evil) in lines[0]
    assert "pickled code" in lines[0]


def test_cli_json_with_top_k_for_hanzi(checkpoints, image_folder, capsys):
    paths = [str(image_folder / "a_gray.png"), str(image_folder / "e_empty.png")]
    status = main([str(checkpoints["hanzi"]), *paths, "--format", "json", "--top-k", "4"])
    assert status == EXIT_SOME_FAILED
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == paths
    good, bad = records
    assert len(good["top_k"]) == 4
    probs = [p for _, p in good["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert good["top_k"][0] == [good["text"], good["confidence"]]
    assert {t for t, _ in good["top_k"]} <= set(CASES["hanzi"][3])
    assert "value" not in good
    assert set(bad) == {"path", "error"} and bad["error"] == "empty file"


def test_cli_tsv_top_k_and_expr_value(checkpoints, image_folder, capsys):
    path = str(image_folder / "a_gray.png")
    assert main([str(checkpoints["hanzi"]), path]) == 0
    row = capsys.readouterr().out.rstrip("\n").split("\t")
    assert len(row) == 3 + 2 * 3  # path, text, confidence, then the top 3 as text, probability
    assert row[3] == row[1]
    assert main([str(checkpoints["expr"]), path, "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "value" in record and (record["value"] is None or isinstance(record["value"], int))
    assert main([str(checkpoints["expr"]), path]) == 0
    assert len(capsys.readouterr().out.rstrip("\n").split("\t")) == 4  # path, text, conf, value


@pytest.mark.parametrize(
    ("option", "value"),
    [("--batch-size", "0"), ("--top-k", "0"), ("--threads", "-1"), ("--max-pixels", "-5")],
)
def test_cli_bad_arguments_exit_1_naming_the_option(
    checkpoints, image_folder, capsys, option, value
):
    # 2 means that some images could not be read: a bad argument is "nothing could run"
    with pytest.raises(SystemExit) as exc:
        main([str(checkpoints["line"]), str(image_folder), option, value])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert f"argument {option}" in err and value in err


@pytest.mark.parametrize(
    ("task", "decoder", "pairs"),
    [("line", "greedy", 0), ("line", "beam", 2), ("short", "greedy", 0), ("short", "beam", 2)],
)
def test_cli_prints_alternatives_with_the_beam_decoder(
    checkpoints, image_folder, capsys, task, decoder, pairs
):
    path = str(image_folder / "a_gray.png")
    assert main([str(checkpoints[task]), path, "--decoder", decoder, "--top-k", "2"]) == 0
    row = capsys.readouterr().out.rstrip("\n").split("\t")
    assert len(row) == 3 + 2 * pairs
    if pairs:
        assert row[3] == row[1]  # the best alternative is the reading


def test_small_confidences_never_print_as_zero():
    line = format_tsv(
        "x.png", Prediction("abc", 3.2e-9, [("abc", 3.2e-9), ("ab", 0.25)]), False, True
    )
    assert line.split("\t") == ["x.png", "abc", "3.20e-09", "abc", "3.20e-09", "ab", "0.2500"]
    # four decimals from 0.001 up; 0 for a product of frames' probabilities that underflowed
    line = format_tsv("x.png", Prediction("ab", 1e-3, [("ab", 1e-3), ("a", 0.0)]), False, True)
    assert line.split("\t") == ["x.png", "ab", "0.0010", "ab", "0.0010", "a", "0"]


def test_cli_grammar_decoder_for_expr_models(checkpoints, image_folder, capsys):
    path = str(image_folder / "a_gray.png")
    args = [path, "--decoder", "grammar", "--top-k", "2", "--format", "json"]
    assert main([str(checkpoints["expr"]), *args]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 1 <= len(record["top_k"]) <= 2 and record["top_k"][0][0] == record["text"]
    assert record["value"] == evaluate(record["text"])  # even an untrained model's reading parses
    assert main([str(checkpoints["line"]), *args]) == 1
    err = capsys.readouterr().err
    assert "decoder: 'grammar'" in err and "'crnn_vgg' on task 'line'" in err
    assert err.rstrip().endswith("use greedy or beam")
    assert main([str(checkpoints["hanzi"]), *args]) == 1
    err = capsys.readouterr().err
    assert "'hanzi_cnn' on task 'hanzi'" in err and "or beam" not in err
    assert "use greedy: a classifier gives its top-k classes whatever the decoder" in err


def test_grammar_held_to_a_configs_expressions(checkpoints, image_folder, tmp_path, capsys):
    from synth.text import DrawnExpressionGrammar, grammar_accepts

    settings = {"operands": [2, 2], "max_digits": 1, "baidu_fraction": 0, "operators": "+"}
    config = tmp_path / "mine.yaml"
    config.write_text(json.dumps({"tasks": {"expr": settings}}))  # YAML reads JSON
    paths = [str(image_folder / name) for name in GOOD]
    args = [*paths, "--decoder", "grammar", "--format", "json", "--task-config", str(config)]
    assert main([str(checkpoints["expr"]), *args]) == 0
    drawn = DrawnExpressionGrammar(settings)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(paths)
    for record in records:  # an untrained model's readings: "d+d", as the settings draw
        assert grammar_accepts(drawn, record["text"]), record["text"]
    recognizer = load_recognizer(checkpoints["expr"], decoder="grammar", task_settings=settings)
    assert [r.text for r in recognizer(paths)] == [r["text"] for r in records]
    with pytest.raises(ValueError, match=r"tasks\.expr: operands \[3, 2\]"):
        load_recognizer(checkpoints["expr"], decoder="grammar", task_settings={"operands": [3, 2]})
    # As the command line: settings to another decoder are refused (they were ignored), and an
    # operator the model cannot read is a warning.
    with pytest.raises(ValueError, match="this recognizer decodes with 'greedy': give decoder="):
        load_recognizer(checkpoints["expr"], task_settings=settings)
    with pytest.warns(UserWarning, match=r"tasks\.expr\.operators '/': not in the model's"):
        load_recognizer(
            checkpoints["expr"], decoder="grammar", task_settings={**settings, "operators": "+/"}
        )
    with pytest.raises(SystemExit):
        main([str(checkpoints["expr"]), paths[0], "--task-config", str(config)])
    assert "add --decoder grammar" in capsys.readouterr().err


def test_a_task_config_is_checked_against_the_schema_naming_key_and_file(
    checkpoints, image_folder, tmp_path, capsys
):
    config = tmp_path / "mine.yaml"
    args = [str(checkpoints["expr"]), str(image_folder / GOOD[0]), "--decoder", "grammar"]
    # A misspelt key was left out silently (the default grammar), a wrong type not named.
    config.write_text("tasks: {expr: {max_digitz: 1, operandz: 9}}\n")
    assert main([*args, "--task-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: {config}: invalid config (2 problems):" in err, err
    assert "tasks.expr.max_digitz: unknown key (did you mean 'max_digits'?)" in err
    assert "tasks.expr.operandz: unknown key (did you mean 'operands'?)" in err
    config.write_text('tasks: {expr: {max_digits: "two"}}\n')
    assert main([*args, "--task-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}: invalid config (1 problem):" in err
    assert "tasks.expr.max_digits: 'two' is not of type 'integer'" in err
    # An overlay's problem is named with the file that set it.
    overlay = tmp_path / "over.yaml"
    overlay.write_text(f"extends: {config.name}\ntasks: {{expr: {{operands: [2, .nan]}}}}\n")
    assert main([*args, "--task-config", str(overlay)]) == 1
    err = capsys.readouterr().err
    assert f"tasks.expr.operands.1: nan is not a number; from {overlay}" in err, err
    # The task's checks past the schema, as the workflow's: repeated operators, an operator its
    # own charset's chars cannot hold (the schema took both, and the grammar read them).
    config.write_text('tasks: {expr: {operators: "++-"}}\n')
    assert main([*args, "--task-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{config}: invalid config (1 problem):" in err, err
    assert "tasks.expr.operators: '++-' must be distinct characters" in err, err
    config.write_text(
        'tasks: {expr: {operators: "+-*", charset: {source: chars, chars: "0123456789+-()"}}}\n'
    )
    assert main([*args, "--task-config", str(config)]) == 1
    assert "tasks.expr.operators: '*' is not in tasks.expr.charset.chars" in capsys.readouterr().err
    # An operator the model cannot read (the config's own charset holds it): the readings are as
    # without it, and a warning says so.
    config.write_text(
        'tasks: {expr: {operators: "+/", charset: {source: chars, chars: "0123456789+-*/()"}}}\n'
    )
    assert main([*args, "--task-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {config}: tasks.expr.operators '/': not in the model's charset" in err


def test_beam_on_the_classifier_warns_that_it_does_nothing(checkpoints, image_folder, capsys):
    path = str(image_folder / "a_gray.png")
    greedy = main([str(checkpoints["hanzi"]), path, "--threads", "1"])
    out_greedy = capsys.readouterr().out
    assert main([str(checkpoints["hanzi"]), path, "--decoder", "beam"]) == greedy == 0
    out, err = capsys.readouterr()
    assert out == out_greedy
    assert "warning: --decoder beam has no effect on a classifier (hanzi_cnn)" in err
    assert main([str(checkpoints["line"]), path, "--decoder", "beam"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_cli_refuses_decompression_bomb(checkpoints, image_folder, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (3000, 2000), 1).save(bomb)
    good = str(image_folder / "a_gray.png")
    status = main([str(checkpoints["line"]), str(bomb), good, "--max-pixels", "1000000"])
    assert status == EXIT_SOME_FAILED
    out, err = capsys.readouterr()
    assert out.startswith(good + "\t")
    assert f"error: {bomb}: 3000 x 2000 = 6,000,000 pixels exceeds the limit of 1,000,000" in err


def test_recognizer_api_takes_paths_pil_and_arrays(checkpoints, image_folder, cjk_font):
    rec = load_recognizer(checkpoints["line"], device="cpu", batch_size=3)
    line = _line(cjk_font)
    arr = np.asarray(line)
    inputs = [
        image_folder / "a_gray.png",
        str(image_folder / "a_gray.png"),
        line,
        line.convert("RGBA"),
        arr,
        arr.astype(np.float32) / 255.0,
        arr.astype(np.uint16) * 257,
        np.stack([arr] * 3, axis=-1),
        255 - arr,  # light on dark: detected and inverted
    ]
    results = rec(inputs)
    assert len(results) == len(inputs)
    first = results[0]
    for r in results:
        assert (r.text, r.top_k) == (first.text, first.top_k)
        assert r.confidence == pytest.approx(first.confidence)
        assert r.value is None
    # a long line is read at its own width (never squashed to a fixed one)
    [long_line] = rec(_line(cjk_font, "中文识别字体一二三0123" * 6, width=2400))
    assert 0.0 <= long_line.confidence <= 1.0
    # one image alone gives a one-element list
    [alone] = rec.recognize(line)
    assert alone.text == first.text
    # polarity forced the wrong way changes what the model sees
    forced = load_recognizer(checkpoints["line"], device="cpu", polarity="dark-on-light")
    assert forced.load(255 - arr).getpixel((0, 0)) < 30


def test_recognizer_api_errors_name_the_image(checkpoints, image_folder):
    rec = load_recognizer(checkpoints["hanzi"], device="auto", top_k=5)
    with pytest.raises(ImageLoadError, match=r"e_empty\.png: empty file"):
        rec([image_folder / "a_gray.png", image_folder / "e_empty.png"])
    with pytest.raises(ImageLoadError, match=r"image 1: expected an array"):
        rec([np.zeros((16, 16), np.uint8), np.zeros((2, 2, 2, 2), np.uint8)])
    [result] = rec(image_folder / "sub" / "b_rgba.png")
    assert len(result.top_k) == 5
    with pytest.raises(ValueError, match="unknown polarity"):
        load_recognizer(checkpoints["hanzi"], polarity="sideways")
    for top_k in (0, 101, True):
        with pytest.raises(
            ValueError, match=rf"top_k must be a whole number from 1 to 100, got {top_k}"
        ):
            load_recognizer(checkpoints["hanzi"], top_k=top_k)
    # Each limit is checked when the recognizer is made, naming it: max_pixels=-1 refused every
    # file later ("exceeds the limit of -1"), batch_size="8" was a TypeError naming nothing.
    for key, value in [("max_pixels", -1), ("max_aspect", -3), ("batch_size", "8")]:
        with pytest.raises(ValueError, match=rf"^{key} must be a whole number .*, got {value!r}"):
            load_recognizer(checkpoints["hanzi"], **{key: value})
    assert load_recognizer(checkpoints["hanzi"], max_pixels=None, max_aspect=0).max_aspect == 0
    # recognize_files takes paths: an array was read as a path named by its repr.
    with pytest.raises(TypeError, match=r"paths\[1\]: a file path, got ndarray"):
        list(rec.recognize_files([image_folder / "a_gray.png", np.zeros((4, 4), np.uint8)]))


@pytest.mark.slow
def test_bench_runs_on_a_shard(checkpoints, tmp_path, cjk_font, repo_root):
    from synth.shards import Sample, write_samples

    texts = ["中文识别", "一二三", "字体123"]
    # the measured split, and beside it the training shard the int8 engine calibrates on
    for split, repeat in (("test_heldout", 2), ("train", 1)):
        write_samples(
            tmp_path / f"{split}-000000.tar",
            (
                Sample(f"{i:06d}", np.asarray(_line(cjk_font, t)), {"text": t, "font": "WQY"})
                for i, t in enumerate(texts * repeat)
            ),
        )
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "bench_recognize.py"),
            "--checkpoint",
            str(checkpoints["line"]),
            "--shards",
            str(tmp_path / "test_heldout-*.tar"),
            "--limit",
            "5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    engines = [r["engine"] for r in rows]
    assert engines[:3] == ["synthocr PyTorch", "synthocr onnxruntime", "synthocr onnxruntime int8"]
    assert len(rows) == 4 and engines[3].startswith("Tesseract")  # make test installs it
    for row in rows:
        assert row["n"] == 5 and row["lines_per_s"] > 0 and 0 <= row["seq_acc"] <= 1
        assert row["speedup"] > 0
    assert rows[3]["speedup"] == 1.0
    assert "| synthocr onnxruntime | 5 |" in proc.stdout
    assert "| synthocr onnxruntime int8 | 5 |" in proc.stdout


def test_bench_reads_an_expr_models_shards_as_expr(checkpoints, tmp_path, cjk_font, repo_root):
    # it read every shard as the line task's: an expr model on its own test split drew "a line
    # model on expr shards ... read anyway"
    from synth.shards import Sample, write_samples

    texts = {"12+3": 15, "(7+5)*4": 48}
    write_samples(
        tmp_path / "test_heldout-000000.tar",
        (
            Sample(
                f"{i:06d}",
                np.asarray(_line(cjk_font, t)),
                {"text": t, "font": "WQY", "task": "expr", "value": v},
            )
            for i, (t, v) in enumerate(texts.items())
        ),
    )
    proc = subprocess.run(
        [sys.executable, str(repo_root / "bench" / "bench_recognize.py"),
         "--checkpoint", str(checkpoints["expr"]), "--shards", str(tmp_path / "test_heldout-*.tar"),
         "--no-tesseract", "--no-int8", "--rounds", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "read anyway" not in proc.stderr, proc.stderr
    assert "| synthocr onnxruntime | 2 |" in proc.stdout


def _bench_module(repo_root, monkeypatch):
    # as `python bench/bench_recognize.py` runs: its folder first on the path (bench/arguments.py)
    monkeypatch.syspath_prepend(str(repo_root / "bench"))
    spec = importlib.util.spec_from_file_location(
        "bench_recognize", repo_root / "bench" / "bench_recognize.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_names_missing_inputs(tmp_path, repo_root, capsys, monkeypatch):
    bench = _bench_module(repo_root, monkeypatch)
    assert bench.main(["--shards", str(tmp_path / "none-*.tar")]) == 1
    err = capsys.readouterr().err
    assert "no shards match" in err and "none-*.tar" in err


def test_bench_synthetic_lines_and_untrained_model(tmp_path, repo_root, monkeypatch):
    bench = _bench_module(repo_root, monkeypatch)
    cfg = yaml.safe_load((repo_root / "configs" / "config.yaml").read_text(encoding="utf-8"))
    samples = bench.synthetic_samples(cfg, 3)
    fonts = {Path(p).stem: p for p in cfg["fonts"]["test_fonts"]}
    assert sorted(s.font for s in samples) == sorted(fonts)  # each held-out font in turn
    for s in samples:
        assert s.image.mode == "L" and s.image.height == cfg["tasks"]["line"]["height"]
        assert bench._covers(fonts[s.font], s.label)
    path = bench.untrained_checkpoint(cfg, "line_crnn_vgg", tmp_path / "u.pt")
    rec = load_recognizer(path, device="cpu")
    assert rec.meta.model == cfg["experiments"]["line_crnn_vgg"]["model"]
    assert rec.meta.model_kwargs == cfg["experiments"]["line_crnn_vgg"]["model_kwargs"]
    assert len(rec([s.image for s in samples])) == 3


@pytest.mark.parametrize(("value", "shown"), [(Fraction(7, 2), "7/2"), (12, 12), (None, None)])
def test_expression_values_print_exactly(value, shown):
    pred = Prediction("7/2" if value != 12 else "3*4", 0.5, [("7/2", 0.5)], value)
    assert json.loads(format_json("a.png", pred, with_value=True))["value"] == shown
    assert format_tsv("a.png", pred, with_value=True, with_top_k=False).split("\t")[3] == (
        "" if shown is None else str(shown)
    )


def test_a_thin_strip_is_refused_and_the_others_are_read(checkpoints, image_folder, tmp_path):
    # 60 KB on disk, far under --max-pixels: scaled to 32 px high it would be 1.9 million px wide
    folder = tmp_path / "strips"
    folder.mkdir()
    Image.new("L", (60000, 1), 255).save(folder / "wide.png")
    Image.new("L", (1, 9000), 255).save(folder / "tall.png")
    (folder / "good.png").write_bytes((image_folder / "a_gray.png").read_bytes())
    for task in ("line", "hanzi"):
        proc = _cli(str(checkpoints[task]), str(folder), "--threads", "1")
        assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
        assert [r.split("\t")[0] for r in proc.stdout.splitlines()] == [str(folder / "good.png")]
        for name, size in (("wide.png", "60000x1"), ("tall.png", "1x9000")):
            assert f"error: {folder / name}: {size} px: one side is over 200 times" in proc.stderr


def test_an_expression_is_read_at_its_own_width_with_every_frame(checkpoints, tmp_path, latin_font):
    """Expressions are all drawn at one width, so an expr model never sees padding in training and
    may emit its last character at the last frame it is given (the default config's trained
    model does): an image of another width is read unpadded, every frame its own, not padded to
    a width bucket whose extra frames are cut off (which lost the last character of 98% of
    held-out expressions 1 px wider than 128)."""
    recognizer = load_recognizer(checkpoints["expr"], device="cpu", polarity="dark-on-light")
    model, meta = recognizer.model, recognizer.meta
    height = meta.input["height"]
    font = ImageFont.truetype(str(latin_font), height * 2 // 3)
    family = make_family(meta.model, meta.charset, meta.model_kwargs)
    # none a multiple of the width buckets' step (half the height)
    for width in (3 * height + 1, 4 * height - 3, 5 * height + 7):
        im = Image.new("L", (width, height), 235)
        ImageDraw.Draw(im).text((3, 2), "(1+2)*3", font=font, fill=20)
        im.save(tmp_path / "expr.png")
        [ours] = recognizer([tmp_path / "expr.png"])
        x, widths = to_tensor_batch([im], meta.input)
        assert x.shape[-1] == width == int(widths[0])  # nothing added to the image
        with torch.inference_mode():
            [alone] = family.decode(model(x), None)  # every frame
        assert ours.text == alone.text
        assert ours.confidence == pytest.approx(alone.confidence, rel=1e-5, abs=0)


def test_a_long_image_is_scaled_before_it_is_padded_to_a_square():
    strip = Image.new("L", (6000, 400), 250)
    ImageDraw.Draw(strip).rectangle([100, 100, 5900, 300], fill=0)
    square = prepare_image(strip, {"kind": "square", "size": 64})
    assert square.shape == (64, 64)
    # the 200 px bar becomes about 2 rows in the middle; the rest is the image's background
    dark = np.flatnonzero(square[:, 2:62].max(axis=1) < 128)
    assert 1 <= len(dark) <= 3 and 29 <= dark.mean() <= 34
    assert square[0, 0] == 250  # padded with the image's own background


def test_small_confidences_keep_their_digits_and_ranking_in_json():
    """A long line's probability is tiny: six significant digits, not six decimals (0.0)."""
    pred = Prediction("长", 8.84321e-78, [("长", 8.84321e-78), ("张", 1.2e-79)], None)
    record = json.loads(format_json("a.png", pred, with_value=False))
    assert record["confidence"] == 8.84321e-78
    assert [p for _, p in record["top_k"]] == [8.84321e-78, 1.2e-79]
    assert json.loads(format_json("a.png", Prediction("a", 0.123456789, [], None), False))[
        "confidence"
    ] == pytest.approx(0.123457, abs=0)


def test_paths_with_tabs_and_newlines_keep_one_line_each(checkpoints, image_folder, tmp_path):
    """TSV escapes a path's backslash, tab, newline and carriage return; JSON keeps the name,
    even one that is not UTF-8."""
    folder = tmp_path / "odd"
    folder.mkdir()
    good = (image_folder / "a_gray.png").read_bytes()
    names = ["tab\there.png", "new\nline.png", "back\\slash.png"]
    for name in names:
        (folder / name).write_bytes(good)
    (folder / "new\nbroken.png").write_bytes(b"")  # an error line, escaped the same way
    raw = os.fsencode(folder) + b"/latin1-\xe9.png"
    with open(raw, "wb") as f:
        f.write(good)
    proc = _cli(str(checkpoints["line"]), str(folder), "--threads", "1")  # decodes as UTF-8
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(rows) == 4 and all(len(r) == 3 for r in rows)
    shown = sorted(r[0].removeprefix(f"{folder}/") for r in rows)
    assert "tab\\there.png" in shown and "new\\nline.png" in shown
    assert "back\\\\slash.png" in shown and "latin1-\\xe9.png" in shown
    assert f"error: {folder}/new\\nbroken.png: empty file" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "models.recognize",
            str(checkpoints["line"]),
            raw,
            "--format",
            "json",
            "--threads",
            "1",
        ],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.decode("utf-8")  # valid UTF-8, though the name is not
    assert os.fsencode(json.loads(line)["path"]) == raw


def test_a_closed_output_pipe_ends_the_run_quietly(checkpoints, image_folder):
    many = [str(image_folder / "a_gray.png")] * 600  # more than a pipe buffer of lines
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.recognize", str(checkpoints["hanzi"]), *many],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline()  # the first line, then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err


RECOGNIZE = (sys.executable, "-m", "models.recognize")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_one_error_line(checkpoints, image_folder):
    # A full disk under a redirect: the OSError was a traceback.
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*RECOGNIZE, str(checkpoints["hanzi"]), str(image_folder / "a_gray.png")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: cannot write the readings to standard output: [Errno 28] No space left on device"
    )


def test_options_may_stand_between_the_checkpoint_and_the_paths(checkpoints, image_folder):
    # PATH... took nothing after the checkpoint: "unrecognized arguments: PATH".
    listed = image_folder / "listed.txt"
    listed.write_text(str(image_folder / "a_gray.png") + "\n", encoding="utf-8")
    proc = subprocess.run(
        [
            *RECOGNIZE,
            str(checkpoints["hanzi"]),
            "--format",
            "json",
            str(image_folder / "sub"),
            "--files-from",
            str(listed),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    read = [Path(json.loads(line)["path"]).name for line in proc.stdout.splitlines()]
    assert read == ["b_rgba.png", "c_negative.png", "d_photo.jpg", "a_gray.png"]


def test_an_ascii_console_gets_escapes_not_a_crash(checkpoints, image_folder):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "models.recognize",
            str(checkpoints["hanzi"]),
            str(image_folder / "a_gray.png"),
            "--threads",
            "1",
        ],
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert proc.returncode == 0, proc.stderr
    fields = proc.stdout.decode("ascii").rstrip("\n").split("\t")
    assert fields[1].startswith("\\u")  # a hanzi, escaped
    assert chr(int(fields[1][2:6], 16)) in CASES["hanzi"][3]


def test_the_aspect_limit_can_be_raised(checkpoints, tmp_path):
    long_line = tmp_path / "long.png"
    Image.new("L", (260 * 32, 38), 255).save(long_line)  # a 260-hanzi line is 219:1
    proc = _cli(str(checkpoints["line"]), str(long_line), "--threads", "1")
    assert proc.returncode == EXIT_SOME_FAILED
    assert "over 200 times the other" in proc.stderr and "--max-aspect" in proc.stderr
    for limit in ("300", "0"):
        proc = _cli(str(checkpoints["line"]), str(long_line), "--max-aspect", limit)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"{long_line}\t")


def test_reader_alternatives_only_with_beam(checkpoints, image_folder, capsys):
    """Greedy: the reading alone in JSON and TSV, and a warning that --top-k does nothing, as
    for CTC; beam: the --top-k most likely readings, best first, the first the printed one."""
    image = str(image_folder / "a_gray.png")
    reader = [str(checkpoints["short"]), image, "--top-k", "3", "--threads", "1"]
    assert main([*reader, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "--top-k has no effect with the greedy decoder on an attention model" in captured.err
    record = json.loads(captured.out)
    assert record["top_k"] == [[record["text"], record["confidence"]]]
    assert main(reader) == 0
    captured = capsys.readouterr()
    assert "on an attention model" in captured.err
    assert len(captured.out.rstrip("\n").split("\t")) == 3
    assert main([*reader, "--decoder", "beam", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    record = json.loads(captured.out)
    assert len(record["top_k"]) == 3 and record["top_k"][0] == [
        record["text"],
        record["confidence"],
    ]
    probs = [p for _, p in record["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert main([*reader, "--decoder", "beam"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n").split("\t")) == 3 + 2 * 3


def test_top_k_without_alternatives_warns_and_onnx_refuses_a_gpu(checkpoints, image_folder, capsys):
    image = str(image_folder / "a_gray.png")
    assert main([str(checkpoints["line"]), image, "--top-k", "4", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "--top-k has no effect with the greedy decoder" in captured.err
    assert len(captured.out.rstrip("\n").split("\t")) == 3
    with pytest.raises(ValueError, match=r"\.onnx file runs on the CPU .* 'cuda'"):
        load_recognizer("model.onnx", device="cuda")
    with pytest.raises(SystemExit) as exited:
        main([str(checkpoints["line"]), image, "--device", " "])
    assert exited.value.code == 1
    assert "empty device name" in capsys.readouterr().err


def test_files_are_read_in_chunks_bounded_by_pixels(checkpoints, image_folder, monkeypatch):
    recognizer = load_recognizer(checkpoints["line"], device="cpu")
    paths = [image_folder / g for g in GOOD] * 3 + [image_folder / "e_empty.png"]
    sizes = []
    read = recognizer.read

    def counted(images):
        sizes.append(len(images))
        return read(images)

    monkeypatch.setattr(recognizer, "read", counted)
    chunked = list(recognizer.recognize_files(paths, chunk_pixels=3 * 220 * 40))
    assert max(sizes) <= 3 and sum(sizes) == len(paths) - 1
    whole = list(load_recognizer(checkpoints["line"], device="cpu").recognize_files(paths))
    assert [(p, r.text if isinstance(r, Prediction) else r.reason) for p, r in chunked] == [
        (p, r.text if isinstance(r, Prediction) else r.reason) for p, r in whole
    ]


def test_load_recognizer_applies_threads_and_refuses_bad_counts(checkpoints):
    before = torch.get_num_threads()
    try:
        load_recognizer(checkpoints["line"], device="cpu", threads=1)
        assert torch.get_num_threads() == 1
        load_recognizer(checkpoints["line"], device="cpu")  # 0: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for bad in (-3, 1.5, "2", True):
        with pytest.raises(ValueError, match=r"threads must be an integer >= 0 .*got"):
            load_recognizer(checkpoints["line"], device="cpu", threads=bad)
        with pytest.raises(ValueError, match=r"threads must be an integer >= 0"):
            load_recognizer("model.onnx", threads=bad)


def test_non_finite_arrays_are_refused_naming_the_input(checkpoints):
    rec = load_recognizer(checkpoints["line"], device="cpu")
    good = np.full((32, 64), 0.9, np.float32)
    for value in (np.nan, np.inf, -np.inf):
        bad = good.copy()
        bad[3:5, 10:20] = value
        with pytest.raises(ImageLoadError, match=r"^image 1: 20 of its 2,048 samples are NaN or"):
            rec([good, bad])
    with pytest.raises(ImageLoadError, match=r"^<array>: 2,048 of its 2,048 samples are NaN"):
        rec.load(np.full((32, 64), np.nan, np.float32))
    image = Image.fromarray(np.full((32, 64), np.nan, np.float32), mode="F")
    with pytest.raises(ImageLoadError, match=r"<PIL image>: cannot convert mode F .* NaN"):
        rec.load(image)


def test_files_from_reads_a_list_of_paths_relative_to_the_current_folder(
    checkpoints, image_folder, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(image_folder)
    listing = tmp_path / "list.txt"  # in another folder: its paths are still the cwd's
    # a byte-order mark, CRLF line ends, an empty line, a folder, a name given twice
    listing.write_bytes(b"\xef\xbb\xbfsub/b_rgba.png\r\n\r\na_gray.png\nsub/deeper\na_gray.png\n")
    ckpt = str(checkpoints["line"])
    assert main([ckpt, str(image_folder / "sub/c_negative.png"), "--files-from", str(listing)]) == 0
    rows = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        str(image_folder / "sub/c_negative.png"),  # the arguments first, then the list's
        "sub/b_rgba.png",
        "a_gray.png",
        "sub/deeper/d_photo.jpg",
        "a_gray.png",
    ]
    stdin = type("Stdin", (), {"buffer": io.BytesIO(b"e_empty.png\nsub/b_rgba.png\n")})()
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main([ckpt, "--files-from", "-", "--format", "json"]) == EXIT_SOME_FAILED
    out, err = capsys.readouterr()
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        "e_empty.png",
        "sub/b_rgba.png",
    ]
    assert "error: e_empty.png: empty file" in err
    # a list that cannot be read, and no images named at all, are errors that stop the run
    assert main([ckpt, "--files-from", str(tmp_path / "none.txt")]) == 1
    assert f"error: --files-from {tmp_path / 'none.txt'}: No such file" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    assert main([ckpt, "--files-from", str(tmp_path / "empty.txt")]) == 1
    assert (
        f"error: --files-from {tmp_path / 'empty.txt'}: lists no paths" in capsys.readouterr().err
    )
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(b"")})())
    assert main([ckpt, "--files-from", "-"]) == 1
    assert "error: --files-from -: lists no paths" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()  # a list of paths that hold no image
    (tmp_path / "folders.txt").write_text(f"{tmp_path / 'nothing'}\n", encoding="utf-8")
    assert main([ckpt, "--files-from", str(tmp_path / "folders.txt")]) == 1
    assert "error: no image files under" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([ckpt])
    assert exited.value.code == 1
    assert "give the images: PATH..., or --files-from FILE" in capsys.readouterr().err


def test_a_model_whose_outputs_are_not_finite_is_one_error_line(image_folder, tmp_path):
    # Its readings were a traceback (decoding raised past the per-file errors).
    name, kwargs, task_name, chars = CASES["line"]
    model = build_model(name, len(chars), **kwargs)
    with torch.no_grad():  # finite weights (a file of NaN weights is refused when loaded)
        for p in model.parameters():
            if p.dim() == 4:
                p.fill_(3e38)  # convolutions that overflow to inf, then NaN
    path = tmp_path / "nan.pt"
    save_model(path, model, ModelMeta(name, kwargs, list(chars), task_name))
    proc = subprocess.run(
        [*RECOGNIZE, str(path), str(image_folder / "a_gray.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: model '{name}' gave outputs that are not finite")


def test_a_nul_separated_list_takes_names_with_newlines(
    checkpoints, image_folder, tmp_path, capsys, monkeypatch
):
    # find -print0: a name with a newline was two names, neither of them a file.
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes((image_folder / "a_gray.png").read_bytes())
    stdin = type(
        "Stdin", (), {"buffer": io.BytesIO(f"{odd}\0{image_folder / 'a_gray.png'}\0".encode())}
    )()
    monkeypatch.setattr(sys, "stdin", stdin)
    ckpt = str(checkpoints["line"])
    assert main([ckpt, "--files-from", "-", "--null", "--format", "json"]) == 0
    read = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    assert read == [str(odd), str(image_folder / "a_gray.png")]
    with pytest.raises(SystemExit):
        main([ckpt, str(odd), "--null"])
    assert "--null goes with --files-from" in capsys.readouterr().err


def test_a_folder_without_images_is_named_in_a_warning(checkpoints, image_folder, tmp_path, capsys):
    hollow = tmp_path / "hollow"
    (hollow / "inner").mkdir(parents=True)
    (hollow / "notes.txt").write_text("no image here\n", encoding="utf-8")
    good = str(image_folder / "a_gray.png")
    assert main([str(checkpoints["hanzi"]), str(hollow), good]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [good]
    assert err.strip() == f"warning: {hollow}: a folder with no image files in it"
    assert main([str(checkpoints["hanzi"]), str(hollow)]) == 1  # alone: nothing to read
    assert f"error: no image files under {hollow}" in capsys.readouterr().err


def test_a_tall_image_given_to_a_line_model_is_named_in_a_warning(
    checkpoints, cjk_font, tmp_path, capsys
):
    tall = tmp_path / "tall.png"
    _line(cjk_font).rotate(90, expand=True).resize((36, 120)).save(tall)
    wide = tmp_path / "wide.png"
    _line(cjk_font).save(wide)
    assert main([str(checkpoints["line"]), str(tall), str(wide)]) == 0
    out, err = capsys.readouterr()
    assert [r.split("\t")[0] for r in out.splitlines()] == [str(tall), str(wide)]  # still read
    assert err.splitlines() == [
        f"warning: {tall}: 36x120 px, under half as wide as high: a line model reads one line "
        "from left to right (rotate an image on its side; crop a vertical line's characters)"
    ]
    assert main([str(checkpoints["hanzi"]), str(tall)]) == 0  # a square model: no warning
    assert capsys.readouterr().err == ""
    rec = load_recognizer(checkpoints["line"], device="cpu")
    with pytest.warns(TallLineWarning, match=r"^image 1: 20x60 px, under half as wide as high"):
        rec([np.full((32, 20), 200, np.uint8), np.full((60, 20), 200, np.uint8)])  # 20x32: fine


def test_an_image_far_below_the_models_input_size_is_named_in_a_warning(
    checkpoints, tmp_path, capsys
):
    """A 5x5 image read as two letters with nothing said: scaled up 8x (the reader's 40 px
    side), its pixels are noise. A quarter of the input size or more reads without a word."""
    tiny = tmp_path / "tiny.png"
    Image.new("L", (5, 5), 255).save(tiny)
    small = tmp_path / "small.png"
    Image.new("L", (12, 10), 255).save(small)  # 12 px: over a quarter of the reader's 40
    assert main([str(checkpoints["short"]), str(tiny), str(small)]) == 0
    out, err = capsys.readouterr()
    assert [r.split("\t")[0] for r in out.splitlines()] == [str(tiny), str(small)]  # still read
    assert err.splitlines() == [
        f"warning: {tiny}: 5x5 px, under a quarter of the model's 40 px side: scaled up 8x, its "
        "few pixels read as noise (give it the image it was cut from, at full size)"
    ]
    rec = load_recognizer(checkpoints["line"], device="cpu")
    with pytest.warns(SmallImageWarning, match=r"^image 0: 60x7 px, .* model's 32 px height"):
        rec([np.full((7, 60), 200, np.uint8), np.full((8, 60), 200, np.uint8)])  # 8 px: fine


def test_tsv_fields_come_back_with_tsv_unescape():
    odd = ['"quoted', "tab\there", "new\nline\r", "back\\slash\\t", "\\x41", "latin1-\udce9.png"]
    odd += ["nul\x00byte", "\\0 is text"]
    for text in odd:
        assert tsv_unescape(tsv_field(text)) == text
    assert os.fsencode(tsv_unescape("latin1-\\xe9.png")) == b"latin1-\xe9.png"


def test_a_listed_path_with_a_nul_byte_is_an_error_line_that_shows_it(
    checkpoints, tmp_path, capsys
):
    """os and Pillow said "corrupt image: embedded null byte", and the line carried the NUL."""
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"a\x00b.png\n")
    assert main([str(checkpoints["expr"]), "--files-from", str(listing)]) == 2
    err = capsys.readouterr().err
    assert "error: a\\0b.png: a file name cannot hold a NUL byte" in err and "\x00" not in err


def test_the_readme_reads_the_tsv_output_with_pandas(repo_root, tmp_path, monkeypatch):
    """The README's pandas block keeps every field as the command had it: a reading that starts
    with a quote, holds a tab, is empty, or looks like a number or NA."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    marker = "<!-- tsv-pandas: tests/test_recognize.py runs this block -->\n```python\n"
    block = readme[readme.index(marker) + len(marker) :].split("```", 1)[0]
    rows = [
        ("a.png", '"quoted', 0.5),
        ("tab\there.png", 'say "hi"\tthen', 0.25),
        ("b.png", "", 1e-5),
        ("c\\d.png", "NA", 0.75),
        ("e.png", "0012", 0.125),
    ]
    lines = [format_tsv(p, Prediction(t, c, [], None), False, False) for p, t, c in rows]
    (tmp_path / "readings.tsv").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(block, scope)
    readings = scope["readings"]
    assert list(readings["path"]) == [p for p, _, _ in rows]
    assert list(readings["text"]) == [t for _, t, _ in rows]
    assert list(readings["confidence"]) == pytest.approx([c for _, _, c in rows], rel=1e-3)


def test_the_help_gives_every_exit_status(capsys):
    """``--help`` lists each status the command ends with, Ctrl-C's 130 too (README)."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    statuses = re.search(r"Exit status: (.*)", out).group(1)
    assert re.findall(r"\b(\d+) ", statuses) == [
        str(s) for s in (0, EXIT_SOME_FAILED, 1, INTERRUPTED)
    ]


def test_each_damaged_file_of_a_run_gets_its_own_warning_line(checkpoints, tmp_path, capsys):
    """Pillow's "Corrupt EXIF data" is one warning at one place in its code: under Python's
    default filter a second file's would not show. Each file's comes with its name."""
    paths = [str(cut_short_tiff(tmp_path / name)) for name in ("a.tif", "b.tif")]
    assert main([str(checkpoints["line"]), *paths]) == EXIT_SOME_FAILED
    err = capsys.readouterr().err.splitlines()
    for path in paths:
        warned = [line for line in err if line.startswith(f"warning: {path}: Corrupt EXIF data")]
        assert len(warned) == 1, err
        assert f"error: {path}: not an image Pillow can read" in "\n".join(err)


def test_a_tiff_decoders_own_lines_name_the_file_they_are_about(checkpoints, tmp_path):
    """libtiff prints its complaints to stderr without naming the file, anywhere among a
    folder's readings: the command gives each as a warning naming the file it read anyway, or in
    the error's reason for one it could not."""
    read = damaged_tiff(tmp_path / "a.tif", "group4")
    failed = damaged_tiff(tmp_path / "b.tif", "tiff_adobe_deflate")
    proc = _cli(str(checkpoints["line"]), str(tmp_path))
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == [str(read)]
    err = proc.stderr.splitlines()
    warned = [line for line in err if "Fax4Decode" in line]
    assert warned and all(
        line.startswith(f"warning: {read}: its decoder says: Fax4Decode: Bad code word")
        for line in warned
    ), err
    failing = [line for line in err if "ZIPDecode" in line]
    assert len(failing) == 1, err
    assert failing[0].startswith(f"error: {failed}: corrupt image: decoder error"), err


def test_trim_reads_a_loosely_cropped_line_as_the_tight_one(checkpoints, cjk_font, tmp_path):
    """A line with room above and below it, scaled to the model's height, had its text shrunk
    to a few pixels: --trim cuts it to its ink, framed as the training lines are, so the loose
    crop is the tight one's input and reading; a line framed so already is read as it is."""
    line = _line(cjk_font)
    loose = Image.new("L", (line.width + 300, line.height * 5), 240)
    loose.paste(line, (120, 2 * line.height))
    tight = trim_to_ink(loose)
    assert tight.height < line.height
    for name, image in (("line", line), ("tight", tight), ("loose", loose)):
        image.save(tmp_path / f"{name}.png")
    recognizer = load_recognizer(checkpoints["line"], device="cpu", trim=True)
    for name, image in (("line", line), ("tight", tight), ("loose", tight)):
        assert np.array_equal(np.asarray(recognizer.load(tmp_path / f"{name}.png")), image), name
    untrimmed = load_recognizer(checkpoints["line"], device="cpu").load(tmp_path / "loose.png")
    assert untrimmed.size == loose.size
    proc = _cli(str(checkpoints["line"]), "--trim", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    readings = {Path(r["path"]).name: r["text"] for r in map(json.loads, proc.stdout.splitlines())}
    assert readings["tight.png"] == readings["loose.png"], readings


def test_trim_centres_a_hanzi_as_the_classifier_learned_them(checkpoints, cjk_font):
    # the classifier learned characters centred in their square: one off centre in a larger
    # image is cut to its ink and centred as the loose and the tight crop alike
    font = ImageFont.truetype(str(cjk_font), 40)
    loose = Image.new("L", (300, 200), 250)
    ImageDraw.Draw(loose).text((230, 50), "三", font=font, fill=0, anchor="mm")
    tight = trim_to_ink(loose, "hanzi")
    recognizer = load_recognizer(checkpoints["hanzi"], device="cpu", trim=True)
    a, b = recognizer.load(tight), recognizer.load(loose)
    assert a.width == a.height and np.array_equal(np.asarray(a), np.asarray(b))
    assert recognizer([tight])[0].top_k == recognizer([loose])[0].top_k


def test_trim_is_refused_for_the_reader(checkpoints):
    # its text is anywhere in its image, as its training drew it: taken as it is
    with pytest.raises(ValueError, match=r"trim frames a line of text or a hanzi, and reader"):
        load_recognizer(checkpoints["short"], device="cpu", trim=True)
    proc = _cli(str(checkpoints["short"]), "--trim", str(checkpoints["short"]))
    assert proc.returncode == 1 and "error: trim frames a line of text" in proc.stderr
