"""Fine-tuning (train.init_from): a run starts from another checkpoint's weights, the output
rows matched by character; a source that does not fit is refused, naming the tensor."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from conftest import model_task

from models.checkpoint import CheckpointError, ModelMeta, UntrustedCheckpointError, save_model
from models.families import make_family
from models.registry import MODELS, ModelEntry, build_model
from models.transfer import TransferError, class_tensors, init_from
from synth.shards import sha256_file

# Each model's small instance (its entry's ``tiny``) and its task (expr_crnn's own; a task of its
# family for the others).
CASES = {name: (dict(entry.tiny), model_task(name)) for name, entry in MODELS.items()}


def _save(path, name, charset, seed=0, kwargs=None):
    kwargs = CASES[name][0] if kwargs is None else kwargs
    torch.manual_seed(seed)
    model = build_model(name, len(charset), **kwargs)
    with torch.no_grad():  # batch-norm statistics that are not their defaults, to see them copied
        for key, t in model.state_dict().items():
            if "running" in key:
                t.uniform_(0.5, 1.5)
    meta = ModelMeta(name, kwargs, list(charset), CASES[name][1], train={"steps": 5}, step=5)
    save_model(path, model, meta)
    return model


def _fresh(name, charset, seed=1):
    torch.manual_seed(seed)
    return build_model(name, len(charset), **CASES[name][0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_class_tensors_are_the_output_layer(name):
    kwargs = CASES[name][0]
    found = class_tensors(name, 7, kwargs)
    model = build_model(name, 7, **kwargs)
    offset = make_family(name, list("abcdefg"), kwargs).offset
    outputs = [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m.out_features == 7 + offset
    ]
    assert len(outputs) == 1, outputs
    assert found == {f"{outputs[0]}.weight", f"{outputs[0]}.bias"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_charset_starts_from_the_source_exactly(tmp_path, name):
    charset = list("0123")
    source = _save(tmp_path / "a.pt", name, charset).eval()
    model = _fresh(name, charset)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    transfer = init_from(model, name, CASES[name][0], charset, tmp_path / "a.pt")
    changed = 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
        changed += not torch.equal(value, before[key])
    assert changed > 0  # the fresh model's own weights were replaced
    assert (transfer.classes_kept, transfer.classes_new, transfer.classes_dropped) == (4, 0, 0)
    assert transfer.sha256 == sha256_file(tmp_path / "a.pt")
    assert transfer.model == name and transfer.step == 5
    size = 64 if name == "hanzi_cnn" else 40 if name == "reader" else None
    shape = (2, 1, size, size) if size else (2, 1, 60 if name == "expr_crnn" else 32, 96)
    x = torch.rand(shape)
    model.eval()
    with torch.no_grad():
        a, b = source(x), model(x)
    a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["hanzi_cnn", "crnn_vgg", "reader"])
def test_output_rows_follow_their_characters(tmp_path, name):
    # the source reads a b c d; the new charset has d and b (moved), x and y (new); a and c go
    source_chars, target_chars = list("abcd"), list("dxby")
    source = _save(tmp_path / "a.pt", name, source_chars)
    model = _fresh(name, target_chars)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    transfer = init_from(model, name, CASES[name][0], target_chars, tmp_path / "a.pt")
    assert (transfer.classes_kept, transfer.classes_new, transfer.classes_dropped) == (2, 2, 2)
    src_family = make_family(name, source_chars, CASES[name][0])
    family = make_family(name, target_chars, CASES[name][0])
    offset = family.offset
    by_class = class_tensors(name, len(target_chars), CASES[name][0])
    state = model.state_dict()
    for key in by_class:
        old, new = source.state_dict()[key], state[key]
        for ch in "db":
            (i,) = src_family.label_indices(ch)
            (j,) = family.label_indices(ch)
            assert torch.equal(new[j], old[i]), (key, ch)
        for ch in "xy":  # characters the source never saw keep their random rows
            (j,) = family.label_indices(ch)
            assert torch.equal(new[j], fresh[key][j]), (key, ch)
        if offset:  # the CTC blank or the terminal symbol keeps its own row
            assert torch.equal(new[:offset], old[:offset]), key
    for key, value in state.items():  # every other tensor is the source's
        if key not in by_class:
            assert torch.equal(value, source.state_dict()[key]), key


@pytest.mark.parametrize("name", ["hanzi_cnn", "crnn_vgg"])
def test_a_charset_sharing_nothing_keeps_only_the_layers_before_the_output(tmp_path, caplog, name):
    _save(tmp_path / "a.pt", name, list("abc"))
    model = _fresh(name, list("xyz"))
    transfer = init_from(model, name, CASES[name][0], list("xyz"), tmp_path / "a.pt")
    assert (transfer.classes_kept, transfer.classes_new, transfer.classes_dropped) == (0, 3, 3)
    assert "shares no character" in caplog.text


def test_another_architecture_is_refused_naming_both(tmp_path):
    _save(tmp_path / "vgg.pt", "crnn_vgg", list("ab"))
    model = _fresh("crnn_grcnn", list("ab"))
    with pytest.raises(TransferError, match=r"vgg\.pt.*'crnn_vgg'.*'crnn_grcnn'"):
        init_from(model, "crnn_grcnn", CASES["crnn_grcnn"][0], list("ab"), tmp_path / "vgg.pt")


def test_another_width_is_refused_naming_the_tensor_and_the_kwarg(tmp_path):
    _save(tmp_path / "narrow.pt", "crnn_vgg", list("ab"))
    wide = {"width": 0.25, "hidden": 16}
    torch.manual_seed(0)
    model = build_model("crnn_vgg", 2, **wide)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TransferError) as e:
        init_from(model, "crnn_vgg", wide, list("ab"), tmp_path / "narrow.pt")
    assert "narrow.pt" in str(e.value)
    assert "backbone." in str(e.value)  # the first tensor whose shape differs
    assert "width: 0.125 there, 0.25 here" in str(e.value)
    for key, value in model.state_dict().items():  # nothing half-loaded
        assert torch.equal(value, before[key]), key


def test_a_source_with_non_finite_weights_is_refused_naming_the_weight(tmp_path):
    # Training from it would stop at its first step on a NaN loss, blaming the learning rate.
    source = _save(tmp_path / "ok.pt", "crnn_vgg", list("ab"))
    state = source.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and "running" not in k)
    state[key].view(-1)[0] = float("inf")
    meta = ModelMeta("crnn_vgg", CASES["crnn_vgg"][0], list("ab"), "line", train={}, step=5)
    save_model(tmp_path / "inf.pt", source, meta)
    model = _fresh("crnn_vgg", list("ab"))
    with pytest.raises(TransferError, match=rf"inf\.pt: weight {re.escape(key)} holds NaN"):
        init_from(model, "crnn_vgg", CASES["crnn_vgg"][0], list("ab"), tmp_path / "inf.pt")


def test_a_source_with_sparse_or_integer_weights_is_refused_naming_the_weight(tmp_path):
    """Loading would cast an integer tensor to float without a word; a sparse one stopped with
    torch's own traceback."""
    source = _save(tmp_path / "ok.pt", "crnn_vgg", list("ab"))
    key = next(k for k, v in source.state_dict().items() if v.dim() == 2)
    for name, change in [("int", lambda t: t.round().long()), ("sparse", lambda t: t.to_sparse())]:
        ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
        ckpt["state_dict"][key] = change(ckpt["state_dict"][key])
        torch.save(ckpt, tmp_path / f"{name}.pt")
        model = _fresh("crnn_vgg", list("ab"))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(TransferError, match=rf"{name}\.pt: {re.escape(key)} (holds|is a)"):
            init_from(model, "crnn_vgg", CASES["crnn_vgg"][0], list("ab"), tmp_path / f"{name}.pt")
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class Payload:
    """A custom class: pickling it puts code references into the file."""


def test_untrusted_missing_or_foreign_sources_are_refused(tmp_path):
    model = _fresh("crnn_vgg", list("ab"))
    args = ("crnn_vgg", CASES["crnn_vgg"][0], list("ab"))
    evil = tmp_path / "evil.pt"
    torch.save({"format": "synthocr-checkpoint", "version": 1, "x": Payload()}, evil)
    with pytest.raises(UntrustedCheckpointError, match=r"evil\.pt"):
        init_from(model, *args, evil)
    with pytest.raises(CheckpointError, match=r"gone\.pt does not exist"):
        init_from(model, *args, tmp_path / "gone.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")  # weights alone: no charset to match
    with pytest.raises(CheckpointError, match=r"bare\.pt is not a synthocr-checkpoint"):
        init_from(model, *args, tmp_path / "bare.pt")
    shutil.copy(evil, tmp_path / "copy.pt")
    with pytest.raises(UntrustedCheckpointError):
        init_from(model, *args, tmp_path / "copy.pt")


def test_a_class_layer_with_the_classes_off_its_first_axis_is_named(tmp_path, monkeypatch):
    """Fine-tuning keeps the rows of the characters both charsets share: a model whose class
    layer has the classes on another axis is refused, naming the tensor and the layout asked."""
    (tmp_path / "sideways.py").write_text(
        "import torch\n"
        "from torch import nn\n\n\n"
        "class Sideways(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.head = nn.Parameter(torch.zeros(8, num_classes))\n\n\n"
        "def sideways(num_classes, *, width=1.0):\n"
        "    return Sideways(num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = ModelEntry(
        "sideways:sideways", "classification", {"kind": "square", "size": 8}, {"width": 1.0}
    )
    monkeypatch.setitem(MODELS, "sideways", entry)
    with pytest.raises(ValueError) as e:
        class_tensors("sideways", 10, {})
    assert str(e.value).startswith(
        "model 'sideways': head (8, 10) grows with the classes on an axis other than its first"
    )
    assert "(as an nn.Linear's out_features)" in str(e.value)
