"""int8 exports (`models.quantize`, ``models.export --int8``): every model family quantizes,
loads and reads; the calibration images are counted, read as recognition reads them, and a bad
one is named; the file is written atomically and is the same bytes for the same input."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from test_export import onnx_standalone_block, tiny_checkpoint

import models.export as export_module
import models.quantize as quantize_module
from models.checkpoint import load_model, save_model
from models.export import META_KEY, ExportError, OnnxModel, export_onnx, main, read_onnx_meta
from models.images import load_gray
from models.predict import batches
from models.quantize import calibration_images, quantize_onnx
from models.recognize import load_recognizer
from synth.shards import Sample, write_samples

# a model of each family, GRCNN's recurrent convolutions beside VGG's
FAMILIES = ["crnn_vgg", "crnn_grcnn", "expr_crnn", "hanzi_cnn", "reader"]


def _draw(meta, font_path, n: int) -> list[Image.Image]:
    """``n`` images of the model's characters: lines of varied width for line models."""
    font = ImageFont.truetype(str(font_path), 24)
    out = []
    for i in range(n):
        text = "".join(meta.charset[(i + j) % len(meta.charset)] for j in range(1 + i % 5))
        if meta.input["kind"] != "line":
            text = text[0]
        width = max(40, 12 + int(font.getlength(text)))
        im = Image.new("L", (width, 36), 235 - 3 * i)
        ImageDraw.Draw(im).text((6, 4), text, font=font, fill=20)
        out.append(im)
    return out


def _fit_batch_norms(path, images) -> None:
    """Set the checkpoint's batch-norm statistics to those of ``images``, as training leaves
    them fitted to its data (an untrained model's 0 and 1 let activations grow layer by layer,
    which no trained model's do, and which int8 scales cannot follow)."""
    model, meta = load_model(path)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for _, x, _ in batches(meta, [load_gray(im) for im in images], 4):
            model(x)
    save_model(path, model.eval(), meta)


@pytest.fixture(scope="module")
def float_exports(tmp_path_factory, cjk_font):
    """name -> (float .onnx, its meta, a folder of 12 calibration PNGs), one per family: tiny
    models that read several characters, their batch norms fitted to the images."""
    folder = tmp_path_factory.mktemp("quantize")
    out = {}
    for name in FAMILIES:
        meta = tiny_checkpoint(folder / f"{name}.pt", name, seed=1, reads=True)
        drawn = _draw(meta, cjk_font, 12)
        _fit_batch_norms(folder / f"{name}.pt", drawn)
        onnx_path = export_onnx(folder / f"{name}.pt", folder / f"{name}.onnx", check=False)
        images = folder / f"{name}-images"
        images.mkdir()
        for i, im in enumerate(drawn):
            im.save(images / f"{i:02d}.png")
        out[name] = (onnx_path, meta, images)
    return out


def _op_types(path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_quantizes_and_reads_close_to_its_float_model(
    float_exports, name, tmp_path, cjk_font
):
    src, meta, images = float_exports[name]
    out = tmp_path / "int8.onnx"
    entry = quantize_onnx(src, out, [images], limit=10)
    types = _op_types(out)
    # every convolution but the first, on the image (one input channel), reads a dequantized
    # int8 weight and a quantized-dequantized input; the first keeps its float weights
    assert types.count("Conv") == _op_types(src).count("Conv") > 1
    assert "QuantizeLinear" in types and "DequantizeLinear" in types
    # (the reader's convolve the masked image, not the image: all are quantized)
    assert entry["float_convolutions"] == (name != "reader")
    graph = onnx.load(str(out)).graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    first = next(n for n in graph.node if n.op_type == "Conv")
    assert (
        (first.input[1] in floats) == (first.input[0] == graph.input[0].name) == (name != "reader")
    )
    # where a pool then reads float values (the first convolution's, or a GRCNN layer's),
    # the file is loaded without the optimizer that would run the pool on uint8
    pools_after_float = name in ("crnn_vgg", "crnn_grcnn", "hanzi_cnn")
    assert entry["disabled_optimizers"] == ["QDQPropagationTransformer"] * pools_after_float

    # the input and outputs keep their dynamic axes (batch; width and frames for line models)
    def dims(path):
        graph = onnx.load(str(path)).graph
        return [
            [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]
        ]

    assert dims(out) == dims(src) and dims(src)[0][0] == "batch"
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    kept = entry["float_convolutions"]
    assert sum(len(t.dims) == 4 for t in int8) == types.count("Conv") - kept  # per channel
    # each bias is int32 (so that onnxruntime fuses each into an integer convolution)
    integer = [n for n in graph.node if n.op_type == "Conv" and n.input[1] not in floats]
    assert len(integer) == types.count("Conv") - kept
    biases = {n.input[2] for n in integer if len(n.input) > 2}
    dequantize = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    int32 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT32}
    assert biases and all(dequantize.get(b) in int32 for b in biases)
    assert "MatMul" not in {n.op_type for n in graph.node if n.name.endswith("_quant")}
    # the metadata keeps the export's and says what was done
    info = read_onnx_meta(out)
    assert (
        info["meta"] == read_onnx_meta(src)["meta"]
        and info["family"] == read_onnx_meta(src)["family"]
    )
    assert info["quantization"] == entry and entry["ops"] == ["Conv"]
    assert entry["calibration_images"] == 10  # the limit, of the 12 there
    # it reads through the recognizer, and its share of readings agreeing with the float
    # model's on the calibration images is the one recorded
    plain, quant = load_recognizer(src), load_recognizer(out)
    assert quant.meta.charset == meta.charset
    assert quant.model.disabled_optimizers == entry["disabled_optimizers"]
    assert plain.model.disabled_optimizers == []
    files = sorted(images.iterdir())[:10]
    a, b = plain.recognize(files), quant.recognize(files)
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    assert entry["read_as_float"] == same / 10
    # and its logits follow the float model's closely on a batch it was not calibrated on
    extra = [plain.load(im) for im in _draw(meta, cjk_font, 4)]
    [(_, x, _)] = list(batches(meta, extra[:1], 8))
    lp, lq = plain.model.run(x.numpy())[0], quant.model.run(x.numpy())[0]
    assert lp.shape == lq.shape
    corr = np.corrcoef(lp.ravel(), lq.ravel())[0, 1]
    assert corr > 0.9, corr  # 0.94 (GRCNN) to 0.998 here
    assert not np.array_equal(lp, lq)  # it is not the float graph


@pytest.mark.parametrize("name", ["hanzi_cnn", "reader", "crnn_vgg"])
def test_matmul_quantizes_every_linear_layer_whichever_op_it_was_exported_as(
    float_exports, name, tmp_path, monkeypatch, caplog
):
    """--int8-ops Conv,MatMul quantizes the class layer of every family (the README): a linear
    layer on a matrix is exported as a Gemm (the classifier's and the reader's heads), on a
    sequence as a MatMul (a CTC model's), and a Gemm left float changed nothing. An op the
    model has no node of is warned of."""
    src, _, images = float_exports[name]
    linear = {"MatMul", "Gemm"} & set(_op_types(src))
    assert ("Gemm" in linear) == (name != "crnn_vgg") and (linear == {"MatMul"}) == (
        name == "crnn_vgg"
    )
    out = tmp_path / "int8.onnx"
    entry = quantize_onnx(src, out, [images], limit=4, ops=["Conv", "MatMul"])
    assert entry["ops"] == ["Conv", "MatMul"]
    graph = onnx.load(str(out)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    layers = [n for n in graph.node if n.op_type in linear]
    assert layers and all(n.input[1] in dequantized for n in layers)  # int8 weights, each
    # Conv alone leaves them float
    quantize_onnx(src, out, [images], limit=4, ops=["Conv"])
    graph = onnx.load(str(out)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert not any(n.input[1] in dequantized for n in graph.node if n.op_type in linear)
    # an op standing for nodes the graph lacks: said, and the rest quantized
    monkeypatch.setitem(quantize_module.ONNX_OPS, "MatMul", ("Einsum",))
    with caplog.at_level(logging.WARNING, logger="models.quantize"):
        quantize_onnx(src, out, [images], limit=4, ops=["Conv", "MatMul"])
    assert f"{src}: the model has no Einsum node, so op MatMul quantizes nothing in it" in (
        caplog.text
    )


def test_the_optimizer_left_out_changes_no_reading_and_a_bad_entry_is_named(
    float_exports, tmp_path
):
    src, meta, images = float_exports["crnn_grcnn"]
    out = tmp_path / "int8.onnx"
    entry = quantize_onnx(src, out, [images], limit=10)
    assert entry["disabled_optimizers"] == ["QDQPropagationTransformer"]
    # with the optimizer or without, the same logits: quantizing commutes with max-pooling
    without = OnnxModel(out, threads=1, disabled_optimizers=entry["disabled_optimizers"])
    with_it = OnnxModel(out, threads=1)
    for _, x, _ in batches(meta, [load_gray(p) for p in sorted(images.iterdir())], 16):
        a, b = without.run(x.numpy())[0], with_it.run(x.numpy())[0]
        np.testing.assert_allclose(a, b, atol=1e-5)
    for bad in ["QDQPropagationTransformer", [1], {"a": 1}]:
        proto = onnx.load(str(out))
        prop = next(p for p in proto.metadata_props if p.key == META_KEY)
        info = json.loads(prop.value)
        info["quantization"]["disabled_optimizers"] = bad
        prop.value = json.dumps(info)
        onnx.save(proto, str(tmp_path / "bad.onnx"))
        with pytest.raises(ExportError, match=r"bad\.onnx: .*disabled_optimizers is not a list"):
            load_recognizer(tmp_path / "bad.onnx")


def test_the_int8_file_is_byte_deterministic_and_smaller(float_exports, tmp_path):
    src, _, images = float_exports["crnn_vgg"]
    a = quantize_onnx(src, tmp_path / "a.onnx", [images])
    b = quantize_onnx(src, tmp_path / "b.onnx", [images])
    assert a == b
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert (tmp_path / "a.onnx").stat().st_size < src.stat().st_size


def test_calibration_reads_shards_and_images_as_recognition_loads_them(
    float_exports, tmp_path, cjk_font, caplog
):
    src, meta, images = float_exports["crnn_vgg"]
    recognizer = load_recognizer(src)
    drawn = _draw(meta, cjk_font, 6)
    # a shard of light-on-dark lines (the test splits' `invert` degradation): loaded as
    # recognition loads them, dark on light
    shard = tmp_path / "train-000000.tar"
    write_samples(
        shard,
        (
            Sample(f"{i:06d}", 255 - np.asarray(im), {"text": "x", "font": "f"})
            for i, im in enumerate(drawn)
        ),
    )
    got = calibration_images([shard, images], recognizer, limit=9)
    assert len(got) == 9  # the shard's 6, then the folder's first 3
    for im, original in zip(got[:6], drawn, strict=True):
        assert np.array_equal(np.asarray(im), np.asarray(original))
    assert np.array_equal(np.asarray(got[6]), np.asarray(recognizer.load(images / "00.png")))
    # the limit stops within the first source
    assert len(calibration_images([shard, images], recognizer, limit=4)) == 4
    # an expr model calibrated on another task's shards: the images are read, with the other
    # task's warning; its labels are no expressions, and their values are not asked for
    expr_src, expr_meta, _ = float_exports["expr_crnn"]
    other = tmp_path / "line" / "train-000000.tar"
    other.parent.mkdir()
    write_samples(
        other,
        (
            Sample(f"{i:06d}", np.asarray(im), {"text": "1+", "font": "f", "task": "line"})
            for i, im in enumerate(_draw(expr_meta, cjk_font, 3))
        ),
    )
    with caplog.at_level(logging.WARNING, logger="models.evaluate"):
        assert len(calibration_images([other], load_recognizer(expr_src), limit=9)) == 3
    assert "a expr model on line shards" in caplog.text
    # a folder of shards names them (only image files are read from a folder), its training
    # split for the example: never calibrate on a split you score
    for name in ("test_heldout-000000.tar", "val-000000.tar", "mine.tar"):
        (other.parent / name).write_bytes(other.read_bytes())
    with pytest.raises(ExportError) as e:
        calibration_images([other.parent], recognizer, limit=9)
    assert str(e.value) == (
        f"calibration: {other.parent} is a folder with no image files in it; give one split's "
        f"shards, e.g. {other.parent / 'train-*.tar'} (it holds mine.tar, test_heldout, train, "
        "val)"
    )
    # without a training split, no example of one you score: it says what the folder holds
    for name in ("train-000000.tar", "val-000000.tar"):
        (other.parent / name).unlink()
    with pytest.raises(ExportError) as e:
        calibration_images([other.parent], recognizer, limit=9)
    assert str(e.value) == (
        f"calibration: {other.parent} is a folder with no image files in it; it holds "
        "mine.tar, test_heldout, and no train or val split"
    )


def test_calibration_takes_a_shards_long_lines_and_holds_image_files_to_the_limit(
    float_exports, tmp_path, cjk_font
):
    # A long-line config's shards hold lines over 200:1, which calibration refused saying
    # "raise max_aspect: --max-aspect", an option export has not. Their labels vouch for them
    # (as in training); an image file over 200:1 is refused with advice export can follow.
    src, meta, _ = float_exports["crnn_vgg"]
    text = "".join(meta.charset[i % len(meta.charset)] for i in range(40))
    font = ImageFont.truetype(str(cjk_font), 24)
    line = Image.new("L", (max(7300, 12 + int(font.getlength(text))), 36), 235)  # over 200:1
    ImageDraw.Draw(line).text((6, 4), text, font=font, fill=20)
    shard = tmp_path / "train-000000.tar"
    write_samples(shard, [Sample("000000", np.asarray(line), {"text": text, "font": "f"})])
    entry = quantize_onnx(src, tmp_path / "int8.onnx", [shard], limit=4)
    assert entry["calibration_images"] == 1, entry
    folder = tmp_path / "files"
    folder.mkdir()
    line.save(folder / "long.png")
    with pytest.raises(ExportError) as e:
        quantize_onnx(src, tmp_path / "other.onnx", [folder], limit=4)
    assert str(e.value) == (
        f"calibration: {folder / 'long.png'}: {line.width}x36 px: one side is over 200 times "
        "the other; leave it out of the calibration images, or crop it to a line of text (a "
        "shard's lines are held to their labels' lengths instead)"
    )
    assert not (tmp_path / "other.onnx").exists()


def test_a_bad_calibration_source_is_named_and_nothing_is_written(float_exports, tmp_path):
    src, _, images = float_exports["crnn_vgg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes((images / "00.png").read_bytes())
    (corrupt / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    bad_shard = tmp_path / "bad.tar"
    bad_shard.write_bytes(b"not a tar" * 100)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "int8.onnx"
    cases = [
        ([tmp_path / "missing"], "missing does not exist"),
        ([empty], "empty is a folder with no image files"),
        ([corrupt], "b.png"),
        ([bad_shard], "bad.tar"),
    ]
    for sources, named in cases:
        with pytest.raises(ExportError, match=named):
            quantize_onnx(src, out, sources)
        assert list(out_dir.iterdir()) == []  # no file, no temporary
    with pytest.raises(ExportError, match=r"cannot quantize op.*Gemm.*valid: Conv, MatMul"):
        quantize_onnx(src, out, [images], ops=["Gemm"])
    with pytest.raises(ExportError, match=r"must be an \.onnx file"):
        quantize_onnx(src, out_dir / "int8.pt", [images])
    assert list(out_dir.iterdir()) == []
    # an int8 file is not quantized again
    quantize_onnx(src, out, [images], limit=2)
    with pytest.raises(ExportError, match=r"int8\.onnx is already quantized"):
        quantize_onnx(out, out_dir / "again.onnx", [images])
    assert list(out_dir.iterdir()) == [out]


def test_the_export_command_writes_an_int8_file(
    float_exports, tmp_path, capsys, cjk_font, repo_root, monkeypatch
):
    _, meta, images = float_exports["crnn_vgg"]
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "crnn_vgg", seed=1, reads=True)
    out = tmp_path / "int8.onnx"
    argv = [str(ckpt), str(out), "--int8", str(images), "--calibration-images", "5"]
    assert main([*argv, "--int8-ops", "Conv,MatMul"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    entry = read_onnx_meta(out)["quantization"]
    assert entry["calibration_images"] == 5 and entry["ops"] == ["Conv", "MatMul"]
    graph = onnx.load(str(out)).graph
    # the class layer's weight is int8 too now
    matmul_inputs = {i for n in graph.node if n.op_type == "MatMul" for i in n.input}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert matmul_inputs & dequantized
    torch_reading = load_recognizer(ckpt, device="cpu")(_draw(meta, cjk_font, 2))
    assert len(load_recognizer(out)(_draw(meta, cjk_font, 2))) == len(torch_reading)
    # a bad calibration folder: one error line naming it, exit 1, no file
    (tmp_path / "none").mkdir()
    assert main([str(ckpt), str(tmp_path / "x.onnx"), "--int8", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: calibration: ") and "none is a folder" in err
    assert not (tmp_path / "x.onnx").exists()
    # so run as `python -m models.export` too (the quantizer raises the module's ExportError)
    (tmp_path / "empty.tar").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "models.export", str(ckpt), str(tmp_path / "z.onnx"),
         "--int8", str(tmp_path / "empty.tar")],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "\nerror: calibration: " in proc.stderr and "empty.tar" in proc.stderr
    assert not (tmp_path / "z.onnx").exists()
    # What can be checked before the float export is (it was, after it): a missing source, an
    # op not quantized here, a count of 0 (a usage error).
    export_calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *a, **k: export_calls.append(a))
    for extra, said in [
        (["--int8", str(tmp_path / "gone")], f"error: calibration: {tmp_path / 'gone'} does not"),
        (["--int8", str(images), "--int8-ops", "Gemm"], "error: cannot quantize op(s) Gemm; valid"),
    ]:
        assert main([str(ckpt), str(tmp_path / "w.onnx"), *extra]) == 1
        assert capsys.readouterr().err.startswith(said)
    # an output that cannot be written: a folder, or under a file
    (tmp_path / "dir.onnx").mkdir()
    for target, said in [
        (tmp_path / "dir.onnx", f"error: {tmp_path / 'dir.onnx'} is a folder: give the .onnx"),
        (
            out / "w.onnx",
            f"error: {out / 'w.onnx'}: cannot be written: {out} is not a folder",
        ),
    ]:
        assert main([str(ckpt), str(target), "--int8", str(images)]) == 1
        assert capsys.readouterr().err.startswith(said)
    with pytest.raises(SystemExit):
        main(
            [
                str(ckpt),
                str(tmp_path / "w.onnx"),
                "--int8",
                str(images),
                "--calibration-images",
                "0",
            ]
        )
    assert "--calibration-images: must be >= 1, got 0" in capsys.readouterr().err
    assert export_calls == []
    # the int8 options alone are a usage error
    with pytest.raises(SystemExit) as e:
        main([str(ckpt), str(tmp_path / "y.onnx"), "--int8-ops", "Conv"])
    assert e.value.code == 2
    assert "go with --int8" in capsys.readouterr().err


def test_an_opset_too_low_for_int8_is_refused_before_any_work(
    float_exports, tmp_path, capsys, monkeypatch
):
    """Per-channel int8 weights need opset 13 (DequantizeLinear's axis): ``--opset 11 --int8``
    exported the float file, then failed in a traceback from onnxruntime ("Unrecognized
    attribute: axis for operator DequantizeLinear"), and `quantize_onnx` on such a file too."""
    images = float_exports["crnn_vgg"][2]
    ckpt = tmp_path / "model.pt"
    tiny_checkpoint(ckpt, "crnn_vgg")
    low = export_onnx(ckpt, tmp_path / "opset11.onnx", opset=11, check=False)
    with pytest.raises(ExportError) as e:
        quantize_onnx(low, tmp_path / "int8.onnx", [images], limit=2)
    assert str(e.value).startswith(f"{low}: it is exported at opset 11: an int8 file needs ")
    assert f"opset {quantize_module.MIN_INT8_OPSET} or later" in str(e.value)
    assert not (tmp_path / "int8.onnx").exists()
    # the command says so before its float export, which is then not run
    export_calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *a, **k: export_calls.append(a))
    argv = [str(ckpt), str(tmp_path / "w.onnx"), "--opset", "11", "--int8", str(images)]
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith("error: --opset 11: an int8 file needs opset ")
    assert export_calls == [] and not (tmp_path / "w.onnx").exists()


def test_the_readmes_standalone_block_reads_an_int8_file_as_recognize_does(
    float_exports, tmp_path, repo_root, cjk_font
):
    """The README says an int8 file is read as any export, by its onnxruntime-only block too."""
    block = onnx_standalone_block(repo_root)
    src, meta, images = float_exports["crnn_vgg"]
    quantize_onnx(src, tmp_path / "line.onnx", [images])
    recognizer = load_recognizer(tmp_path / "line.onnx", polarity="dark-on-light")
    readings = []
    for i, im in enumerate(_draw(meta, cjk_font, 8)[3:6]):
        im.save(tmp_path / "line.png")
        proc = subprocess.run(
            [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        [ours] = recognizer([im])
        assert proc.stdout == ours.text + "\n", i
        readings.append(ours.text)
    assert any(readings)  # characters were read, so the decoding is compared too


def test_quantizing_leaves_an_unconfigured_callers_logging_unconfigured(
    float_exports, tmp_path, repo_root
):
    """onnxruntime's quantizer logs through `logging.warning`, which configures the root logger
    of a process that has none; quantize_onnx keeps it from doing so for good."""
    src, _, images = float_exports["expr_crnn"]
    code = (
        "import logging, sys\n"
        "from models.quantize import quantize_onnx\n"
        f"quantize_onnx({str(src)!r}, {str(tmp_path / 'q.onnx')!r}, [{str(images)!r}], limit=3)\n"
        "print(len(logging.getLogger().handlers), logging.getLogger().level)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", str(logging.WARNING)]
    assert "pre-processing before quantization" not in proc.stderr
    assert (tmp_path / "q.onnx").is_file()
