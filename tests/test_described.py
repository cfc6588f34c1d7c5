"""An ``.onnx`` file of a model not registered here (a package's, not installed) is read from
its own metadata: the same readings as with the model registered; what the file cannot say
(a CTC frame rule, a reader's ``max_len``) is refused naming the package; the described layer
never reaches the registry's listings, the factories or a checkpoint."""

from __future__ import annotations

import json
import logging

import onnx
import pytest
import torch
from test_export import TINY, _images, tiny_checkpoint

from models.checkpoint import CheckpointError, load_checkpoint, save_atomic
from models.export import META_KEY, ExportError, export_onnx, load_onnx
from models.recognize import load_recognizer
from models.registry import (
    build_model,
    entry_source,
    forget_described,
    get_entry,
    model_names,
    output_length,
    validate_experiment,
)

PACKAGE = "my-models 0.1"


@pytest.fixture(autouse=True)
def described_layer():
    """Each test starts and ends with no model described."""
    forget_described()
    yield
    forget_described()


def _reading_export(folder, name):
    """A tiny ``name`` that reads several characters (seed 1, weights x3: an untrained tiny
    model reads one class everywhere), saved and exported; returns (model.pt, .onnx)."""
    ckpt = folder / f"{name}.pt"
    tiny_checkpoint(ckpt, name, seed=1, reads=True)
    return ckpt, export_onnx(ckpt, folder / f"{name}.onnx", check=False)


def _renamed(path, out, model="mine", edit=None):
    """``path`` with its metadata's model renamed to one no package registers here (and the
    package it was 'trained with' named), then ``edit(info)`` applied."""
    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == META_KEY)
    info = json.loads(entry.value)
    info["meta"].update(model=model, package=PACKAGE)
    if edit is not None:
        edit(info)
    entry.value = json.dumps(info, ensure_ascii=False)
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("described")
    return {name: _reading_export(folder, name) for name in ("crnn_vgg", "reader")}


def _older_reader(info):
    """An export from before the reader's max_len was stored: its model_kwargs say it."""
    info["meta"]["model_kwargs"]["max_len"] = info.pop("max_len")


@pytest.mark.parametrize(
    ("name", "edit", "decoder"),
    [
        ("crnn_vgg", None, "greedy"),
        ("crnn_vgg", None, "beam"),
        ("reader", None, "greedy"),
        ("reader", _older_reader, "greedy"),
    ],
    ids=["ctc", "ctc-beam", "reader", "older-reader"],
)
def test_an_unregistered_models_file_reads_as_the_registered_one(
    exports, tmp_path, cjk_font, caplog, name, edit, decoder
):
    names = model_names()
    _, original = exports[name]
    mine = _renamed(original, tmp_path / "mine.onnx", edit=edit)
    ours = load_recognizer(original, decoder=decoder)
    with caplog.at_level(logging.INFO, logger="models.export"):
        theirs = load_recognizer(mine, decoder=decoder)
    [record] = [r for r in caplog.records if r.name == "models.export"]
    assert record.levelno == logging.INFO
    assert "model 'mine' is not registered here (trained with the package my-models 0.1" in (
        record.getMessage()
    )
    assert "reading it from the file's own description" in record.getMessage()
    assert theirs.meta.model == "mine" and theirs.family == ours.family
    # lines of several widths (the CTC frames follow each width), read alone and in a batch
    images = _images(ours.meta, cjk_font)
    images += [im.resize((im.width * 2, im.height)) for im in images]
    expected, got = ours(images), theirs(images)
    assert [p.text for p in got] == [p.text for p in expected]
    assert any(p.text for p in expected)  # readings to compare, not empty strings
    assert [p.confidence for p in got] == pytest.approx([p.confidence for p in expected], abs=0)
    assert [p.top_k for p in got] == [p.top_k for p in expected]
    assert [theirs(im)[0].text for im in images] == [p.text for p in expected]
    # the description serves reading only: no listing, no factory, no config names it
    assert model_names() == names
    assert "synthocr metadata of" in entry_source("mine") and str(mine) in entry_source("mine")
    with pytest.raises(ValueError, match=r"holds no factory .* install the package my-models"):
        get_entry("mine").factory  # noqa: B018
    with pytest.raises(ValueError, match="unknown model 'mine'"):
        build_model("mine", 4)
    exp = {"task": "line", "model": "mine"}
    with pytest.raises(ValueError, match=r"experiments\.x\.model: unknown model 'mine'"):
        validate_experiment("x", exp, {"height": 32, "length": [1, 4], "min_char_width": 16})


def test_the_frame_rule_read_from_the_file_counts_as_the_models(exports, tmp_path):
    kwargs = TINY["crnn_vgg"][0]
    load_onnx(_renamed(exports["crnn_vgg"][1], tmp_path / "mine.onnx"))
    widths = torch.arange(16, 3000)
    assert torch.equal(
        output_length("mine", widths, **kwargs), output_length("crnn_vgg", widths, **kwargs)
    )
    assert output_length("mine", 77, **kwargs) == output_length("crnn_vgg", 77, **kwargs)


def test_what_the_file_cannot_say_is_refused_naming_the_package(exports, tmp_path):
    ctc, reader = exports["crnn_vgg"][1], exports["reader"][1]
    no_rule = _renamed(ctc, tmp_path / "no_rule.onnx", edit=lambda i: i.update(frames=None))
    with pytest.raises(
        ExportError,
        match=r"no_rule\.onnx: model 'mine' is not registered here, and the file's frame rule "
        r"\('frames'\) is null, .*; install the package my-models 0\.1",
    ):
        load_recognizer(no_rule)
    old = _renamed(reader, tmp_path / "old.onnx", edit=lambda i: i.pop("max_len"))
    missing = r"old\.onnx: .*\(no 'max_len' in its metadata.*; install the package my-models"
    with pytest.raises(ExportError, match=missing):
        load_recognizer(old)
    # both refused before anything was described
    assert "not registered" in entry_source("mine")


@pytest.mark.parametrize(
    "frames",
    [
        {"stride": 10**30, "offset": 10**30},
        {"stride": 4, "offset": -100_000},
        {"stride": 5000, "offset": 5000},
    ],
    ids=["huge", "no-frame", "past-the-bound"],
)
def test_an_edited_frame_rule_is_refused_naming_the_file(exports, tmp_path, frames):
    """Sizes past torch's integers overflowed at the first image, and a rule giving images no
    frame failed at the first batch, both as tracebacks; the file is refused when it is read."""
    edit = lambda info: info.update(frames=frames)  # noqa: E731
    odd = _renamed(exports["crnn_vgg"][1], tmp_path / "odd.onnx", edit=edit)
    message = r"odd\.onnx: its frame rule \(frames: stride .* a frame rule has a stride of 1 to"
    with pytest.raises(ExportError, match=message):
        load_recognizer(odd)
    assert "not registered" in entry_source("mine")


def test_metadata_nested_past_pythons_limit_is_refused_naming_the_file(exports, tmp_path):
    proto = onnx.load(str(exports["crnn_vgg"][1]))
    entry = next(p for p in proto.metadata_props if p.key == META_KEY)
    entry.value = "[" * 100_000 + "]" * 100_000
    onnx.save(proto, str(tmp_path / "deep.onnx"))
    with pytest.raises(ExportError, match=rf"deep\.onnx: its {META_KEY!r} metadata is not JSON"):
        load_recognizer(tmp_path / "deep.onnx")


def test_a_registered_model_wins_over_its_files_description(exports, tmp_path):
    """A built-in name reads through its entry: a file's frame rule is not taken on trust."""
    _, original = exports["crnn_vgg"]

    def wrong(info):
        info["meta"].pop("package")
        info["frames"] = {"stride": 99, "offset": 0}

    odd = _renamed(original, tmp_path / "odd.onnx", model="crnn_vgg", edit=wrong)
    load_onnx(odd)
    assert get_entry("crnn_vgg").target == "models.crnn:crnn_vgg"
    assert output_length("crnn_vgg", 64) == 64 // 4 + 1


def test_two_files_describing_one_name_otherwise_are_refused(exports, tmp_path):
    ctc = exports["crnn_vgg"][1]
    load_onnx(_renamed(ctc, tmp_path / "a.onnx"))
    load_onnx(_renamed(ctc, tmp_path / "same.onnx"))  # the same description: fine
    other = _renamed(
        ctc, tmp_path / "b.onnx", edit=lambda i: i.update(frames={"stride": 8, "offset": 0})
    )
    with pytest.raises(
        ExportError, match=r"b\.onnx: model 'mine': .*b\.onnx describes it otherwise"
    ):
        load_onnx(other)
    assert str(tmp_path / "a.onnx") in entry_source("mine")  # the first one still holds


def test_a_checkpoint_of_an_unregistered_model_still_needs_its_package(exports, tmp_path):
    """Its weights need the factory: refused as before, even once its .onnx file was read."""
    ckpt, original = exports["crnn_vgg"]
    load_onnx(_renamed(original, tmp_path / "mine.onnx"))
    data = load_checkpoint(ckpt)
    data["meta"].update(model="mine", package=PACKAGE)
    save_atomic(data, tmp_path / "mine.pt")
    message = (
        r"mine\.pt: model 'mine' cannot be rebuilt \(it was trained with the package "
        r"my-models 0\.1\): unknown model 'mine'"
    )
    with pytest.raises(CheckpointError, match=message):
        load_recognizer(tmp_path / "mine.pt", device="cpu")
    with pytest.raises(CheckpointError, match=message):
        export_onnx(tmp_path / "mine.pt", tmp_path / "again.onnx")


@pytest.mark.parametrize(
    "frames, said",
    [
        # 16 px, the narrowest line, plus -13 is 3 px: no frame of stride 4
        ({"stride": 4, "offset": -13}, r"gives 0 frames to an image 16 px wide, the narrowest"),
        ({"stride": 0, "offset": 0}, r"\('frames'\) is \{'stride': 0, 'offset': 0\}, not a whole"),
        ({"stride": 4.0, "offset": 4}, r"\('frames'\) is \{'stride': 4\.0, 'offset': 4\}, not a"),
    ],
    ids=["no-frame-at-the-narrowest", "stride-0", "float-stride"],
)
def test_a_frame_rule_at_its_bounds_is_refused_naming_what_it_says(exports, tmp_path, frames, said):
    """A rule giving the narrowest image no frame, by a few px, is refused as one giving none by
    far is; a stride of 0 (or not a whole number) is named as the file gives it, not said to be
    missing."""
    edit = lambda info: info.update(frames=frames)  # noqa: E731
    odd = _renamed(exports["crnn_vgg"][1], tmp_path / "odd.onnx", edit=edit)
    with pytest.raises(ExportError, match=r"odd\.onnx: .*" + said):
        load_recognizer(odd)
    assert "not registered" in entry_source("mine")
