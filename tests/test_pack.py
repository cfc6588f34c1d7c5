"""Packing a user's labelled images into shards: real image files of every kind, read back by
the evaluation and training pipelines; every bad line named at once, nothing written then."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEJAVU
from PIL import Image, ImageDraw, ImageFont

import models.pack as pack_module
from models.checkpoint import ModelMeta, save_model
from models.evaluate import iter_samples
from models.evaluate import main as evaluate_main
from models.export import export_onnx
from models.images import trim_to_ink
from models.pack import LabelCheck, PackError, label_check, main, pack, read_labels
from models.registry import build_model
from models.tesseract import main as tesseract_main
from models.train import main as train_main
from synth.shards import iter_records, read_manifest, sha256_file

LINE_KW = {"width": 0.125, "hidden": 16}


def shards_of(folder):
    return [str(p) for p in sorted(folder.glob("*.tar"))]


def _text_image(text: str, size=(120, 40), ink=0, paper=255, mode="L") -> Image.Image:
    img = Image.new("L", size, paper)
    ImageDraw.Draw(img).text((6, 6), text, fill=ink, font=ImageFont.truetype(str(DEJAVU), 24))
    return img.convert(mode)


@pytest.fixture
def own(tmp_path):
    """Six labelled images of as many kinds, two in a subfolder, and their labels file."""
    root = tmp_path / "own"
    (root / "scans").mkdir(parents=True)
    _text_image("0123").save(root / "gray.png")
    _text_image("12", mode="RGB").save(root / "photo.jpg", quality=95)
    rgba = _text_image("301", mode="RGBA")
    rgba.putalpha(255)
    rgba.save(root / "alpha.png")
    _text_image("2", mode="P").save(root / "palette.gif")
    # 16-bit, and white text on black
    deep = (np.asarray(_text_image("3210")).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "scans" / "deep.png")
    _text_image("10", ink=255, paper=0).save(root / "scans" / "night.png")
    # stored sideways: the EXIF orientation turns it upright
    sideways = _text_image("0").transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    sideways.save(root / "sideways.jpg", exif=exif, quality=95)
    labels = root / "labels.tsv"
    labels.write_text(
        "gray.png\t0123\nphoto.jpg\t12\n\nalpha.png\t301\npalette.gif\t2\n"
        "scans/deep.png\t3210\nscans/night.png\t10\nsideways.jpg\t0\n",
        encoding="utf-8",
    )
    return labels


def test_every_kind_of_image_is_packed_upright_gray_and_dark_on_light(own, tmp_path):
    out = tmp_path / "shards"
    paths = pack(own, out, split="real", samples_per_shard=3, height=32)
    assert [p.name for p in paths] == ["real-000000.tar", "real-000001.tar", "real-000002.tar"]
    samples = list(iter_samples(paths))
    assert [s.label for s in samples] == ["0123", "12", "301", "2", "3210", "10", "0"]
    assert [s.font for s in samples] == ["./", "./", "./", "./", "scans/", "scans/", "./"]
    assert [s.meta["source"] for s in samples][4] == "scans/deep.png"
    for s in samples:
        assert s.image.mode == "L" and s.image.height == 32, s.meta["source"]
        gray = np.asarray(s.image, dtype=float)
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        assert border.mean() > 200 and gray.min() < 100, s.meta["source"]  # dark ink, light page
    # The EXIF-rotated file comes out upright: wider than tall, as drawn.
    assert samples[-1].image.width > samples[-1].image.height
    rows = read_manifest(out / "real.manifest.tsv")
    assert [r["samples"] for r in rows] == [3, 3, 1]

    # The same labels and images give the same bytes.
    again = pack(own, tmp_path / "again", split="real", samples_per_shard=3, height=32)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]

    # Packed again with fewer shards: those left from the larger packing go.
    fewer = pack(own, out, split="real", samples_per_shard=10)
    assert (
        sorted(p.name for p in out.glob("real-*.tar"))
        == ["real-000000.tar"]
        == [p.name for p in fewer]
    )
    assert next(iter_samples(fewer)).image.height == 40  # no --height: its own size


def test_a_packing_stopped_half_way_leaves_the_last_finished_one(own, tmp_path, monkeypatch):
    """Ctrl-C (or a kill) while the shards are written leaves the folder as the last finished
    packing left it, its shards under its manifest: never new shards beside old ones, which
    `models.evaluate out/real-*.tar` would read as one set."""
    out = tmp_path / "shards"
    pack(own, out, split="real", samples_per_shard=3)
    finished = {p.name: p.read_bytes() for p in out.iterdir()}
    lines = [line for line in own.read_text(encoding="utf-8").splitlines() if line]
    other = own.parent / "other.tsv"
    other.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")

    real_load = pack_module.load_gray
    loads = []

    def load_then_interrupt(*args, **kwargs):
        loads.append(args[0])
        if len(loads) == len(lines) + 4:  # every image checked, then the second shard's first
            raise KeyboardInterrupt
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pack_module, "load_gray", load_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pack(other, out, split="real", samples_per_shard=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == finished

    # A kill leaves the unfinished shards in a hidden folder, which the next packing clears.
    (out / ".real.packing-killed").mkdir()
    (out / ".real.packing-killed" / "real-000000.tar").write_bytes(b"half")
    monkeypatch.setattr(pack_module, "load_gray", real_load)
    paths = pack(other, out, split="real", samples_per_shard=3)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths] + ["real.manifest.tsv"]
    assert [s.label for s in iter_samples(paths)] == [
        line.split("\t")[1] for line in reversed(lines)
    ]
    assert [r["sha256"] for r in read_manifest(out / "real.manifest.tsv")] == [
        sha256_file(p) for p in paths
    ]


def test_images_that_fill_whole_shards_fill_them_and_no_more(own, tmp_path, capsys):
    """Six images at --samples-per-shard 3 (through the command): two full shards, no empty
    third, and the manifest counts the six."""
    lines = [line for line in own.read_text(encoding="utf-8").splitlines() if line]
    six = own.parent / "six.tsv"
    six.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(six), str(out), "--split", "mine", "--samples-per-shard", "3"]) == 0
    capsys.readouterr()
    shards = shards_of(out)
    assert [Path(s).name for s in shards] == ["mine-000000.tar", "mine-000001.tar"]
    assert [len(list(iter_samples([s]))) for s in shards] == [3, 3]
    rows = read_manifest(out / "mine.manifest.tsv")
    assert [r["path"] for r in rows] == [Path(s).name for s in shards]
    assert sum(int(r["samples"]) for r in rows) == 6


def test_every_bad_line_is_named_and_nothing_is_written(own, tmp_path):
    root = own.parent
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "empty.jpg").write_bytes(b"")
    own.write_text(
        own.read_text(encoding="utf-8")
        + "no tab here\n"
        + "gray.png\t\n"
        + "missing.png\t01\n"
        + "broken.png\t01\n"
        + "empty.jpg\t01\n"
        + "gray.png\t01x\n"
        + "gray.png\t01230\n",
        encoding="utf-8",
    )
    out = tmp_path / "shards"
    with pytest.raises(PackError) as e:
        pack(own, out, check=LabelCheck(frozenset("0123"), longest=4))
    msg = str(e.value)
    assert "7 line(s) cannot be packed; nothing was written" in msg
    numbers = [int(m) for m in re.findall(r"labels\.tsv:(\d+): ", msg)]
    assert numbers == sorted(numbers) == list(range(9, 16))  # in line order, whatever the check
    for line, why in [
        (9, "no tab between the image's path and its text"),
        (10, "gray.png: empty label"),
        (11, "missing.png: no such file"),
        (12, "broken.png: corrupt image"),
        (13, "empty.jpg: empty file"),
        (14, "label '01x' has 'x' (U+0078), not in the charset"),
        (15, "label '01230' has 5 characters; the model reads 4"),
    ]:
        assert f"labels.tsv:{line}: " in msg and why in msg, (line, why)
    assert not out.exists() or not list(out.iterdir())
    assert "header row" not in msg  # line 11's missing.png: no word of a header
    # a header row ("path<TAB>text"): the first line names no image file, and is said to be one
    own.write_text("path\ttext\ngray.png\t0123\n", encoding="utf-8")
    with pytest.raises(PackError) as e:
        pack(own, out)
    assert "labels.tsv:1: " in str(e.value) and "(a header row? a labels file has none)" in str(
        e.value
    )


def test_labels_are_nfkc_and_an_unreadable_labels_file_is_named(tmp_path, caplog):
    labels = tmp_path / "labels.tsv"
    # full-width digits; Windows line ends; a label holding a line separator of Unicode's own
    labels.write_bytes("a.png\t\uff11\uff12\r\nb.png\ta\u2028b\r\n".encode())
    with caplog.at_level("WARNING"):
        entries, problems = read_labels(labels)
    # the line separator is whitespace in a label, and reads as a space
    assert [e.text for e in entries] == ["12", "a b"] and not problems
    assert [e.line for e in entries] == [1, 2]
    # what NFKC changed is said, naming the lines: the image shows the full-width digits
    assert caplog.messages[0] == (
        f"{labels}: 1 label(s) read in their NFKC form, as charsets are (lines 1): "
        "'１' (U+FF11) as '1', '２' (U+FF12) as '2'"
    )
    # Spaces as every line label and Tesseract reading holds them: one between words, none at
    # either end or beside a hanzi (a model never reads them; such a label was always a miss).
    caplog.clear()
    labels.write_text(
        "a.png\t使用 Python 编程\nb.png\ttwo  spaces here\nc.png\t lead\nd.png\tkept as is\n",
        encoding="utf-8",
    )
    with caplog.at_level("WARNING"):
        entries, problems = read_labels(labels)
    assert not problems
    assert [e.text for e in entries] == ["使用Python编程", "two spaces here", "lead", "kept as is"]
    assert caplog.messages == [
        f"{labels}: 3 label(s) read with their spaces as every line label and Tesseract "
        "reading holds them (a run of whitespace one space, none at either end or next to a "
        "hanzi or other wide character), which no reading could otherwise match (lines 1, 2, 3)"
    ]
    labels.write_bytes(b"a.png\t\xff\xfe\n")
    with pytest.raises(PackError, match=r"labels\.tsv:1: not UTF-8"):
        read_labels(labels)
    with pytest.raises(PackError, match=r"nothing\.tsv: cannot be read"):
        read_labels(tmp_path / "nothing.tsv")


def test_an_expression_without_a_value_is_refused_and_values_are_recorded(tmp_path):
    root = tmp_path / "own"
    root.mkdir()
    _text_image("1/0").save(root / "a.png")
    _text_image("(1+2)*3").save(root / "b.png")
    check = LabelCheck(frozenset("0123456789+-*/()"), task="expr")
    labels = root / "labels.tsv"
    labels.write_text("a.png\t1/0\nb.png\t(1+2)*3\n", encoding="utf-8")
    with pytest.raises(PackError, match=r"labels\.tsv:1: a\.png: label '1/0': .*zero"):
        pack(labels, tmp_path / "out", check=check)
    labels.write_text("b.png\t(1+2)*3\n", encoding="utf-8")
    (path,) = pack(labels, tmp_path / "out", check=check)
    (record,) = iter_records(path)
    assert json.loads(record["json"])["value"] == 9


def test_an_expression_beyond_the_parsers_limits_is_a_named_line(tmp_path):
    root = tmp_path / "own"
    root.mkdir()
    _text_image("1").save(root / "a.png")
    check = LabelCheck(frozenset("0123456789+-*/()"), task="expr")
    labels = root / "labels.tsv"
    deep, long = "(" * 400 + "1" + ")" * 400, "9" * 5000
    labels.write_text(f"a.png\t1\na.png\t{deep}\na.png\t{long}\n", encoding="utf-8")
    with pytest.raises(PackError) as e:
        pack(labels, tmp_path / "out", check=check)
    message = str(e.value)
    assert re.search(r"labels\.tsv:2: a\.png: label .*nested more than 100 deep", message)
    assert re.search(r"labels\.tsv:3: a\.png: label .*a number of more than 1000 digits", message)


def test_evaluate_and_fine_tune_a_model_on_packed_images(own, tmp_path, capsys):
    torch.manual_seed(0)
    charset = list("0123")
    model = build_model("crnn_vgg", len(charset), **LINE_KW)
    checkpoint = tmp_path / "base" / "model.pt"
    checkpoint.parent.mkdir()
    meta = ModelMeta("crnn_vgg", LINE_KW, charset, "line", train={"steps": 1}, step=1)
    save_model(checkpoint, model, meta)

    # The command: labels checked against the checkpoint, shard paths printed.
    out = tmp_path / "shards"
    assert main([str(own), str(out), "--split", "real", "--checkpoint", str(checkpoint)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "real-000000.tar")]

    assert (
        evaluate_main(
            [str(checkpoint), str(out / "real-000000.tar"), "--out", str(tmp_path / "ev")]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 7 and metrics["split"] == "real"
    assert {k: v["n"] for k, v in metrics["per_font"].items()} == {"./": 5, "scans/": 2}
    assert "per_font_file" not in metrics  # the user's images come from no font file

    # Tesseract on the same images, with the settings the workflow gives the model's task.
    assert (
        tesseract_main(
            [*shards_of(out), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "tess")]
        )
        == 0
    )
    tess = json.loads((tmp_path / "tess" / "metrics.json").read_text())
    assert tess["n"] == 7 and tess["split"] == "real" and tess["lang"] == "chi_sim"
    assert {k: v["n"] for k, v in tess["per_font"].items()} == {"./": 5, "scans/": 2}
    assert tess["seq_acc"] > 0.5  # clean printed digits: Tesseract reads them (7 of 7 here)

    # Fine-tuned on them from the checkpoint, as the README says: a JSON spec and --init-from
    # (train and validation shards alike here, for the test).
    charset_file = tmp_path / "charset.txt"
    charset_file.write_text("\n".join(charset) + "\n", encoding="utf-8")
    shards = [str(out / "real-000000.tar")]
    spec = {
        "experiment": "line_own",
        "task": "line",
        "model": "crnn_vgg",
        "model_kwargs": LINE_KW,
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "val_every": 2, "num_workers": 0},
        "seed": 1,
        "device": "cpu",
        "charset": str(charset_file),
        "train_shards": shards,
        "val_shards": shards,
        "out_dir": str(tmp_path / "tuned"),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    train_main(["--spec", f"@{tmp_path / 'spec.json'}", "--init-from", str(checkpoint)])
    info = json.loads((tmp_path / "tuned" / "train.json").read_text())
    assert info["steps"] == 2
    assert info["init_from"]["classes_kept"] == 4 and info["init_from"]["path"] == str(checkpoint)

    # A label packed unchecked that the model cannot encode stops training in one line, naming
    # the image it came from.
    spaced = own.parent / "spaced.tsv"
    spaced.write_text("gray.png\t015\n", encoding="utf-8")  # '5' is not in the charset
    spec["train_shards"] = spec["val_shards"] = [str(pack(spaced, tmp_path / "sp")[0])]
    spec["out_dir"] = str(tmp_path / "spaced")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as e:
        train_main(["--spec", f"@{tmp_path / 'spec.json'}"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "(image gray.png): label '015': character '5' (U+0035) is not in the charset" in err
    assert "Traceback" not in err


def test_the_command_lists_the_problems_and_fails(own, tmp_path, capsys):
    shutil.copy(own, tmp_path / "copy.tsv")  # its images are not beside this copy
    assert main([str(tmp_path / "copy.tsv"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "copy.tsv: 7 line(s) cannot be packed" in err
    assert f"copy.tsv:1: {tmp_path / 'gray.png'}: no such file" in err  # where it was looked for
    assert main([str(own), str(tmp_path / "out"), "--split", "bad.name"]) == 1
    assert "split 'bad.name'" in capsys.readouterr().err
    # An output under a file: named before any image is read ("[Errno 20] Not a directory")
    assert main([str(own), str(own / "out")]) == 1
    assert capsys.readouterr().err == (
        f"python -m models.pack: error: {own / 'out'}: cannot be written: {own} is not a folder\n"
    )
    # Tesseract's command names what it lacks.
    assert tesseract_main([str(own), "--task", "expr", "--out", str(tmp_path / "t")]) == 1
    assert "give --charset or --checkpoint, or --no-whitelist" in capsys.readouterr().err
    gone = str(tmp_path / "gone-000000.tar")
    assert tesseract_main([gone, "--task", "line", "--out", str(tmp_path / "t")]) == 1
    assert f"no such shard: {gone}" in capsys.readouterr().err
    assert tesseract_main([str(tmp_path), "--task", "line", "--out", str(tmp_path / "t")]) == 1
    assert f"{tmp_path} is a folder: shards are .tar files" in capsys.readouterr().err
    # With a checkpoint, shards of another task are refused, not scored as misreadings.
    hanzi = tmp_path / "hanzi.pt"
    save_model(
        hanzi,
        build_model("hanzi_cnn", 2, width=0.125),
        ModelMeta("hanzi_cnn", {"width": 0.125}, list("一二"), "hanzi", train={}, step=1),
    )
    shard = pack(own, tmp_path / "digits")[0]
    assert (
        tesseract_main([str(shard), "--checkpoint", str(hanzi), "--out", str(tmp_path / "t")]) == 1
    )
    err = capsys.readouterr().err
    assert "sample 'own_test_own_000000_000000' (image gray.png): label '0123' has '0'" in err
    # ... and so are labels longer than the model reads, by Tesseract's command and evaluation.
    (own.parent / "two.tsv").write_text("gray.png\t一二\n", encoding="utf-8")
    shard = str(pack(own.parent / "two.tsv", tmp_path / "two")[0])
    out = str(tmp_path / "t")
    assert tesseract_main([shard, "--checkpoint", str(hanzi), "--out", out]) == 1
    assert "label '一二' has 2 characters; the model reads 1" in capsys.readouterr().err
    assert evaluate_main([str(hanzi), shard, "--out", out]) == 1
    assert "label '一二' has 2 characters; the model reads 1" in capsys.readouterr().err
    # the model's .onnx export is read for its task and charset as its checkpoint is
    exported = str(export_onnx(hanzi, tmp_path / "hanzi.onnx"))
    assert tesseract_main([shard, "--checkpoint", exported, "--out", out]) == 1
    assert "label '一二' has 2 characters; the model reads 1" in capsys.readouterr().err
    (tmp_path / "bad.onnx").write_bytes(b"no")
    assert tesseract_main([shard, "--checkpoint", str(tmp_path / "bad.onnx"), "--out", out]) == 1
    err = capsys.readouterr().err
    assert "bad.onnx: not a readable ONNX file" in err and "Traceback" not in err


def test_an_image_too_narrow_for_its_label_under_ctc_is_refused(tmp_path, caplog):
    root = tmp_path / "own"
    root.mkdir()
    _text_image("12", size=(60, 40)).save(root / "narrow.png")  # 48 px wide at height 32
    _text_image("12", size=(200, 40)).save(root / "wide.png")
    labels = root / "labels.tsv"
    labels.write_text(
        "wide.png\t1+2*3-4+5*6-7+8\nnarrow.png\t1+2*3-4+5*6-7+8\nwide.png\t 12\n",
        encoding="utf-8",
    )
    checkpoint = tmp_path / "expr.pt"
    kwargs = {"width": 0.25, "input_height": 32}
    charset = list("0123456789+-*()")
    save_model(
        checkpoint,
        build_model("expr_crnn", len(charset), **kwargs),
        ModelMeta("expr_crnn", kwargs, charset, "expr", train={}, step=1),
    )
    check = label_check(str(checkpoint), None)
    assert check.frames(60, 40) == 48 // 4 - 2 and check.frames(200, 40) == 160 // 4 - 2
    # an .onnx export of it checks the labels as its checkpoint does (its metadata's charset,
    # task and frame rule); a file that is no export is named
    exported = export_onnx(checkpoint, tmp_path / "expr.onnx")
    from_export = label_check(str(exported), None)
    assert (from_export.charset, from_export.longest, from_export.task) == (
        check.charset,
        check.longest,
        check.task,
    )
    assert from_export.frames(60, 40) == check.frames(60, 40)
    (tmp_path / "bad.onnx").write_bytes(b"no")
    with pytest.raises(ValueError, match=r"bad\.onnx: not a readable ONNX file"):
        label_check(str(tmp_path / "bad.onnx"), None)
    # 15 characters need 15 frames (no repeats): the 160 px image gives 38, the 48 px one 10
    with pytest.raises(PackError) as e:
        pack(labels, tmp_path / "out", check=check)
    # line 3's ' 12' is read as '12' (no label starts with a space), with a warning
    assert "1 line(s) cannot be packed" in str(e.value)
    assert "labels.tsv:2: narrow.png: label '1+2*3-4+5*6-7+8' needs 15 CTC frames" in str(e.value)
    assert "60x40 px image gives the model 10" in str(e.value)
    assert "which no reading could otherwise match (lines 3)" in caplog.text
    with pytest.raises(ValueError, match=r"labels\.tsv is a file: give a folder"):
        pack(labels, labels, check=check)


def test_a_strip_over_the_aspect_limit_is_packed_with_the_option_its_error_names(tmp_path, capsys):
    """A long line over 200:1 was refused with 'raise max_aspect: --max-aspect', an option
    models.recognize has and the packing command had not: such lines could not be packed at
    all. The command takes it, as recognition does (0: no limit)."""
    root = tmp_path / "own"
    root.mkdir()
    _text_image("1" * 60, size=(8100, 40)).save(root / "long.png")  # 202.5:1
    labels = root / "labels.tsv"
    labels.write_text("long.png\t" + "1" * 60 + "\n", encoding="utf-8")
    assert main([str(labels), str(tmp_path / "out")]) == 1
    assert "one side is over 200 times the other" in capsys.readouterr().err
    assert main([str(labels), str(tmp_path / "out"), "--max-aspect", "250"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "out" / "test_own-000000.tar")]
    assert main([str(labels), str(tmp_path / "zero"), "--max-aspect", "0"]) == 0


def test_an_image_far_longer_than_its_label_is_not_packed_whatever_max_aspect(tmp_path, capsys):
    # A 100000 x 1 px image labelled "12" with --max-aspect 0 was scaled to --height 32: 3.2
    # million px wide, and training on it would fill memory. Refused, as training refuses it.
    root = tmp_path / "own"
    root.mkdir()
    Image.new("L", (100_000, 1), 255).save(root / "thread.png")
    _text_image("12").save(root / "fine.png")
    labels = root / "labels.tsv"
    labels.write_text("fine.png\t12\nthread.png\t12\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(labels), str(out), "--max-aspect", "0", "--height", "32"]) == 1
    err = capsys.readouterr().err
    assert f"labels.tsv:2: {root / 'thread.png'}: its image is 100000x1 px, longer than a" in err
    assert "labels.tsv:1" not in err and not list(out.glob("*.tar"))


def test_trim_packs_a_loose_crop_as_the_tight_one_and_not_for_the_reader(tmp_path):
    # Scored as `models.recognize --trim` reads them: both crops of one line are one image.
    root = tmp_path / "own"
    root.mkdir()
    loose = Image.new("L", (300, 200), 255)
    loose.paste(_text_image("12+3", size=(80, 34)), (100, 80))
    tight = trim_to_ink(loose)  # framed as the training lines: packed as it is
    tight.save(root / "tight.png")
    loose.save(root / "loose.png")
    labels = root / "labels.tsv"
    labels.write_text("tight.png\t12+3\nloose.png\t12+3\n", encoding="utf-8")
    (shard,) = pack(labels, tmp_path / "out", trim=True)
    first, second = (s.image for s in iter_samples([shard]))
    assert np.array_equal(np.asarray(first), np.asarray(tight))
    assert np.array_equal(np.asarray(second), np.asarray(tight))
    (shard,) = pack(labels, tmp_path / "as_is")
    assert [s.image.size for s in iter_samples([shard])] == [tight.size, (300, 200)]
    with pytest.raises(ValueError, match="trim frames a line of text or a hanzi, and a short"):
        pack(labels, tmp_path / "short", check=LabelCheck(frozenset("123+"), task="short"),
             trim=True)  # fmt: skip
