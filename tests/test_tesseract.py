"""Tesseract baseline: reading normalisation, tsv parsing, a real tesseract run, missing binary."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, Terminal
from PIL import Image, ImageDraw, ImageFont

from models import tesseract
from models.evaluate import read_predictions
from synth.atomic import sha256_file
from synth.schema import SCHEMA_PATH, load_schema, with_defaults
from synth.shards import Sample as ShardSample
from synth.shards import write_samples


def _require_tesseract(lang: str = "eng") -> None:
    if shutil.which("tesseract") is None or lang not in tesseract.available_languages():
        if os.environ.get("CI"):
            pytest.fail(f"tesseract with {lang} is not installed (CI must have it)")
        pytest.skip(f"tesseract with {lang} is not installed")


def _render(text: str, font, size: int, box: tuple[int, int]) -> Image.Image:
    image = Image.new("L", box, 255)
    face = ImageFont.truetype(str(font), size)
    ImageDraw.Draw(image).text((6, 4), text, font=face, fill=0)
    return image


@pytest.mark.parametrize(
    ("raw", "keep_spaces", "expected"),
    [
        ("中 国 人", False, "中国人"),
        ("中 国 人", True, "中国人"),
        ("你 好 ， 世 界 ！\n", False, "你好,世界!"),  # NFKC: full-width punctuation to ASCII
        ("１２ ＋ ３", False, "12+3"),  # full-width digits
        # as line images show them (their labels are NFKC): full-width brackets, colon, dots
        ("（一）：好；吗？……", False, "(一):好;吗?......"),
        ("12 + 3", False, "12+3"),
        ("ab  cd", True, "ab cd"),  # Latin words keep one space when the charset has one
        ("ab 中 cd", True, "ab中cd"),
        ("  \n", False, ""),
        ("ﬁ", False, "fi"),  # NFKC ligature
    ],
)
def test_normalize_reading(raw, keep_spaces, expected):
    assert tesseract.normalize_reading(raw, keep_spaces=keep_spaces) == expected


def test_parse_tsv_groups_words_by_page():
    header = "\t".join(tesseract.TSV_COLUMNS)
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t64\t64\t-1\t",
        "5\t1\t1\t1\t1\t1\t1\t1\t9\t9\t90.0\t中",
        "5\t1\t1\t1\t1\t2\t1\t1\t9\t9\t70.0\t国",
        "1\t2\t0\t0\t0\t0\t0\t0\t64\t64\t-1\t",  # page 2: no words
        "5\t3\t1\t1\t1\t1\t1\t1\t9\t9\t50.0\t12+3",
    ]
    out = tesseract.parse_tsv("\n".join([header, *rows]), pages=3)
    assert out[0] == ("中 国", pytest.approx(0.8))
    assert out[1] == ("", None)
    assert out[2] == ("12+3", pytest.approx(0.5))


def test_spec_from_config_uses_task_settings():
    cfg = {
        "enabled": True,
        "max_samples": 7,
        "expr": {"lang": "eng", "psm": 7, "whitelist": "0123456789+-*()"},
        "hanzi": {"lang": "chi_sim", "psm": 10},
        "short": {"scale": 3},
    }
    spec = tesseract.TesseractSpec.from_config("expr", "test_seen", cfg, threads=3)
    assert (spec.lang, spec.psm, spec.whitelist, spec.scale, spec.max_samples, spec.threads) == (
        "eng",
        7,
        "0123456789+-*()",
        1.5,  # the schema's default for expr
        7,
        3,
    )
    hanzi = tesseract.TesseractSpec.from_config("hanzi", "test_seen", cfg)
    assert (hanzi.psm, hanzi.whitelist) == (10, "")
    # short: English, one line, the charset as whitelist (the default), the config's scale
    short = tesseract.TesseractSpec.from_config("short", "test_seen", cfg, charset=list("XYZ"))
    assert (short.lang, short.psm, short.whitelist, short.scale) == ("eng", 7, "XYZ", 3.0)
    with pytest.raises(ValueError, match=r"tesseract\.short\.whitelist is true"):
        tesseract.TesseractSpec.from_config("short", "test_seen", cfg)
    with pytest.raises(ValueError, match="'reader'"):
        tesseract.TesseractSpec.from_config("reader", "test_seen", cfg)
    # Without max_samples (the schema's default, null), every sample, as the models read.
    for every in (
        {**cfg, "max_samples": None},
        {k: v for k, v in cfg.items() if k != "max_samples"},
    ):
        assert tesseract.TesseractSpec.from_config("expr", "test_seen", every).max_samples is None


def test_task_defaults_are_the_schemas():
    """models.tesseract.TASK_DEFAULTS (used outside the workflow) and the schema's defaults
    (filled in when the workflow reads a config) are the same, for the same tasks (the rule's
    jobs are checked in test_workflow's dry runs)."""
    schema = load_schema(SCHEMA_PATH)
    props = schema["properties"]["tesseract"]["properties"]
    config = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    filled = with_defaults(config)["tesseract"]
    assert set(tesseract.TASKS) == {k for k, v in props.items() if v.get("type") == "object"}
    for task, defaults in tesseract.TASK_DEFAULTS.items():
        assert filled[task] == defaults, task
    # Tesseract at its best on each task: Chinese, one character per image for hanzi and one line
    # for lines; English, one line, the charset as whitelist for expressions and capitals
    assert {
        t: (filled[t]["lang"], filled[t]["psm"], filled[t]["whitelist"]) for t in tesseract.TASKS
    } == {
        "hanzi": ("chi_sim", 10, False),
        "line": ("chi_sim", 7, False),
        "expr": ("eng", 7, True),
        "short": ("eng", 7, True),
    }
    # and every sample by default, as TesseractSpec (the schema's null)
    assert props["max_samples"]["default"] is None
    assert tesseract.TesseractSpec("expr", "test_seen", "eng", 7).max_samples is None
    # a page segmentation mode Tesseract has (0 to 13), refused when the config is read
    for task in tesseract.TASKS:
        bad = {**config, "tesseract": {task: {"psm": 14}}}
        with pytest.raises(ValueError, match=rf"tesseract\.{task}\.psm: 14 is greater than"):
            with_defaults(bad)


def test_images_are_scaled_then_padded_with_their_background():
    image = Image.new("L", (40, 30), 200)
    ImageDraw.Draw(image).rectangle((10, 10, 20, 20), fill=0)
    out = tesseract._prepared(image.convert("RGB"), scale=2.0, pad=10)
    assert out.mode == "L" and out.size == (100, 80)
    arr = np.asarray(out)
    assert arr[0, 0] == 200 and arr[-1, -1] == 200  # the border is the image's background
    assert arr[40, 40] < 50  # the square, scaled: (10..20) * 2 + 10
    assert tesseract._prepared(image, scale=1.0, pad=0) is not image  # grey copy, same size
    assert tesseract._prepared(image, scale=1.0, pad=0).size == (40, 30)


def test_real_tesseract_reads_small_capitals_scaled_up(latin_font):
    """The short task's setting: capitals at 11 px in a 40x40 image, scaled 2x (the default)."""
    _require_tesseract("eng")
    words = ["KEY", "WORD", "FAX", "BOX", "HUGE", "ZIP", "QUIT", "JAM"]
    images = [_render(w, latin_font, 11, (40, 40)) for w in words]
    spec = tesseract.TesseractSpec.from_config(
        "short", "test_seen", {}, charset=list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    )
    assert spec.scale == 2.0
    assert [r.text for r in tesseract.read_images(images, spec)] == words


def test_real_tesseract_reads_a_rendered_expression(latin_font):
    _require_tesseract("eng")
    image = _render("12+3", latin_font, 36, (180, 60))
    spec = tesseract.TesseractSpec(
        task="expr", split="test_seen", lang="eng", psm=7, whitelist="0123456789+-*()"
    )
    (reading,) = tesseract.read_images([image], spec)
    assert reading.text != ""
    assert set(reading.text) <= set("0123456789+-*()")
    assert reading.text == "12+3"
    assert 0.0 < reading.confidence <= 1.0


def test_the_whitelist_holds_tesseract_to_the_tasks_charset(latin_font):
    """expr's setting (``whitelist: true``): Tesseract answers only with the charset's
    characters, where without it it reads the letters drawn (a reading of "12+3" keeps to the
    charset either way, so it cannot tell)."""
    _require_tesseract("eng")
    charset = list("0123456789+-*()")
    images = [_render(word, latin_font, 36, (200, 60)) for word in ("Slot", "ZOB")]
    free = tesseract.TesseractSpec(task="expr", split="test_seen", lang="eng", psm=7)
    assert all(set(r.text) - set(charset) for r in tesseract.read_images(images, free))
    held = tesseract.TesseractSpec.from_config("expr", "test_seen", {}, charset=charset)
    readings = [r.text for r in tesseract.read_images(images, held)]
    assert all(set(text) <= set(charset) for text in readings), readings


# read_images with a fake Tesseract in another process: argv = executable; prints the readings.
_READ_IN_ANOTHER_LOCALE = """
import json, sys
from PIL import Image
from models import tesseract
spec = tesseract.TesseractSpec(task="hanzi", split="test_seen", lang="chi_sim", psm=10,
                               executable=sys.argv[1])
images = [Image.new("L", (64, 64), 255) for _ in range(2)]
print(json.dumps([r.text for r in tesseract.read_images(images, spec)]))
"""


def test_readings_are_the_same_in_a_locale_that_is_not_utf8(tmp_path):
    """Tesseract writes UTF-8 whatever the locale: its hanzi read as hanzi in a process whose
    locale is ASCII (LC_ALL=C without Python's UTF-8 mode; a Latin-1 locale read each as three
    wrong characters, and every hanzi reading missed)."""
    fake = tmp_path / "tesseract"  # one word, 中, on each page of the list
    fake.write_text(
        "#!/bin/sh\n"
        "page=0\n"
        'while read -r image; do page=$((page + 1)); printf "5\\t%d\\t1\\t1\\t1\\t1\\t0\\t0\\t9\\t9'
        '\\t91.5\\t中\\n" "$page"; done < "$1"\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _READ_IN_ANOTHER_LOCALE, str(fake)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert json.loads(proc.stdout) == ["中", "中"]


def test_an_image_tesseract_dies_or_hangs_on_reads_as_nothing_and_the_others_are_read(
    tmp_path, latin_font, caplog, monkeypatch
):
    """Tesseract 5.3 dies of SIGFPE on some images: a call that dies (or whose wrapper exits
    128 + the signal's number) or hangs is made again one image at a time, the image it dies or
    hangs on alone reads as nothing (a miss), and the others are read. An exit status below
    129 still stops the run."""
    _require_tesseract("eng")
    real = shutil.which("tesseract")
    words = ["12+3", "4*5", "6-7", "8+9", "7*7", "1-0"]
    images = [_render(w, latin_font, 36, (180, 60)) for w in words]
    fake = tmp_path / "tesseract"  # dies on image 1, "exits 136" on 3, hangs on 4
    fake.write_text(
        "#!/bin/sh\n"
        'if grep -q "000001.png" "$1"; then kill -FPE $$; fi\n'
        'if grep -q "000003.png" "$1"; then exit 136; fi\n'
        'if grep -q "000004.png" "$1"; then exec sleep 1000; fi\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    # Only a call naming image 4 is held to the spec's 3 s: a real Tesseract call gets 120 s, so
    # one slowed down by a loaded machine is not taken for a hang. The hang is a real one, cut
    # short by read_images' own timeout.
    real_run = subprocess.run
    hung: list[tuple[list[str], float]] = []

    def run_with_time_for_real_calls(cmd, **kwargs):
        names = Path(cmd[1]).read_text(encoding="utf-8").split()
        if any(name.endswith("000004.png") for name in names):
            hung.append(([Path(name).name for name in names], kwargs["timeout"]))
        else:
            kwargs["timeout"] = 120.0
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(tesseract.subprocess, "run", run_with_time_for_real_calls)
    spec = tesseract.TesseractSpec(
        task="expr",
        split="test_seen",
        lang="eng",
        psm=7,
        whitelist="0123456789+-*()",
        executable=str(fake),
        images_per_call=2,
        threads=3,
        timeout_s=3.0,
    )
    crashed: list[int] = []
    readings = tesseract.read_images(images, spec, crashed=crashed)
    assert [r.text for r in readings] == ["12+3", "", "6-7", "", "", "1-0"]
    assert readings[1].confidence is None and sorted(crashed) == [1, 3, 4]
    # the pair's call, then image 4's own, each timed out at its limit (3 s, 3 s alone)
    assert hung == [(["000004.png", "000005.png"], 3.0), (["000004.png"], 3.0)]
    # Without a list for them, each such image gets a warning saying why.
    with caplog.at_level("WARNING", logger="models.tesseract"):
        tesseract.read_images(images[:2], spec)
    assert "tesseract died of signal 8 reading image 1 (at scale 1): read as nothing" in (
        caplog.text
    )
    fake.write_text("#!/bin/sh\necho 'Error opening data file' >&2\nexit 1\n")
    with pytest.raises(tesseract.TesseractError, match="exited with 1: Error opening data file"):
        tesseract.read_images(images, spec)


def _expr_shard(path, font, texts_values):
    samples = []
    for i, (text, value) in enumerate(texts_values):
        image = np.asarray(_render(text, font, 36, (180, 60)))
        meta = {"text": text, "task": "expr", "split": "test_seen", "font": "DejaVu Sans"}
        meta["value"] = value
        samples.append(ShardSample(f"expr_test_seen_000000_{i:06d}", image, meta))
    write_samples(path, iter(samples))
    return path


def test_evaluate_tesseract_on_a_shard(tmp_path, latin_font, monkeypatch):
    _require_tesseract("eng")
    shard = _expr_shard(
        tmp_path / "test_seen-000000.tar",
        latin_font,
        [("12+3", 15), ("(7+5)*4", 48), ("9-2", 7), ("8*8", 64)],
    )
    spec = tesseract.TesseractSpec(
        task="expr",
        split="test_seen",
        lang="eng",
        psm=7,
        whitelist="0123456789+-*()",
        max_samples=3,  # only the first three samples are read
        images_per_call=2,  # two calls, run on two threads
        threads=2,
    )
    # A killed run's scratch images (beside the outputs) go when the split is read again; this
    # run's are made there too, and removed.
    stale = tmp_path / f"{tesseract.SCRATCH_PREFIX}killed"
    stale.mkdir()
    (stale / "000000.png").write_bytes(b"")
    lists = []
    command = tesseract._command

    def recorded(spec, executable, list_file):
        lists.append(Path(list_file))
        return command(spec, executable, list_file)

    monkeypatch.setattr(tesseract, "_command", recorded)
    record = tesseract.evaluate_tesseract(
        [shard], tmp_path / "metrics.json", tmp_path / "predictions.csv", spec
    )
    assert len(lists) == 2 and {p.parent.parent for p in lists} == {tmp_path}
    assert not list(tmp_path.glob(f"{tesseract.SCRATCH_PREFIX}*"))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == record
    assert record["experiment"] == "tesseract"
    assert record["status"] == "ok"
    assert record["model"].startswith("tesseract 5")
    assert record["n"] == 3
    assert record["eval_img_per_s"] > 0
    for key in ("seq_acc", "cer", "ned", "value_acc"):
        assert 0.0 <= record[key] <= 1.0
    assert record["value_acc"] >= 2 / 3  # clean renders: Tesseract gets most of them
    assert list(record["per_font"]) == ["DejaVu Sans"]
    assert record["crashed"] == 0  # images tesseract died on (read as nothing)
    # no training run and no decoder of ours: the report's seed and decoder cells stay empty,
    # and so do those of the training run's data and steps
    assert record["seed"] is None and record["decoder"] is None
    training = ("train_shards", "budget_steps", "train_steps", "train_wall_s")
    assert [record[k] for k in training] == [None] * len(training)
    # the language model read with, by its bytes (fast or best, which release)
    [(lang, digest)] = record["traineddata"].items()
    assert lang == "eng" and len(digest) == 64
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True)
    folder = Path((listed.stdout + listed.stderr).split('"')[1])  # 'List of ... in "DIR" (3):'
    assert digest == sha256_file(folder / "eng.traineddata")
    rows = read_predictions(tmp_path / "predictions.csv")
    assert [r["label"] for r in rows] == ["12+3", "(7+5)*4", "9-2"]
    assert rows[0]["value"] == "15"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_tesseract_counts_its_images_in_a_bar_on_a_terminal_only(
    tmp_path, latin_font, monkeypatch, terminal
):
    _require_tesseract("eng")
    shard = _expr_shard(tmp_path / "test_seen-000000.tar", latin_font, [("1+2", 3), ("4*5", 20)])
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    spec = tesseract.TesseractSpec(task="expr", split="test_seen", lang="eng", psm=7)
    tesseract.evaluate_tesseract([shard], tmp_path / "m.json", tmp_path / "p.csv", spec)
    bar = re.search(r"tesseract expr test_seen: 100%\|.*\| 2/2 \[", stderr.getvalue())
    assert (bar is not None) == terminal, stderr.getvalue()


def test_the_commands_settings_reach_tesseract_and_the_record(
    tmp_path, latin_font, capsys, monkeypatch
):
    """--lang, --psm, --scale and --no-whitelist override the task's settings: the command
    tesseract runs has them, and metrics.json records them."""
    _require_tesseract("eng")
    shard = _expr_shard(tmp_path / "test_own-000000.tar", latin_font, [("12+3", 15), ("9-2", 7)])
    commands = []
    command = tesseract._command

    def recorded(spec, executable, list_file):
        commands.append(command(spec, executable, list_file))
        return commands[-1]

    monkeypatch.setattr(tesseract, "_command", recorded)
    out = tmp_path / "out"
    argv = [str(shard), "--task", "expr", "--out", str(out), "--no-whitelist"]
    argv += ["--lang", "eng", "--psm", "13", "--scale", "1.0"]
    assert tesseract.main(argv) == 0, capsys.readouterr().err
    record = json.loads((out / "metrics.json").read_text())
    printed = capsys.readouterr().out.split()
    assert printed[0] == "n=2" and printed[-1] == f"value_acc={record['value_acc']:.4g}"
    settings = {k: record[k] for k in ("lang", "psm", "scale", "whitelist", "split", "n")}
    assert settings == {
        "lang": "eng",
        "psm": 13,
        "scale": 1.0,
        "whitelist": "",  # none: every character tesseract knows
        "split": "test_own",
        "n": 2,
    }
    defaults = tesseract.TASK_DEFAULTS["expr"]
    assert (defaults["psm"], defaults["scale"], defaults["whitelist"]) == (7, 1.5, True)
    assert commands and all(c[3:7] == ["--psm", "13", "-l", "eng"] for c in commands), commands
    assert not any("tessedit_char_whitelist" in " ".join(c) for c in commands), commands


def test_without_a_charset_spaces_are_kept_when_the_labels_hold_them(tmp_path, latin_font):
    """The command line without --charset (no charset to say whether the space is a class): a
    line's words were run together in every reading, and every line of two words scored wrong;
    the labels tell, as the workflow's charset does."""
    _require_tesseract("eng")
    texts = ["Hello world", "good morning", "plain text"]
    samples = [
        ShardSample(
            f"line_test_own_000000_{i:06d}",
            np.asarray(_render(text, latin_font, 36, (420, 60))),
            {"text": text, "task": "line", "split": "test_own", "font": "DejaVu Sans"},
        )
        for i, text in enumerate(texts)
    ]
    shard = tmp_path / "test_own-000000.tar"
    write_samples(shard, iter(samples))
    spec = tesseract.TesseractSpec(task="line", split="test_own", lang="eng", psm=7)
    tesseract.evaluate_tesseract([shard], tmp_path / "m.json", tmp_path / "p.csv", spec)
    readings = [r["reading"] for r in read_predictions(tmp_path / "p.csv")]
    assert sum(r == t for r, t in zip(readings, texts, strict=True)) >= 2, readings
    assert any(" " in r for r in readings)


def test_missing_tesseract_writes_rows_that_say_so(tmp_path, latin_font):
    shard = _expr_shard(tmp_path / "s.tar", latin_font, [("1+1", 2)])
    spec = tesseract.TesseractSpec(
        task="expr", split="test_heldout", lang="eng", psm=7, executable="no-such-tesseract-5"
    )
    record = tesseract.evaluate_tesseract(
        [shard], tmp_path / "metrics.json", tmp_path / "predictions.csv", spec
    )
    assert record["n"] == 0
    assert "not installed" in record["status"]
    assert record["model"] == "tesseract (not installed)"
    assert read_predictions(tmp_path / "predictions.csv") == []
    assert tesseract.tesseract_version("no-such-tesseract-5") is None


def test_the_command_that_cannot_run_tesseract_leaves_out_as_it_was(tmp_path, latin_font, capsys):
    """Language data not installed: the workflow's placeholder rows replaced a folder's earlier
    results when the command ran; it writes nothing. A folder where one of the files goes is
    named before any work."""
    _require_tesseract("eng")
    shard = _expr_shard(tmp_path / "s-000000.tar", latin_font, [("1+1", 2)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("mine")
    argv = [str(shard), "--task", "expr", "--no-whitelist", "--out", str(out)]
    assert tesseract.main([*argv, "--lang", "zzz"]) == 1
    assert "language data 'zzz' not installed" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "mine"
    (out / "predictions.csv").mkdir()
    assert tesseract.main(argv) == 1
    assert f"{out / 'predictions.csv'} is a folder" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "mine"


def test_a_charset_given_with_a_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    """The model's charset is the whitelist: --charset was silently ignored beside it."""
    monkeypatch.chdir(tmp_path)
    argv = ["s.tar", "--out", "out", "--checkpoint", "model.pt", "--charset", "mine.txt"]
    with pytest.raises(SystemExit) as e:
        tesseract.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "python -m models.tesseract: error: argument --charset: not allowed with argument "
        "--checkpoint"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_page_segmentation_mode_past_13_is_a_usage_error(tmp_path, capsys, monkeypatch):
    """Tesseract has modes 0 to 13 (the schema's bounds of tesseract.<task>.psm): --psm 14 ran
    Tesseract on every image to fail each."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        tesseract.main(["s.tar", "--out", "out", "--task", "expr", "--psm", "14"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m models.tesseract: error: argument --psm: must be at most 13 (Tesseract's "
        "modes), got 14"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_shard_given_twice_is_refused(tmp_path, latin_font, capsys):
    """Its samples were read and counted twice; ./s.tar is s.tar (the helper models.evaluate
    shares)."""
    shard = _expr_shard(tmp_path / "s-000000.tar", latin_font, [("1+1", 2)])
    out = tmp_path / "out"
    again = f"{tmp_path}/./{shard.name}"  # pathlib would drop the "."
    argv = [str(shard), again, "--task", "expr", "--no-whitelist", "--out", str(out)]
    assert tesseract.main(argv) == 1
    assert capsys.readouterr().err == (
        f"python -m models.tesseract: error: {again} is the same file as {shard}: give each "
        "shard once (its samples would be counted twice)\n"
    )
    assert not out.exists()
