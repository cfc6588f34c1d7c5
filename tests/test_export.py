"""ONNX export: every registered model runs in onnxruntime with the same logits and the same
decoded text as in PyTorch (batch 2, two widths for line models); the file describes itself."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from fractions import Fraction
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from conftest import exact_halves, model_task
from PIL import Image, ImageDraw, ImageFont

from models.checkpoint import CheckpointError, ModelMeta, load_model, save_model
from models.export import (
    META_KEY,
    OPSET,
    ExportError,
    OnnxModel,
    check_parity,
    example_batch,
    export_onnx,
    frame_rule,
    main,
    onnx_metadata,
    read_onnx_meta,
)
from models.families import ctc_greedy_decode, make_family
from models.predict import batches
from models.preprocess import bucket_width, min_width, pad_batch, prepare_image, to_tensor_batch
from models.recognize import load_recognizer
from models.recognize import main as recognize_main
from models.registry import FIXED_WIDTH_TASKS, MODELS, build_model, family_of, output_length

# Small enough to export in a second or two: each model's small instance (its entry's ``tiny``),
# its task (expr_crnn's own; a task of its family for the others) and characters the tests' CJK
# font draws.
CHARS = {
    "hanzi": "一二三四五六七八九十",
    "expr": "0123456789+-*()",
    "line": "中文识别字体一二三0123",
    "short": "0123456789ABC",
}
TINY = {
    name: (dict(e.tiny), model_task(name), CHARS[model_task(name)]) for name, e in MODELS.items()
}


class Payload:
    """A custom class: pickling it puts a code reference into the file."""


def tiny_checkpoint(path, name: str, seed: int = 0, reads: bool = False):
    """An untrained tiny ``name`` saved as a real checkpoint; returns its `ModelMeta`.

    ``reads``: its weights times 3, so that it reads several characters (an untrained tiny
    model reads one class everywhere; with seed 1 a line model also reads characters in the
    padding, as the trained smoke models do)."""
    kwargs, task, chars = TINY[name]
    torch.manual_seed(seed)
    model = build_model(name, len(chars), **kwargs)
    if reads:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3)
    meta = ModelMeta(name, kwargs, list(chars), task, train={"steps": 0}, step=0)
    save_model(path, model, meta)
    return meta


def _images(meta: ModelMeta, font_path) -> list[Image.Image]:
    """Two rendered images: for line models of clearly different widths."""
    font = ImageFont.truetype(str(font_path), 24)
    texts = [meta.charset[0] * 2, "".join(meta.charset[:4]) * 2]
    out = []
    for text in texts:
        width = 12 + int(font.getlength(text))
        im = Image.new("L", (width, 36), 240)
        ImageDraw.Draw(im).text((6, 4), text, font=font, fill=15)
        out.append(im)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (checkpoint, onnx file), each registered model exported once."""
    folder = tmp_path_factory.mktemp("export")
    out = {}
    for name in MODELS:
        ckpt = folder / f"{name}.pt"
        tiny_checkpoint(ckpt, name)
        try:
            # check=False: the parity test below runs the same check, and more
            out[name] = (ckpt, export_onnx(ckpt, folder / name / "model.onnx", check=False))
        except Exception as e:  # every test of the module depends on this: name the model
            raise AssertionError(f"model {name!r} does not export to ONNX: {e}") from e
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_matches_pytorch(exported, name, cjk_font):
    ckpt, onnx_path = exported[name]
    model, meta = load_model(ckpt)
    ort_model = OnnxModel(onnx_path)
    family = make_family(meta.model, meta.charset, meta.model_kwargs)
    images = _images(meta, cjk_font)
    # Batch 2 (the traced size), then batch 3; for line models the widths differ within a
    # batch (the narrower images are padded) and between the two batches.
    wide = images[1].resize((images[1].width * 3 // 2, 36))
    batches = [images, [images[1], wide, images[0]]]
    seen_widths = set()
    for batch in batches:
        x, widths = to_tensor_batch(batch, meta.input)
        seen_widths.add(x.shape[-1])
        with torch.inference_mode():
            expected = model(x)
        got = ort_model(x)
        attention = family.kind == "attention"  # (logits, masks)
        e_logits, g_logits = (expected[0], got[0]) if attention else (expected, got)
        assert e_logits.shape == g_logits.shape
        assert float((e_logits - g_logits).abs().max()) < 1e-4
        if attention:
            assert float((expected[1] - got[1]).abs().max()) < 1e-4  # masks
        e_pred = family.decode(expected, widths, k=3)
        g_pred = family.decode(got, widths, k=3)
        assert [p.text for p in g_pred] == [p.text for p in e_pred]
        # relative only (abs=0 alone would ask for equality: pytest then drops rel); two
        # engines' float32 sums differ in the last bits (the reader's 3.0e-6 by 2.4e-7 of it)
        assert [p.confidence for p in g_pred] == pytest.approx(
            [p.confidence for p in e_pred], rel=1e-4, abs=0
        )
    if meta.input["kind"] == "line":
        assert len(seen_widths) == 2
    # the export's own check, at the widths it picks
    assert check_parity(model, meta, onnx_path) < 1e-4


def test_no_path_of_the_training_machine_ships_in_the_metadata():
    meta = ModelMeta("expr_crnn", {}, list("0123"), "expr", train={"init_from": "/home/me/x.pt"})
    info = onnx_metadata(meta)
    assert info["meta"]["train"]["init_from"] == "x.pt"
    assert meta.train["init_from"] == "/home/me/x.pt"  # the checkpoint's own meta is kept


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_file_describes_itself(exported, name):
    ckpt, onnx_path = exported[name]
    _, meta = load_model(ckpt)
    info = read_onnx_meta(onnx_path)
    assert ModelMeta.from_dict(info["meta"]) == meta
    assert info["meta"]["charset"] == list(TINY[name][2])
    assert info["class_offset"] == (0 if family_of(name) == "classification" else 1)
    proto = onnx.load(str(onnx_path))
    raw = {p.key: p.value for p in proto.metadata_props}[META_KEY]
    assert json.loads(raw) == info
    # the producer is synthocr at its own version, not at torch's (which the exporter writes)
    assert (proto.producer_name, proto.producer_version) == (
        "synthocr",
        metadata.version("synthocr"),
    )
    assert [i.name for i in proto.graph.input] == ["image"]
    outputs = [o.name for o in proto.graph.output]
    attention = family_of(name) == "attention"
    assert outputs == ["logits", "log_probs", *(["masks"] if attention else [])]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    line = meta.input["kind"] == "line"
    assert dims[0] == "batch"
    assert isinstance(dims[3], str) if line else dims[2:] == [meta.input["size"]] * 2
    # log_probs are normalised: each row sums to one in probability
    x = np.zeros((3, 1, dims[2], 50 if line else dims[3]), np.float32)
    logits, log_probs = OnnxModel(onnx_path).run(x)[:2]
    assert np.allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    assert logits.shape == log_probs.shape


def test_recognizer_on_onnx_reads_like_pytorch(exported, cjk_font):
    ckpt, onnx_path = exported["crnn_vgg"]
    torch_rec = load_recognizer(ckpt, device="cpu")
    onnx_rec = load_recognizer(onnx_path)
    images = _images(torch_rec.meta, cjk_font) * 3
    a, b = torch_rec(images), onnx_rec(images)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.confidence for p in a] == pytest.approx([p.confidence for p in b], rel=1e-4, abs=0)


def test_the_installed_command_names_itself_in_its_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/synthocr-export", "--help"])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: synthocr-export ")
    monkeypatch.setattr(sys, "argv", ["/repo/models/export.py"])  # python -m models.export
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m models.export ")


def test_cli_writes_atomically_and_refuses_untrusted(tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "hanzi_cnn")
    out = tmp_path / "out" / "hanzi.onnx"
    assert main([str(ckpt), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["hanzi.onnx"]  # no temporary left
    evil = tmp_path / "evil.pt"
    torch.save({"format": "synthocr-checkpoint", "version": 1, "x": Payload()}, evil)
    bad_out = tmp_path / "out" / "evil.onnx"
    assert main([str(evil), str(bad_out)]) == 1
    err = capsys.readouterr().err
    assert "evil.pt" in err and "pickled code" in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["hanzi.onnx"]


def test_a_path_of_other_bytes_than_utf8_is_exported_to_and_read(tmp_path, capsysbinary, cjk_font):
    """A Linux path is any bytes (Python gives them as surrogates): torch's exporter and
    onnxruntime take UTF-8 alone, and the export failed in a traceback printing the weights."""
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "crnn_vgg")
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/\xff"))  # a folder of such a name too
    out = folder / os.fsdecode(b"x\xff.onnx")
    assert main([str(ckpt), str(out)]) == 0  # with the parity check, which reads it back
    assert capsysbinary.readouterr().out == os.fsencode(out) + b"\n"  # its own bytes
    assert os.listdir(bytes(folder)) == [b"x\xff.onnx"]  # no temporary left
    torch_rec, onnx_rec = load_recognizer(ckpt, device="cpu"), load_recognizer(out)
    images = _images(torch_rec.meta, cjk_font)
    assert [p.text for p in onnx_rec(images)] == [p.text for p in torch_rec(images)]


def test_the_parity_check_runs_unless_no_check_is_given(tmp_path, capsys, monkeypatch):
    """The export is read back by onnxruntime and compared with PyTorch on the same images;
    --no-check leaves that out (and a failing check writes nothing)."""
    import models.export as export_module

    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "hanzi_cnn")
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise ExportError("parity: logits differ by 1.0")

    monkeypatch.setattr(export_module, "check_parity", failing)
    out = tmp_path / "checked.onnx"
    assert main([str(ckpt), str(out)]) == 1 and len(calls) == 1
    assert "parity: logits differ by 1.0" in capsys.readouterr().err and not out.exists()
    unchecked = tmp_path / "unchecked.onnx"
    assert main([str(ckpt), str(unchecked), "--no-check"]) == 0 and len(calls) == 1
    assert read_onnx_meta(unchecked)["meta"]["model"] == "hanzi_cnn"


@pytest.mark.filterwarnings("ignore:You are using the legacy:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_not_an_export_is_named(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ExportError, match=r"bogus\.onnx: not a readable ONNX file") as e:
        read_onnx_meta(bogus)
    assert "PyTorch" not in str(e.value)
    # an empty file, which protobuf reads as an empty model: it said "no 'synthocr' entry"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ExportError) as e:
        read_onnx_meta(empty)
    assert str(e.value) == f"{empty}: empty file (0 bytes): not an ONNX model"
    # a checkpoint renamed .onnx is said to be one (onnx says only that its wire format is bad)
    renamed = tmp_path / "model.onnx"
    torch.save({"weights": torch.zeros(3)}, renamed)
    with pytest.raises(ExportError) as e:
        read_onnx_meta(renamed)
    assert str(e.value).startswith(f"{renamed}: not a readable ONNX file: ")
    assert str(e.value).endswith(
        "(it is a zip archive, as a PyTorch checkpoint is: name it .pt, or export it with "
        "models.export)"
    )
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Identity(), (torch.zeros(1),), str(plain), dynamo=False)
    with pytest.raises(ExportError, match=r"plain\.onnx: no 'synthocr' entry"):
        read_onnx_meta(plain)


def test_export_never_writes_over_its_checkpoint_or_a_non_onnx_path(tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "hanzi_cnn")
    before = ckpt.read_bytes()
    for out in (ckpt, tmp_path / "model.bin"):
        assert main([str(ckpt), str(out)]) == 1
        assert str(out) in capsys.readouterr().err
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    # Refused before the export runs, in one line each
    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    cases = {
        (str(tmp_path / "dir.onnx"),): "is a folder",
        (str(tmp_path / "file" / "x.onnx"),): r"x\.onnx: cannot be written: .*file is not a folder",
        (str(tmp_path / "a.onnx"), "--opset", "99"): r"opset 99 is not one this exporter writes",
    }
    for args, error in cases.items():
        assert main([str(ckpt), *args]) == 1
        err = capsys.readouterr().err
        assert re.search(error, err) and len(err.strip().splitlines()) == 1, err


def test_parity_is_held_to_the_outputs_scale_and_catches_a_wrong_graph(tmp_path):
    # a model whose logits run to thousands (a trained line model's reach 50): the two
    # runtimes' float32 sums may differ past 1e-4 there, and the export still passes
    ckpt = tmp_path / "model.pt"
    meta = tiny_checkpoint(ckpt, "crnn_vgg", seed=1)
    model, _ = load_model(ckpt)
    with torch.no_grad():
        model.classifier.weight.mul_(2000)
    save_model(ckpt, model, meta)
    out = export_onnx(ckpt, tmp_path / "big.onnx")
    x = example_batch(meta.input, batch=3, width=96, seed=1)
    with torch.inference_mode():
        scale = float(model(x).abs().max())
    assert scale > 100
    assert check_parity(model, meta, out) <= 1e-4 * scale
    # a graph of other weights (one class's bias moved by 1e-3 of that scale) is caught
    with torch.no_grad():
        model.classifier.bias[1] += 1e-3 * scale
    with pytest.raises(ExportError, match=r"big\.onnx: output logits differs from PyTorch by"):
        check_parity(model, meta, out)


def test_a_checkpoint_with_non_finite_weights_is_refused_and_parity_catches_nan(tmp_path):
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "expr_crnn")
    good = export_onnx(ckpt, tmp_path / "good.onnx")
    model, meta = load_model(ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    # The parity check is the second line: a NaN model against a sound export.
    with pytest.raises(ExportError, match="not finite"):
        check_parity(model, meta, good)
    save_model(ckpt, model, meta)
    # The first: loading refuses the checkpoint, naming the weight (recognize does the same).
    with pytest.raises(CheckpointError, match=r"model.pt: weight \S+ holds NaN or infinite"):
        export_onnx(ckpt, tmp_path / "nan.onnx")
    assert not (tmp_path / "nan.onnx").exists()
    with pytest.raises(CheckpointError, match="holds NaN"):
        load_recognizer(ckpt, device="cpu")


def test_an_export_whose_metadata_does_not_describe_its_graph_is_refused(tmp_path):
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "expr_crnn")
    good = export_onnx(ckpt, tmp_path / "good.onnx")

    def tampered(name, edit):
        proto = onnx.load(str(good))
        entry = next(p for p in proto.metadata_props if p.key == META_KEY)
        entry.value = edit(json.loads(entry.value))
        onnx.save(proto, str(tmp_path / name))
        return tmp_path / name

    def shorter(info):
        info["meta"]["charset"] = info["meta"]["charset"][:-1]
        return json.dumps(info)

    def taller(info):
        info["meta"]["input"]["height"] += 4
        info["meta"]["model_kwargs"]["input_height"] = info["meta"]["input"]["height"]
        return json.dumps(info)

    for path, error in [
        (tampered("text.onnx", lambda info: "{oops"), "metadata is not JSON"),
        (tampered("empty.onnx", lambda info: "{}"), "has no 'meta' object"),
        (tampered("short.onnx", shorter), "output classes, its metadata's charset gives"),
        (tampered("tall.onnx", taller), "px height, its metadata says"),
    ]:
        with pytest.raises(ExportError, match=rf"{path.name}: .*{error}"):
            load_recognizer(path)


def test_a_file_onnxruntime_cannot_load_is_named_with_its_opset(tmp_path, capsys, cjk_font):
    """A file stamped for a newer onnxruntime (a higher IR version or opset than the installed
    one takes, as on a deployment machine with an older runtime) is an error line naming the
    file, its stamp and the runtime's version: onnxruntime's errors derive from ``Exception``
    alone, and the command printed a traceback."""
    import onnxruntime as ort

    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "crnn_vgg")
    good = export_onnx(ckpt, tmp_path / "good.onnx", check=False)
    image = tmp_path / "line.png"
    _images(load_model(ckpt)[1], cjk_font)[0].save(image)
    for name, field, value in [("ir.onnx", "ir", 99), ("opset.onnx", "opset", 99)]:
        proto = onnx.load(str(good))
        if field == "ir":
            proto.ir_version = value
        else:
            proto.opset_import[0].version = value
        path = tmp_path / name
        onnx.save(proto, str(path))
        stamp = f"(IR version 99, opset {OPSET})" if field == "ir" else ", opset 99)"
        with pytest.raises(ExportError, match=rf"{name}: onnxruntime {ort.__version__} cannot"):
            load_recognizer(path)
        assert recognize_main([str(path), str(image)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: onnxruntime {ort.__version__} cannot load it (")
        assert stamp in err and "Traceback" not in err
        assert "--opset" in err and "onnxruntime_src" not in err


def onnx_standalone_block(repo_root) -> str:
    """The README's Python block that reads a line with onnxruntime alone."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    marker = "<!-- onnx-standalone: tests/test_export.py runs this block -->\n```python\n"
    return readme[readme.index(marker) + len(marker) :].split("```", 1)[0]


def _greedy(best: np.ndarray, charset: list[str]) -> str:
    """Greedy CTC over class indices (repeats merged, blanks dropped)."""
    return "".join(
        charset[c - 1] for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1])
    )


@pytest.mark.parametrize("name", ["crnn_vgg", "expr_crnn"])
def test_the_readme_reads_a_line_export_without_synthocr(tmp_path, cjk_font, repo_root, name):
    """The README's standalone onnxruntime block, run as a user would, reads as recognize does,
    on lines whose padded width gives frames past the line's own, which it must not decode."""
    block = onnx_standalone_block(repo_root)
    meta = tiny_checkpoint(tmp_path / "model.pt", name, seed=1, reads=True)
    kwargs, chars = meta.model_kwargs, meta.charset
    export_onnx(tmp_path / "model.pt", tmp_path / "line.onnx", check=False)
    recognizer = load_recognizer(tmp_path / "line.onnx", polarity="dark-on-light")
    font = ImageFont.truetype(str(cjk_font), 30)
    texts, padding_read = [], []
    # 40 px high, scaled to the model's height; no width is a multiple of the padding step
    for text, width in ((chars[0] + chars[3] + chars[6], 390), ("".join(chars[:8]), 545)):
        im = Image.new("L", (width, 40), 235)
        ImageDraw.Draw(im).text((4, 3), text, font=font, fill=20)
        im.save(tmp_path / "line.png")
        proc = subprocess.run(
            [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        [ours] = recognizer([im])
        assert proc.stdout == ours.text + "\n"
        texts.append(ours.text)
        # the image has padding frames, and decoding them too would read otherwise
        line = prepare_image(im, meta.input)
        x, [scaled] = pad_batch([line], meta.input, bucket_width(line.shape[1], meta.input))
        [every_frame] = recognizer.model.run(x.numpy())[0].argmax(-1).T
        assert len(every_frame) > output_length(name, int(scaled), **kwargs)
        padding_read.append(_greedy(every_frame, meta.charset) != ours.text)
    assert any(texts)  # the model emits characters, so the decoding is compared too
    assert any(padding_read)


@pytest.mark.parametrize("name", ["hanzi_cnn", "reader"])
def test_the_readme_reads_a_square_export_without_synthocr(tmp_path, cjk_font, repo_root, name):
    """The README's standalone block for the square models, run as a user would, reads as
    recognize does (the classifier's three likeliest, with their probabilities), on images of
    other sizes and shapes than the square, one with a side that scales to an exact half."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    marker = "<!-- onnx-standalone-square: tests/test_export.py runs this block -->\n```python\n"
    block = readme[readme.index(marker) + len(marker) :].split("```", 1)[0]
    # the classifier untrained, so that its probabilities are not 1 and 0 (ranked apart)
    meta = tiny_checkpoint(tmp_path / "model.pt", name, seed=1, reads=name == "reader")
    export_onnx(tmp_path / "model.pt", tmp_path / "square.onnx", check=False)
    recognizer = load_recognizer(tmp_path / "square.onnx", polarity="dark-on-light", top_k=3)
    size, chars = meta.input["size"], meta.charset
    font = ImageFont.truetype(str(cjk_font), size // 2)
    [tie] = exact_halves(size, 1)
    texts = []
    for i, (w, h) in enumerate([(size, size), (3 * size // 2, size), (size // 2, 2 * size), tie]):
        im = Image.new("L", (w, h), 230)
        ImageDraw.Draw(im).text((2, 2), chars[i] + chars[-i], font=font, fill=25)
        im.save(tmp_path / "char.png")
        # the block's input to the graph, kept to be compared bit for bit
        kept = block + "\nnp.save('x.npy', x)\n"
        proc = subprocess.run(
            [sys.executable, "-c", kept], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        [(_, batch, _)] = batches(meta, [im])
        assert np.array_equal(np.load(tmp_path / "x.npy"), batch.numpy()[0, 0]), (w, h)
        [ours] = recognizer([im])
        if meta.task == "hanzi":
            top = proc.stdout.split()
            assert top[::2] == [t for t, _ in ours.top_k], (w, h)
            assert [float(p) for p in top[1::2]] == [round(p, 4) for _, p in ours.top_k]
        else:
            assert proc.stdout == ours.text + "\n", (w, h)
        texts.append(ours.top_k)
    assert len(set(map(str, texts))) == len(texts)  # each image reads otherwise: its fit counts


@pytest.mark.parametrize("name", sorted(n for n in MODELS if family_of(n) == "ctc"))
def test_the_frame_rule_in_the_metadata_counts_as_output_length(name):
    """Every CTC model's frames are ``(W + offset) // stride``, at the widths of its real lines
    and for other kwargs too (expr_crnn's drop_frames)."""
    kwargs, task, chars = TINY[name]
    variants = [kwargs, {**kwargs, "drop_frames": 5}] if name == "expr_crnn" else [kwargs]
    for kw in variants:
        meta = ModelMeta(name, kw, list(chars), task)
        rule = onnx_metadata(meta)["frames"]
        assert rule == frame_rule(meta) and set(rule) == {"stride", "offset"}
        low = min_width(meta.input)
        for width in [*range(low, low + 300), 4099, 12_001, 30_000]:
            expected = output_length(name, width, **kw)
            assert (width + rule["offset"]) // rule["stride"] == expected, (kw, width)
    for other in (n for n in MODELS if family_of(n) != "ctc"):
        kwargs, task, chars = TINY[other]
        assert "frames" not in onnx_metadata(ModelMeta(other, kwargs, list(chars), task))


@pytest.mark.parametrize("name", sorted(n for n in MODELS if family_of(n) == "ctc"))
def test_the_metadata_says_how_recognition_feeds_a_line(name):
    """A reader of the file alone resizes, pads and normalises a line from the metadata's
    ``input`` entry as `models.predict.batches` does: the same padded width for every width
    (a fixed-width task's lines unpadded: padding cost expr_crnn its last character), the
    same input bit for bit; and its blank is the class CTC decoding drops."""
    kwargs, task, chars = TINY[name]
    meta = ModelMeta(name, kwargs, list(chars), task)
    info = onnx_metadata(meta)
    inp, height = info["input"], meta.input["height"]
    assert info["blank"] == 0 and inp["polarity"] == "dark-on-light"
    # Python's round, half to even, of the exact ratio; the background of the scaled line
    assert (inp["rounding"], inp["background"], inp["background_of"]) == (
        "half-even",
        "border-median",
        "scaled",
    )
    rng = np.random.default_rng(0)
    resample = Image.Resampling[inp["resample"].upper()]
    for width in [1, 5, inp["min_width"] - 1, inp["min_width"] + 1, 47, 100, 333]:
        # drawn 1.5 times the model's height: resized as the metadata says
        drawn = rng.integers(0, 256, (height * 3 // 2, width * 3 // 2), dtype=np.uint8)
        scaled = max(1, round(drawn.shape[1] * height / drawn.shape[0]))
        x = np.asarray(Image.fromarray(drawn).resize((scaled, height), resample))
        padded = max(scaled, inp["min_width"])
        if inp["pad_multiple"]:
            padded = -(-padded // inp["pad_multiple"]) * inp["pad_multiple"]
        background = int(np.median(np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])))
        x = np.pad(x, ((0, 0), (0, padded - scaled)), constant_values=background)
        x = x.astype(np.float32) * (1 / (inp["scale"] * inp["std"])) - inp["mean"] / inp["std"]
        [(_, batch, _)] = batches(meta, [drawn])
        assert np.array_equal(batch.numpy()[0, 0], x), (width, batch.shape, x.shape)
    # a line task's lines are padded to a multiple, a fixed-width task's are not
    assert (inp["pad_multiple"] is None) == (task in FIXED_WIDTH_TASKS)
    # the blank is the class the families' CTC decoding drops
    log_probs = np.log(np.full((6, len(chars) + 1), 0.01, np.float32))
    for t, c in enumerate([info["blank"], 2, 2, info["blank"], 2, 3]):
        log_probs[t, c] = 0.0
    assert ctc_greedy_decode(log_probs)[0] == [2, 2, 3]


def fit_to_square(drawn: np.ndarray, info: dict) -> np.ndarray:
    """An ``H, W`` uint8 image -> a square model's normalised ``S, S`` input, from the export's
    metadata alone (as the README says a reader without synthocr does it)."""
    inp, size = info["input"], info["meta"]["input"]["size"]
    assert (inp["fit"], inp["align"], inp["rounding"]) == ("longer-side", "centre", "half-even")
    assert (inp["background"], inp["background_of"]) == ("border-median", "unscaled")
    h, w = drawn.shape
    # the longer side becomes the square's; each side the exact ratio, a half to even, >= 1 px
    sw, sh = (max(1, round(Fraction(side * size, max(w, h)))) for side in (w, h))
    resample = Image.Resampling[inp["resample"].upper()]
    small = np.asarray(Image.fromarray(drawn).resize((sw, sh), resample))
    # the median of the first and last rows and columns, corners twice, a half rounded down
    border = np.concatenate([drawn[0], drawn[-1], drawn[:, 0], drawn[:, -1]])
    x = np.full((size, size), np.floor(np.median(border)), np.uint8)
    top, left = (size - sh) // 2, (size - sw) // 2  # centred
    x[top : top + sh, left : left + sw] = small
    return x.astype(np.float32) * (1 / (inp["scale"] * inp["std"])) - inp["mean"] / inp["std"]


@pytest.mark.parametrize("name", sorted(n for n in MODELS if family_of(n) != "ctc"))
def test_the_metadata_says_how_recognition_fits_a_square(name):
    """A reader of the file alone fits an image of any shape to a square model's input from the
    metadata's ``input`` entry as `models.predict.batches` does, bit for bit: scaled, smaller
    or larger, a wide or a tall one (to a side of 1 px), one whose side scales to an exact half
    (rounded half to even), centred on its unscaled border's median."""
    kwargs, task, chars = TINY[name]
    meta = ModelMeta(name, kwargs, list(chars), task)
    info = onnx_metadata(meta)
    size = meta.input["size"]
    assert info["input"]["polarity"] == "dark-on-light"
    shapes = [(size, size), (17, 17), (3 * size, 3 * size), (2 * size + 7, size // 2 + 3)]
    shapes += [(size // 2 + 5, 5 * size), (300, 1), (1, 3), (size + 1, size)]
    shapes += exact_halves(size, 3)
    rng = np.random.default_rng(0)
    halves = 0
    for w, h in shapes + [s[::-1] for s in shapes]:
        drawn = rng.integers(0, 256, (h, w), dtype=np.uint8)
        [(_, batch, _)] = batches(meta, [drawn])
        assert np.array_equal(batch.numpy()[0, 0], fit_to_square(drawn, info)), (w, h)
        border = np.concatenate([drawn[0], drawn[-1], drawn[:, 0], drawn[:, -1]])
        halves += np.median(border) % 1 == 0.5
    assert halves  # a background halfway between two levels was among them


def test_a_frame_rule_that_does_not_fit_is_left_out(monkeypatch, caplog):
    """A model of one's own whose output_length is not of the stride/offset form exports
    without the rule (and says so), rather than with a wrong one."""
    entry = MODELS["crnn_vgg"]
    odd = dataclasses.replace(entry, output_length=lambda image_width, **kw: image_width**0.5)
    monkeypatch.setitem(MODELS, "crnn_vgg", odd)
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line")
    with caplog.at_level(logging.WARNING, logger="models.export"):
        assert onnx_metadata(meta)["frames"] is None
    assert "output_length is not (W + offset) // stride" in caplog.text
    on_ints_only = dataclasses.replace(
        entry, output_length=lambda image_width, **kw: int(image_width)
    )
    monkeypatch.setitem(MODELS, "crnn_vgg", on_ints_only)
    assert frame_rule(meta) is None


@pytest.mark.parametrize(
    "frames, said",
    [
        (lambda image_width, **kw: int(image_width), "ValueError: only one element tensors"),
        (lambda image_width, **kw: image_width / 4, "must count whole frames"),
    ],
    ids=["ints only", "float frames"],
)
def test_a_frame_rule_left_out_says_what_the_output_length_did(monkeypatch, caplog, frames, said):
    """A model of one's own whose output_length fails on a tensor of widths (written for ints
    alone, or counting with / where // was meant) exports without the rule, and the warning says
    what it raised: the registry's own advice (write // and torch.clamp), not only that the
    counts are not of the stride/offset form."""
    entry = dataclasses.replace(MODELS["crnn_vgg"], output_length=frames)
    monkeypatch.setitem(MODELS, "crnn_vgg", entry)
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line")
    with caplog.at_level(logging.WARNING, logger="models.export"):
        assert onnx_metadata(meta)["frames"] is None
    assert "given a tensor of widths" in caplog.text and said in caplog.text, caplog.text


def test_the_export_is_byte_deterministic(exported, tmp_path):
    ckpt, first = exported["crnn_vgg"]
    again = export_onnx(ckpt, tmp_path / "again.onnx", check=False)
    assert again.read_bytes() == first.read_bytes()


TINY_CTC = """
import torch
import yaml
from torch import nn


class TinyCTC(nn.Module):
    def __init__(self, num_classes, width, hidden):
        super().__init__()
        c = max(4, int(16 * width))
        self.convs = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.rnn = nn.GRU(2 * c * 8, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes + 1)

    def forward(self, x):
        f = self.convs(x)  # N, 2c, 8, W // 4
        f = f.flatten(1, 2).permute(2, 0, 1)  # T, N, 2c * 8
        return self.fc(self.rnn(f)[0])  # T, N, C + 1


def tiny_ctc(num_classes, *, width=1.0, hidden=64):
    return TinyCTC(num_classes, width, hidden)
"""


def test_a_model_added_as_the_readme_says_is_checked_exported_and_read(
    tmp_path, monkeypatch, cjk_font, repo_root
):
    """The README's "Adding an architecture", step by step, on a model of its own: a factory in
    a module, a registry entry, an experiment the config check accepts; its checkpoint exports
    with parity and reads the same through PyTorch and onnxruntime."""
    from models.registry import ModelEntry, validate_experiment

    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding an architecture") : readme.index("## Fine-tuning")]
    assert 'ModelEntry("models.tiny_ctc:tiny_ctc", "ctc", {"kind": "line", "height": 32}' in section
    (tmp_path / "my_models").mkdir()
    (tmp_path / "my_models" / "__init__.py").write_text("")
    (tmp_path / "my_models" / "tiny_ctc.py").write_text(TINY_CTC)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = ModelEntry(
        "my_models.tiny_ctc:tiny_ctc",
        "ctc",
        {"kind": "line", "height": 32},
        {"width": 1.0, "hidden": 64},
        output_length=lambda image_width, **kw: image_width // 4,
    )
    monkeypatch.setitem(MODELS, "tiny_ctc", entry)

    block = section[section.index("```yaml") + len("```yaml") :]
    experiment = yaml.safe_load(textwrap.dedent(block[: block.index("```")]))
    exp = experiment["experiments"]["line_tiny"]
    line_task = {"height": 32, "length": [4, 12], "min_char_width": 16, "charset": {}}
    validate_experiment("line_tiny", exp, line_task)
    with pytest.raises(ValueError, match=r"T=3 output frames for a 12 px wide image"):
        validate_experiment("line_tiny", exp, {**line_task, "min_char_width": 3})

    chars = "中文识别字体一二三"
    torch.manual_seed(0)
    model = build_model("tiny_ctc", len(chars), **exp["model_kwargs"])
    meta = ModelMeta("tiny_ctc", exp["model_kwargs"], list(chars), "line", train={}, step=0)
    save_model(tmp_path / "model.pt", model, meta)
    onnx_file = export_onnx(tmp_path / "model.pt", tmp_path / "model.onnx")  # parity checked
    images = _images(meta, cjk_font)
    torch_read = load_recognizer(tmp_path / "model.pt", device="cpu").read(images)
    onnx_read = load_recognizer(onnx_file).read(images)
    assert [p.text for p in onnx_read] == [p.text for p in torch_read]
    assert [p.confidence for p in onnx_read] == pytest.approx(
        [p.confidence for p in torch_read], rel=1e-3, abs=0
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_graphs_axes_are_named_as_its_metadata_says(exported, name):
    """Every input's and output's free axes carry the names the metadata's ``dynamic_axes``
    gives (CTC frames too, the reader's masks' batch), and no other axis is free: a reader of
    the file alone sizes its buffers from them."""
    _, onnx_path = exported[name]
    axes = read_onnx_meta(onnx_path)["dynamic_axes"]
    graph = onnx.load(str(onnx_path)).graph
    values = [*graph.input, *graph.output]
    assert sorted(v.name for v in values) == sorted(axes)
    for value in values:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        free = {str(i): d for i, d in enumerate(dims) if isinstance(d, str)}
        assert free == axes[value.name], value.name


@pytest.mark.parametrize(
    "frames",
    [
        lambda image_width, **kw: torch.clamp(image_width // 4 + 1, max=200),
        lambda image_width, **kw: (image_width >= 1000).long() + 1,
    ],
    ids=["capped", "one-step"],
)
def test_a_frame_rule_of_whole_frames_but_not_the_form_is_left_out(monkeypatch, frames):
    """Whole frames that grow by one every ``stride`` px at first but then stop (a cap on the
    frames), or grow once only: no stride and offset count them, so the export gives none
    rather than a rule read off the first steps."""
    entry = dataclasses.replace(MODELS["crnn_vgg"], output_length=frames)
    monkeypatch.setitem(MODELS, "crnn_vgg", entry)
    meta = ModelMeta("crnn_vgg", {}, list("ab"), "line")
    assert frame_rule(meta) is None
    assert onnx_metadata(meta)["frames"] is None


BAKED_SIZE = {
    # the batch read as a number: the graph reshapes every batch to the traced one's size
    "batch": (
        "f = f.reshape(int(f.shape[0]), -1, f.shape[-1]).permute(2, 0, 1)",
        r"onnxruntime cannot run the graph on input \(3, 1, 32, \d+\), traced at "
        r"\(2, 1, 32, 128\): .*int\(x\.shape\[0\]\)",
    ),
    # the width read as a number: the graph gives the traced width's frames at every width
    "width": (
        "f = f.flatten(1, 2).permute(2, 0, 1)[: int(f.shape[-1])]",
        r"output logits has shape \(32, 3, 5\), PyTorch \(\d+, 3, 5\)",
    ),
}


@pytest.mark.parametrize("size", sorted(BAKED_SIZE))
def test_a_graph_that_kept_the_traced_batch_or_width_is_refused_in_one_line(
    tmp_path, monkeypatch, capsys, size
):
    """A model of one's own whose forward reads the batch or the width as a number when traced
    (``int(x.shape[0])``) exports a graph that runs at those sizes alone: the parity check runs
    it at another batch (onnxruntime's error, not a RuntimeError, is the export's, named, not a
    traceback) and at other widths (the frames it gives are not PyTorch's)."""
    from models.registry import ModelEntry

    forward, said = BAKED_SIZE[size]
    source = TINY_CTC.replace("f = f.flatten(1, 2).permute(2, 0, 1)", forward)
    assert source != TINY_CTC
    package = tmp_path / f"baked_{size}"  # a module of its own: one imported stays imported
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tiny_ctc.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    kwargs = {"width": 1.0, "hidden": 64}
    entry = ModelEntry(
        f"baked_{size}.tiny_ctc:tiny_ctc",
        "ctc",
        {"kind": "line", "height": 32},
        kwargs,
        output_length=lambda image_width, **kw: image_width // 4,
    )
    monkeypatch.setitem(MODELS, "baked", entry)
    torch.manual_seed(0)
    meta = ModelMeta("baked", kwargs, list("abcd"), "line", train={}, step=0)
    save_model(tmp_path / "model.pt", build_model("baked", 4, **kwargs), meta)
    out = tmp_path / "model.onnx"
    assert main([str(tmp_path / "model.pt"), str(out)]) == 1
    err = capsys.readouterr().err
    assert re.search(said, err) and f"to {out} failed" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    # --no-check writes it: at the traced sizes it reads as PyTorch does
    assert main([str(tmp_path / "model.pt"), str(out), "--no-check"]) == 0
    x = example_batch(meta.input)
    with torch.inference_mode():
        expected = load_model(tmp_path / "model.pt")[0](x).numpy()
    assert np.allclose(OnnxModel(out).run(x.numpy())[0], expected, atol=1e-4)


def test_parity_below_an_output_magnitude_of_one_is_held_to_1e4_absolute(tmp_path):
    """An output whose largest magnitude is below 1 (an untrained model's logits) is held to
    1e-4 itself, not to 1e-4 of its magnitude, which would ask the two runtimes for more digits
    than float32 sums agree to."""
    ckpt = tmp_path / "model.pt"
    meta = tiny_checkpoint(ckpt, "crnn_vgg", seed=1)
    model, _ = load_model(ckpt)
    with torch.no_grad():
        model.classifier.weight.mul_(1e-4)
        model.classifier.bias.zero_()
    save_model(ckpt, model, meta)
    out = export_onnx(ckpt, tmp_path / "small.onnx")
    x = example_batch(meta.input, batch=3, width=96, seed=1)
    with torch.inference_mode():
        assert float(model(x).abs().max()) < 1e-2
    with torch.no_grad():
        model.classifier.bias[1] += 5e-5  # within 1e-4: passes
    assert 4e-5 < check_parity(model, meta, out) < 1e-4
    with torch.no_grad():
        model.classifier.bias[1] += 1e-4  # 1.5e-4 off: caught
    with pytest.raises(ExportError, match=r"small\.onnx: output logits differs from PyTorch by"):
        check_parity(model, meta, out)


def test_an_example_batch_is_never_narrower_than_the_models_narrowest_input():
    geometry = {"kind": "line", "height": 32}
    assert example_batch(geometry, width=1).shape == (2, 1, 32, min_width(geometry))
    assert example_batch(geometry, batch=3, width=200).shape == (3, 1, 32, 200)
    assert example_batch({"kind": "square", "size": 40}).shape == (2, 1, 40, 40)


def test_an_export_named_in_capitals_is_read_as_an_export(exported, tmp_path):
    """``MODEL.ONNX`` is written by the export (its suffix is checked without case) and read
    back as an export, not opened as a PyTorch checkpoint."""
    from models.export import is_export, read_model_meta

    ckpt, onnx_path = exported["hanzi_cnn"]
    shouted = tmp_path / "MODEL.ONNX"
    shouted.write_bytes(onnx_path.read_bytes())
    assert is_export(shouted) and not is_export(ckpt)
    assert read_model_meta(shouted) == load_model(ckpt)[1]


def test_the_highest_opset_the_exporter_names_is_written(tmp_path):
    from models.export import MAX_OPSET, model_opset

    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "hanzi_cnn")
    out = tmp_path / "model.onnx"
    assert main([str(ckpt), str(out), "--opset", str(MAX_OPSET)]) == 0
    assert model_opset(onnx.load(str(out))) == MAX_OPSET
