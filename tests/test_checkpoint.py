"""Checkpoints: atomic, self-describing, safe to load; and the predict path built on them."""

from __future__ import annotations

import pickle
import re
import warnings

import pytest
import torch
from PIL import Image, ImageDraw

from models.checkpoint import (
    CheckpointError,
    ModelMeta,
    UntrustedCheckpointError,
    load_checkpoint,
    load_model,
    make_checkpoint,
    read_meta,
    save_atomic,
    save_model,
    unwrap,
)
from models.predict import predict
from models.registry import build_model
from synth.text import expression_value

CASES = [
    ("crnn_vgg", {"width": 0.125, "hidden": 16}, list("abc中文"), "line"),
    ("expr_crnn", {"width": 0.25}, list("0123456789+-*()"), "expr"),
    ("hanzi_cnn", {"width": 0.125}, list("一二三"), "hanzi"),
    ("reader", {"width": 0.25}, list("0123"), "short"),
]


class Payload:
    """A custom class: pickling it puts code references into the file."""


def _meta(name, kwargs, charset, task):
    return ModelMeta(name, kwargs, charset, task, train={"steps": 5, "lr": 0.001}, step=5)


@pytest.mark.parametrize(("name", "kwargs", "charset", "task"), CASES)
def test_model_round_trip(tmp_path, name, kwargs, charset, task):
    torch.manual_seed(0)
    model = build_model(name, len(charset), **kwargs)
    meta = _meta(name, kwargs, charset, task)
    path = tmp_path / "model.pt"
    save_model(path, model, meta)
    loaded, meta2 = load_model(path)
    assert meta2 == meta
    assert meta2.input["kind"] in ("square", "line")
    assert not loaded.training
    ref = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, ref[key]), key
    ckpt = load_checkpoint(path)
    assert "resume" not in ckpt  # model.pt holds no optimizer state
    assert read_meta(path) == meta
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_model_pt_holds_float32_weights_whatever_the_model_trained_in(tmp_path):
    name, kwargs, charset, task = CASES[2]
    model = build_model(name, len(charset), **kwargs).to(torch.float64)
    path = tmp_path / "model.pt"
    save_model(path, model, _meta(name, kwargs, charset, task))
    state = load_checkpoint(path)["state_dict"]
    floats = {k: v.dtype for k, v in state.items() if v.is_floating_point()}
    assert floats and set(floats.values()) == {torch.float32}
    # counters (batch norm's num_batches_tracked) keep their integer type
    counters = {v.dtype for v in state.values() if not v.is_floating_point()}
    assert counters == {torch.int64}


def test_a_built_in_models_meta_names_no_package(tmp_path):
    # model.pt of a built-in model is as it was before models of packages existed
    name, kwargs, charset, task = CASES[0]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    assert "package" not in load_checkpoint(path)["meta"]
    assert read_meta(path).package == ""


def test_untrusted_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "synthocr-checkpoint", "version": 1, "x": Payload()}, path)
    with pytest.raises(UntrustedCheckpointError, match=r"evil\.pt.*Payload"):
        load_checkpoint(path)
    with pytest.raises(UntrustedCheckpointError, match=r"evil\.pt"):
        load_model(path)


def test_truncated_and_foreign_checkpoints(tmp_path):
    model = build_model("hanzi_cnn", 3, width=0.125)
    good = tmp_path / "good.pt"
    save_model(good, model, _meta("hanzi_cnn", {"width": 0.125}, list("abc"), "hanzi"))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt.*not a synthocr-checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is unreadable .*: empty file$"):
        load_checkpoint(empty)


def test_a_checkpoint_lacking_its_weights_or_a_meta_key_is_named(tmp_path):
    name, kwargs, charset, task = CASES[0]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    del ckpt["state_dict"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"{path} lacks 'state_dict'"):
        load_model(path)
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    del ckpt["meta"]["charset"], ckpt["meta"]["task"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"{path}: meta lacks charset, task$"):
        load_model(path)


def test_a_checkpoint_of_another_version_is_refused_naming_it(tmp_path):
    model = build_model("hanzi_cnn", 3, width=0.125)
    ckpt = make_checkpoint(model, _meta("hanzi_cnn", {"width": 0.125}, list("abc"), "hanzi"))
    path = tmp_path / "future.pt"
    save_atomic({**ckpt, "version": 2}, path)
    with pytest.raises(CheckpointError, match=r"future\.pt has version 2; this code reads 1"):
        load_model(path)


def test_weights_must_fit_the_model(tmp_path):
    model = build_model("hanzi_cnn", 3, width=0.125)
    ckpt = make_checkpoint(model, _meta("hanzi_cnn", {"width": 0.125}, list("abcd"), "hanzi"))
    path = tmp_path / "wrong.pt"
    save_atomic(ckpt, path)
    with pytest.raises(CheckpointError, match=r"wrong\.pt.*do not fit"):
        load_model(path)


def test_weights_that_do_not_fit_name_three_problems_and_count_the_rest(tmp_path):
    name, kwargs, charset, task = CASES[2]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    gone = list(ckpt["state_dict"])[:5]  # in the model's own order, which the problems follow
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k not in gone}
    torch.save(ckpt, path)
    listed = "; ".join(f"missing {k}" for k in gone[:3])
    with pytest.raises(CheckpointError, match=re.escape(f": {listed} (and 2 more)")):
        load_model(path)


def test_weights_holding_nan_are_refused_naming_the_weight(tmp_path):
    name, kwargs, charset, task = CASES[2]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key][0] = float("nan")
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"{path}: weight {re.escape(key)} holds NaN"):
        load_model(path)


def test_kwargs_edited_to_a_huge_model_are_refused_before_it_is_built(tmp_path):
    """An untrusted file's meta asks for LSTM layers of 200,000 units (640 GB of weights): the
    shapes are compared on the meta device first, so the error names the tensor instead of
    exhausting the machine's memory."""
    kwargs = {"width": 0.125, "hidden": 16}
    meta = _meta("crnn_vgg", kwargs, list("abc中文"), "line")
    save_model(tmp_path / "ok.pt", build_model("crnn_vgg", 5, **kwargs), meta)
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    ckpt["meta"]["model_kwargs"]["hidden"] = 200_000
    save_atomic(ckpt, tmp_path / "huge.pt")
    shapes = r"rnn\.weight_ih_l0 is \(64, 64\), the model's \(800000, 64\)"
    with pytest.raises(
        CheckpointError, match=rf"huge\.pt: weights do not fit model 'crnn_vgg': {shapes}"
    ):
        load_model(tmp_path / "huge.pt")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.to(torch.complex64), "holds complex values (torch.complex64), the model's "
         "floating-point (torch.float32)"),
        (lambda t: t.round().to(torch.int32), "holds integer values (torch.int32)"),
        (lambda t: t.to_sparse(), "is a sparse_coo tensor"),
    ],
    ids=["complex", "integer", "sparse"],
)  # fmt: skip
def test_weights_of_another_kind_of_number_are_refused_naming_them(tmp_path, change, words):
    """Loading would cast them (a complex weight with only a warning, an integer one without a
    word) and every reading would be garbage."""
    meta = _meta("expr_crnn", {"width": 0.25}, list("0123456789+-*()"), "expr")
    save_model(tmp_path / "ok.pt", build_model("expr_crnn", 15, width=0.25), meta)
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.dim() == 4)
    ckpt["state_dict"][key] = change(ckpt["state_dict"][key])
    save_atomic(ckpt, tmp_path / "odd.pt")
    message = f"odd.pt: weights do not fit model 'expr_crnn': {key} {words}"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_model(tmp_path / "odd.pt")


def test_save_atomic_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_atomic({"format": "x", "n": torch.arange(3)}, path)
    before = path.read_bytes()
    # A local lambda cannot be pickled: AttributeError up to Python 3.13, PicklingError from
    # 3.14, the same words. torch.save's own error comes out, and the old file stays.
    with pytest.raises(
        (pickle.PicklingError, AttributeError), match=r"^Can't pickle local object .*<lambda>"
    ):
        save_atomic({"bad": lambda: 0}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]

    # Any other failure inside torch.save comes out as it was raised, and the old file stays.
    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("this object cannot be saved")

    with pytest.raises(RuntimeError, match=r"^this object cannot be saved$"):
        save_atomic({"n": torch.arange(100_000), "bad": Unsaveable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_resume_payload_loads_with_weights_only(tmp_path):
    model = build_model("crnn_vgg", 3, width=0.125, hidden=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 1, 32, 40)).sum().backward()
    opt.step()
    resume = {
        "optimizer": opt.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "history": [{"step": 1, "loss": 0.5}],
    }
    ckpt = make_checkpoint(
        model, _meta("crnn_vgg", {"width": 0.125, "hidden": 16}, list("abc"), "line"), resume
    )
    path = tmp_path / "resume.pt"
    save_atomic(ckpt, path)
    back = load_checkpoint(path)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["resume"]["optimizer"])
    assert torch.equal(back["resume"]["rng"]["torch"], ckpt["resume"]["rng"]["torch"])


def _text_image(width: int, height: int) -> Image.Image:
    img = Image.new("L", (width, height), 235)
    ImageDraw.Draw(img).rectangle([2, 2, width // 2, height - 3], fill=20)
    return img


@pytest.mark.parametrize(("name", "kwargs", "charset", "task"), CASES[:2])
def test_a_lines_reading_does_not_depend_on_what_it_is_read_with(name, kwargs, charset, task):
    # A folder holding one very long line: padded to its width, the short lines' BiLSTM would
    # read thousands of frames of padding and give other readings than alone.
    torch.manual_seed(0)
    model = build_model(name, len(charset), **kwargs)
    meta = _meta(name, kwargs, charset, task)
    short = [_text_image(w, 32) for w in (40, 57, 64, 100, 131)]
    together = predict(model, meta, [*short, _text_image(4000, 32)], batch_size=64, device="cpu")
    for image, read_together in zip(short, together, strict=False):
        (read_alone,) = predict(model, meta, [image], batch_size=64, device="cpu")
        assert read_together.text == read_alone.text
        assert read_together.confidence == pytest.approx(read_alone.confidence, rel=1e-4, abs=0)


@pytest.mark.parametrize(("name", "kwargs", "charset", "task"), CASES)
def test_predict_keeps_input_order(name, kwargs, charset, task):
    torch.manual_seed(0)
    model = build_model(name, len(charset), **kwargs)
    meta = _meta(name, kwargs, charset, task)
    sizes = [(120, 32), (40, 32), (300, 64), (64, 64), (90, 60)]
    images = [_text_image(w, h) for w, h in sizes]
    together = predict(model, meta, images, batch_size=2, device="cpu", top_k=2)
    assert len(together) == len(images)
    # Batch by batch equals one image at a time: line images are batched by width bucket and
    # padded to the bucket's width, so what they are read with does not change their input.
    alone = [predict(model, meta, [im], batch_size=1, device="cpu")[0] for im in images]
    assert [p.text for p in together] == [p.text for p in alone]
    assert [p.confidence for p in together] == pytest.approx(
        [p.confidence for p in alone], rel=1e-4, abs=0
    )
    for p in together:
        assert 0.0 <= p.confidence <= 1.0
        assert p.top_k and p.top_k[0][0] == p.text
        assert set(p.text) <= set(charset)
        if task == "expr":
            assert p.value == expression_value(p.text)


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda m: m.update(charset=[*m["charset"][:-1], m["charset"][0]]), "twice"),
        (lambda m: m.update(charset=[*m["charset"][:-1], "ab"]), "not a single character"),
        (lambda m: m.update(task="nosuch"), "unknown task 'nosuch'"),
        (lambda m: m.update(input={"kind": "line", "height": 0}), "input geometry"),
        # a line model marked as the reader's task: its readings would be read as capitals
        (lambda m: m.update(task="short"), "reads line images, but the file's task 'short'"),
    ],
)
def test_a_checkpoint_whose_meta_no_model_has_is_refused(tmp_path, edit, error):
    name, kwargs, charset, task = CASES[0]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    edit(ckpt["meta"])
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"{path}: .*{error}"):
        load_model(path)


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (
            lambda c: c["meta"].update(charset=5),
            r"meta\.charset is the int 5, not a list of strings",
        ),
        (lambda c: c["meta"].update(model_kwargs=[1]), r"meta\.model_kwargs is the list \[1\]"),
        (lambda c: c["meta"].update(input="x"), r"meta\.input is the str 'x', not a mapping"),
        (lambda c: c["meta"].update(train="x"), r"meta\.train is the str 'x', not a mapping"),
        (lambda c: c["meta"].update(step="x"), r"meta\.step is the str 'x', not a whole number"),
        (lambda c: c["meta"].update(model=3, task=None), r"meta\.model is the int 3.*meta\.task"),
        (lambda c: c.update(meta="m"), r"meta is the str 'm', not a mapping"),
        (lambda c: c.update(state_dict=[1]), r"state_dict is the list \[1\], not a mapping"),
    ],
)
def test_a_checkpoint_holding_the_wrong_types_is_named_with_the_key(tmp_path, edit, error):
    """A damaged or foreign file's meta is read for what it is: each key of the wrong type named
    with the file, never int()'s, dict()'s or load_state_dict's own words."""
    name, kwargs, charset, task = CASES[0]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    edit(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"{path}.*{error}"):
        load_model(path)
    with pytest.raises(CheckpointError, match=error):
        read_meta(path)


@pytest.mark.parametrize("step", [-1, True, 2.0])
def test_a_meta_step_that_is_no_whole_number_of_steps_is_refused(tmp_path, step):
    name, kwargs, charset, task = CASES[0]
    path = tmp_path / "model.pt"
    save_model(path, build_model(name, len(charset), **kwargs), _meta(name, kwargs, charset, task))
    ckpt = load_checkpoint(path)
    ckpt["meta"]["step"] = step
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=rf"meta\.step is the {type(step).__name__} "):
        read_meta(path)


def test_files_that_are_no_checkpoint_are_named_for_what_they_are(tmp_path):
    for i, body in enumerate(["not a checkpoint\n", "tasks:\n a: 1\n", "hello", "char count\n"]):
        text = tmp_path / f"notes{i}.pt"
        text.write_text(body)
        with pytest.raises(
            CheckpointError, match=rf"notes{i}\.pt is not a PyTorch checkpoint"
        ) as e:
            load_checkpoint(text)
        assert not isinstance(e.value, UntrustedCheckpointError)
    with pytest.raises(CheckpointError, match=r"is a folder \(give its model\.pt\)"):
        load_checkpoint(tmp_path)
    # A plain pickle (not torch.save's): the error alone, not torch's protocol warning first.
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=r"plain\.pt is not a PyTorch checkpoint"):
            load_checkpoint(plain)


class _HoldsAModule(torch.nn.Module):
    """A model of one's own whose first layer is named ``module``, as DDP names what it wraps."""

    def __init__(self) -> None:
        super().__init__()
        self.module = torch.nn.Conv2d(1, 2, 3)
        self.head = torch.nn.Linear(2, 3)


def test_only_parallel_wrappers_are_taken_off():
    model = _HoldsAModule()
    keys = sorted(model.state_dict())
    assert keys == ["head.bias", "head.weight", "module.bias", "module.weight"]
    assert unwrap(model) is model  # make_checkpoint stores unwrap(model).state_dict()
    assert unwrap(torch.nn.DataParallel(model)) is model


def test_a_wrapped_models_checkpoint_loads_into_the_plain_model(tmp_path):
    """A model trained under a parallel wrapper is saved with the plain model's keys (no
    ``module.`` prefix), so its model.pt loads without the wrapper."""
    torch.manual_seed(0)
    model = build_model("hanzi_cnn", 3, width=0.125)
    meta = _meta("hanzi_cnn", {"width": 0.125}, list("abc"), "hanzi")
    wrapped = torch.nn.DataParallel(model)
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    path = tmp_path / "model.pt"
    save_model(path, wrapped, meta)
    assert sorted(load_checkpoint(path)["state_dict"]) == sorted(model.state_dict())
    loaded, _ = load_model(path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


# torch.compile imports torch._dynamo, which warns about torch.jit's deprecation on import
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_compiled_models_checkpoint_has_the_plain_models_keys(tmp_path):
    model = build_model("hanzi_cnn", 3, width=0.125)
    compiled = torch.compile(model)  # wraps only: nothing is compiled until it is called
    assert unwrap(compiled) is model
    ckpt = make_checkpoint(compiled, _meta("hanzi_cnn", {"width": 0.125}, list("abc"), "hanzi"))
    assert sorted(ckpt["state_dict"]) == sorted(model.state_dict())


@pytest.mark.parametrize(("name", "kwargs", "charset", "task"), CASES)
def test_batches_hold_at_most_batch_size_images_each_read_once_narrowest_first(
    name, kwargs, charset, task
):
    from models.predict import batches

    meta = _meta(name, kwargs, charset, task)
    images = [_text_image(w, 32) for w in (300, 40, 64, 41, 300, 40, 129, 40, 40)]
    got = list(batches(meta, images, batch_size=2))
    indices = [i for idx, _, _ in got for i in idx]
    assert sorted(indices) == list(range(len(images)))  # each image once
    for idx, batch, widths in got:
        assert 1 <= len(idx) <= 2 and batch.shape[0] == len(widths) == len(idx)
        assert idx == sorted(idx)  # input order within a bucket
    padded = [batch.shape[-1] for _, batch, _ in got]
    assert padded == sorted(padded)  # the narrowest bucket first
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(batches(meta, images, batch_size=0))


def test_a_grammar_fallback_prefix_is_given_no_value(monkeypatch):
    """``predict`` gives an ``expr`` reading its value, except the grammar decoder's fallback
    prefix, which its grammar rejects even where its text evaluates (``12`` of ``12+``)."""
    import models.predict
    from models.families import Prediction

    name, kwargs, charset, task = CASES[1]
    model = build_model(name, len(charset), **kwargs)
    meta = _meta(name, kwargs, charset, task)
    real = models.predict.make_family

    class Prefixes:
        """The family's decoder, its readings replaced by a grammatical ``12`` and then a
        fallback ``12``."""

        def __init__(self, family):
            self.family = family

        def decode(self, outputs, widths, **kwargs):
            n = len(self.family.decode(outputs, widths, **kwargs))
            return [Prediction("12", 0.5, [("12", 0.5)], grammatical=i % 2 == 0) for i in range(n)]

    monkeypatch.setattr(models.predict, "make_family", lambda *a: Prefixes(real(*a)))
    images = [_text_image(100, 32), _text_image(100, 32)]
    got = predict(model, meta, images, batch_size=2, device="cpu", decoder="grammar")
    assert [(p.text, p.grammatical, p.value) for p in got] == [
        ("12", True, expression_value("12")),
        ("12", False, None),
    ]
    assert expression_value("12") is not None
