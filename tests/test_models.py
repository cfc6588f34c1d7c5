"""The recognizers and the registry: every model builds, runs and learns; configs are checked."""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from models import conformance
from models.backbones import GRCL
from models.conformance import CHARSET, CHECKS, check_model
from models.devices import memory_format
from models.families import make_family
from models.reader import reader
from models.registry import (
    MODELS,
    ModelEntry,
    build_model,
    check_kwargs,
    family_of,
    input_spec,
    output_length,
    validate_experiment,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

# Small enough to run in milliseconds on a CPU: each entry's own small instance (``tiny``), as
# `synthocr-check-model` checks it.
TINY = {name: dict(entry.tiny) for name, entry in MODELS.items()}
CHARSET = list(CHARSET)


def images(name: str, batch: int = 2, width: int = 72) -> torch.Tensor:
    return conformance.images(name, TINY[name], batch, width)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("check", [c for c in CHECKS if c != "onnx"])  # tests/test_export.py
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_keeps_the_registry_contract(name: str, check: str) -> None:
    """`models.conformance`: the checks a model of one's own gets from ``synthocr-check-model``
    (signature, output layout and frame counts, loss and gradients in fp32 and bf16 autocast,
    channels-last, the class layer's axis)."""
    [result] = check_model(name, checks=[check])
    assert result.ok, f"{name} {check}: {result.detail}"


@pytest.mark.parametrize("name", [*sorted(MODELS), "plain_tuple_reader"])
def test_bf16_autocast_reaches_every_models_logits(name: str, monkeypatch) -> None:
    # On a GPU, training runs the forward under bf16 autocast (models.devices.autocast) and the
    # family's loss in fp32. The same autocast on the CPU checks the dtypes of that path (the
    # families' casts, the reader's masks, the GRCL gates), though not CUDA's kernels.
    # An attention model of one's own may return a plain (logits, masks) tuple: README.md,
    # 'Adding an architecture', and these tests run on every entry a user adds.
    entry = MODELS["reader"]
    monkeypatch.setitem(
        MODELS, "plain_tuple_reader", replace(entry, target="tests.test_models:_plain_tuple")
    )
    kwargs = dict(MODELS[name].tiny)
    model = build_model(name, len(CHARSET), **kwargs)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(conformance.images(name, kwargs, 2))
    if name == "plain_tuple_reader":
        assert type(out) is tuple  # not a ReaderOutput: no .logits
    assert (out[0] if isinstance(out, tuple) else out).dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["crnn_vgg", "crnn_grcnn", "expr_crnn"])
def test_recurrent_layers_run_in_fp32_under_autocast(name: str) -> None:
    # CUDA's autocast runs a cuDNN LSTM/GRU in fp16 whatever its dtype (no gradient scaler in
    # bf16 training): models.crnn.recurrent runs them in fp32 with autocast off. The CPU's
    # autocast would give bf16: each recurrent layer's output must be fp32 all the same, the
    # logits bf16 again (the classifier runs under autocast), and gradients reach the layers.
    kwargs = dict(MODELS[name].tiny)
    model = build_model(name, len(CHARSET), **kwargs)
    seen: dict[str, torch.dtype] = {}
    for layer_name, layer in model.named_modules():
        if isinstance(layer, torch.nn.RNNBase):
            layer.register_forward_hook(
                lambda _m, _i, out, key=layer_name: seen.__setitem__(key, out[0].dtype)
            )
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(conformance.images(name, kwargs, 2))
    assert seen and set(seen.values()) == {torch.float32}, seen
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    rnns = [m for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in rnns for p in m.parameters())
    # Without autocast the layers run as they are: fp32, the graph export and evaluation trace.
    seen.clear()
    model(conformance.images(name, kwargs, 2))
    assert set(seen.values()) == {torch.float32}


def _plain_tuple(num_classes: int, **kwargs) -> torch.nn.Module:
    """The reader, returning a plain ``(logits, masks)`` tuple rather than a ReaderOutput."""
    return _PlainTuple(reader(num_classes, **kwargs))


# The registry checks a factory's signature against its entry: the reader's, keyword for keyword.
_plain_tuple.__signature__ = inspect.signature(reader)  # type: ignore[attr-defined]


class _PlainTuple(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(self.model(x))


def test_the_readers_masks_start_whole_and_stay_in_0_1() -> None:
    model = build_model("reader", len(CHARSET), **TINY["reader"]).eval()
    with torch.no_grad():
        _, masks = model(images("reader", 3))
    assert torch.equal(masks[:, 0], torch.ones(3, 40, 40))
    assert masks.min() >= 0 and masks.max() <= 1


@pytest.mark.parametrize(
    ("check", "model", "message"),
    [
        ("outputs", "undercounts", "gave 5 frames for images 16 px wide, but its output_length"),
        ("channels_last", "layout_bound", "output 0 differs in channels_last"),
        ("classes", "classes_last", "grows with the classes on an axis other than its first"),
        ("signature", "no_width", "takes no width"),
        ("signature", "drifted", "keyword-only arguments are {'width': 1.0, 'hidden': 256}"),
        ("onnx", "adaptive", "ONNX export of operator adaptive pooling"),
        ("onnx", "torch_attention", "nn.MultiheadAttention fixes the traced sequence length"),
        ("outputs", "batch_bound", "image 0's output 0 read in a batch of 2 differs from its"),
    ],
)
def test_the_contract_checks_fail_naming_what_a_model_breaks(
    monkeypatch, capfd, check, model, message
):
    # the test factories below take crnn_vgg's width and hidden, not its batch_norm_all
    vgg = replace(MODELS["crnn_vgg"], kwargs={"width": 1.0, "hidden": 256})
    entries = {
        # an output_length that undercounts the forward's frames
        "undercounts": replace(
            MODELS["crnn_vgg"], output_length=lambda image_width, **kw: image_width // 4
        ),
        "layout_bound": replace(vgg, target="tests.test_models:_layout_bound"),
        "classes_last": replace(vgg, target="tests.test_models:_classes_last"),
        "adaptive": replace(vgg, target="tests.test_models:_adaptive"),
        "batch_bound": replace(vgg, target="tests.test_models:_batch_bound"),
        "torch_attention": replace(vgg, target="tests.test_models:_torch_attention"),
        "no_width": replace(
            vgg, target="tests.test_models:_no_width", kwargs={"hidden": 256}, tiny={}
        ),
    }
    entries["drifted"] = replace(entries["layout_bound"], kwargs={"width": 1.0, "hidden": 128})
    monkeypatch.setitem(MODELS, model, entries[model])
    kwargs = {} if model in ("no_width", "drifted") else TINY["crnn_vgg"]
    [result] = check_model(model, kwargs, checks=[check])
    assert not result.ok and message in result.detail, result
    assert len(result.detail.splitlines()) == 1
    out, err = capfd.readouterr()
    assert len(out + err) < 1000  # not the pages of graph a failed export prints
    if check == "signature":  # the checks that build the model are not run after it
        rest = check_model(model, kwargs)[1:]
        assert {(r.ok, r.detail) for r in rest} == {(False, "not run: the signature check failed")}


class _LayoutBound(torch.nn.Module):
    """Reads its weights' memory layout: in channels-last it gives other logits."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.kernel = torch.nn.Parameter(torch.zeros(2, 2, 3, 3))
        self.fc = torch.nn.Linear(1, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1] // 4 + 1
        flag = float(self.kernel.is_contiguous(memory_format=torch.channels_last))
        feats = x.new_full((frames, x.shape[0], 1), flag) + x.mean() + self.kernel.sum()
        return self.fc(feats)


class _ClassesLast(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.proj = torch.nn.Parameter(torch.zeros(4, num_classes + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1] // 4 + 1
        return x.new_zeros(frames, x.shape[0], 4) @ self.proj


def _layout_bound(num_classes: int, *, width: float = 1.0, hidden: int = 256) -> torch.nn.Module:
    return _LayoutBound(num_classes)


def _classes_last(num_classes: int, *, width: float = 1.0, hidden: int = 256) -> torch.nn.Module:
    return _ClassesLast(num_classes)


class _Adaptive(torch.nn.Module):
    """Pools the height with an adaptive pooling, whose output size ONNX cannot leave free."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d((1, None))
        self.fc = torch.nn.Linear(1, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(x)[:, :, 0, ::4]  # N, 1, W // 4 + 1 (W % 4 > 0) or W // 4
        f = torch.cat([f, f[:, :, :1]], 2)[:, :, : x.shape[-1] // 4 + 1]
        return self.fc(f.permute(2, 0, 1))


def _adaptive(num_classes: int, *, width: float = 1.0, hidden: int = 256) -> torch.nn.Module:
    return _Adaptive(num_classes)


class _BatchBound(torch.nn.Module):
    """Centres each pixel on its mean over the batch (``x.mean(0)``, meant as a per-image
    mean): an image's logits then follow the other images read with it."""

    def __init__(self, num_classes: int, width: float, hidden: int) -> None:
        super().__init__()
        self.crnn = build_model("crnn_vgg", num_classes, width=width, hidden=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.crnn(x - x.mean(0))


def _batch_bound(num_classes: int, *, width: float = 1.0, hidden: int = 256) -> torch.nn.Module:
    return _BatchBound(num_classes, width, hidden)


class _TorchAttention(torch.nn.Module):
    """A transformer head on the frames of a strided convolution, from torch's own
    ``nn.TransformerEncoder``, whose attention reshapes by the traced sizes."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, hidden, (32, 4), stride=(32, 4), padding=(0, 2))
        layer = torch.nn.TransformerEncoderLayer(hidden, 2, 2 * hidden, dropout=0.0)
        self.encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.fc = torch.nn.Linear(hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(self.conv(x)[:, :, 0].permute(2, 0, 1)))  # W // 4 + 1


def _torch_attention(num_classes: int, *, width: float = 1.0, hidden: int = 256):
    return _TorchAttention(num_classes, hidden)


def _no_width(num_classes: int, *, hidden: int = 256) -> torch.nn.Module:
    return _LayoutBound(num_classes)


def test_expr_drop_frames_changes_length() -> None:
    kwargs = {**TINY["expr_crnn"], "drop_frames": 0}
    model = build_model("expr_crnn", 15, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 60, 180))
    assert out.shape[0] == 45 == output_length("expr_crnn", 180, **kwargs)
    assert output_length("expr_crnn", 180) == 43  # the winner's two dropped frames by default
    widths = torch.tensor([180, 100])
    assert output_length("crnn_vgg", widths).tolist() == [46, 26]


def test_expr_filters_set_each_module() -> None:
    model = build_model("expr_crnn", 15, filters=[8, 32, 64], hidden=16, dense=16, input_height=32)
    convs = [m for m in model.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 32, 32, 64, 64]
    assert model.dense.in_features == 64 * 4  # channels x height 32 // 8
    with torch.no_grad():
        out = model(torch.rand(2, 1, 32, 128))
    assert out.shape == (output_length("expr_crnn", 128), 2, 16)
    # filters replace width: the width multiplier is ignored when both are given
    same = build_model("expr_crnn", 15, filters=[8, 32, 64], width=2.0, input_height=32)
    assert same.body.out_channels == 64


def test_vgg_batch_norm_all_puts_batch_norm_after_every_conv() -> None:
    """The paper's VGG has batch norm after three of its seven convolutions (the default);
    ``batch_norm_all`` after each, the convs then without bias; shapes and frames unchanged."""

    def layout(model: torch.nn.Module) -> list[tuple[bool, bool]]:
        layers = list(model.backbone.features.modules())
        convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d)]
        return [
            (layers[i].bias is not None, isinstance(layers[i + 1], torch.nn.BatchNorm2d))
            for i in convs
        ]

    paper = build_model("crnn_vgg", 15, **TINY["crnn_vgg"])
    assert [bn for _, bn in layout(paper)] == [False, False, True, False, True, False, True]
    every = build_model("crnn_vgg", 15, **TINY["crnn_vgg"], batch_norm_all=True)
    assert layout(every) == [(False, True)] * 7
    with torch.no_grad():
        out = every.eval()(torch.rand(2, 1, 32, 100))
    assert out.shape == (output_length("crnn_vgg", 100), 2, 16)
    with pytest.raises(ValueError, match=r"batch_norm_all: expected bool .*got 'yes'"):
        check_kwargs("crnn_vgg", {"batch_norm_all": "yes"})


@pytest.mark.parametrize("name", ["crnn_vgg", "crnn_grcnn"])
def test_crnn_forget_bias_sets_every_forget_gate_and_nothing_else(name: str) -> None:
    """``forget_bias`` starts each BiLSTM forget gate's summed bias at the value (bias_ih's
    forget quarter, bias_hh's 0); every other parameter is the one drawn without it, from the
    same seed; shapes and frames unchanged; a value that is not a finite number is refused."""
    torch.manual_seed(0)
    plain = build_model(name, 15, **TINY[name])
    torch.manual_seed(0)
    biased = build_model(name, 15, **TINY[name], forget_bias=1.0)
    h = biased.rnn.hidden_size
    changed = set()
    for (key, a), (_, b) in zip(
        plain.state_dict().items(), biased.state_dict().items(), strict=True
    ):
        if not torch.equal(a, b):
            changed.add(key)
    assert changed == {k for k in biased.state_dict() if k.startswith("rnn.bias_")}
    for key, param in biased.rnn.named_parameters():
        if key.startswith("bias_"):
            forget = param[h : 2 * h]
            assert torch.all(forget == (1.0 if key.startswith("bias_ih") else 0.0)), key
            assert torch.equal(param[:h], dict(plain.rnn.named_parameters())[key][:h])
    with torch.no_grad():
        out = biased.eval()(torch.rand(2, 1, 32, 100))
    assert out.shape == (output_length(name, 100), 2, 16)
    for bad in ("1", True, float("nan")):
        with pytest.raises(ValueError) as e:
            check_kwargs(name, {"forget_bias": bad})
        assert str(e.value) == f"model_kwargs.forget_bias: must be a finite number, got {bad!r}"
    check_kwargs(name, {"forget_bias": None})


@pytest.mark.parametrize("bad", [[8, 32], [8, 0, 64], [8, 32.0, 64], "abc", [True, 8, 8]])
def test_expr_filters_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="filters must be three channel counts"):
        build_model("expr_crnn", 15, filters=bad)


def test_every_entry_gives_its_default_geometry_and_a_tiny_instance() -> None:
    for name, entry in MODELS.items():
        assert input_spec(name) == dict(entry.input)
        assert entry.tiny, f"{name} has no tiny kwargs for the contract checks"
        check_kwargs(name, entry.tiny, where=f"{name} tiny")


def test_an_entrys_tiny_kwargs_are_checked_as_a_configs(monkeypatch) -> None:
    bad = replace(MODELS["crnn_vgg"], tiny={"hidden": 0, "depth": 2})
    monkeypatch.setitem(MODELS, "bad_tiny", bad)
    with pytest.raises(ValueError) as e:
        check_model("bad_tiny")
    assert str(e.value) == (
        "model 'bad_tiny' (models/registry.py MODELS): tiny.hidden: must be >= 1, got 0; "
        "tiny.depth: the model takes no argument 'depth'; valid: width, hidden, batch_norm_all, "
        "forget_bias"
    )


@pytest.mark.parametrize("name", ["crnn_vgg", "crnn_grcnn"])
def test_crnn_requires_height_32(name: str) -> None:
    model = build_model(name, 10, **TINY[name])
    with pytest.raises(ValueError, match="height 32"):
        model(torch.rand(2, 1, 48, 100))
    with pytest.raises(ValueError, match="N,1,32,W"):
        model(torch.rand(2, 3, 32, 100))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("hanzi_cnn", (2, 1, 48, 48)), ("reader", (2, 1, 40, 41)), ("expr_crnn", (2, 1, 32, 180))],
)
def test_geometry_is_checked(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, 10, **TINY[name])
    with pytest.raises(ValueError, match="expects images"):
        model(torch.rand(*shape))


@pytest.mark.parametrize(
    "kwargs", [{}, {"width": 0.5, "hidden": 128}, {"width": 0.125, "hidden": 32}]
)
def test_grcnn_no_larger_than_vgg(kwargs: dict) -> None:
    vgg = n_params(build_model("crnn_vgg", 100, **kwargs))
    grcnn = n_params(build_model("crnn_grcnn", 100, **kwargs))
    assert grcnn <= vgg, (grcnn, vgg)


def test_grcl_shares_its_recurrent_and_gate_weights_over_its_iterations() -> None:
    # Wang and Hu's GRCL unrolls one recurrent convolution and one gate over its iterations:
    # each iteration adds only its own batch norms (5 of 16 channels: 160 weights), no conv.
    def weights(iterations: int) -> dict[str, int]:
        layer = GRCL(8, 16, iterations)
        convs = sum(
            p.numel()
            for m in layer.modules()
            if isinstance(m, torch.nn.Conv2d)
            for p in m.parameters()
        )
        return {"convs": convs, "all": n_params(layer)}

    one, five = weights(1), weights(5)
    assert one["convs"] == five["convs"] == (8 + 16) * 16 + (8 + 16) * 16 * 9
    assert five["all"] - one["all"] == 4 * 5 * 2 * 16


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'crnn'") as e:
        build_model("crnn", 10)
    for name in MODELS:
        assert name in str(e.value)


def test_a_misspelt_model_or_kwarg_gets_the_close_name() -> None:
    # as the config's unknown keys do (synth.schema): a typo in a model's name or argument
    with pytest.raises(ValueError, match=r"unknown model 'crnn_vg' \(did you mean 'crnn_vgg'\?\)"):
        build_model("crnn_vg", 10)
    with pytest.raises(ValueError) as e:
        check_kwargs("crnn_grcnn", {"iteration": 2, "depth": 3}, where="model_kwargs")
    assert str(e.value).splitlines() == [
        "model_kwargs.iteration: model 'crnn_grcnn' takes no argument 'iteration' (did you mean "
        "'iterations'?); valid: width, hidden, iterations, forget_bias",
        "model_kwargs.depth: model 'crnn_grcnn' takes no argument 'depth'; valid: width, hidden, "
        "iterations, forget_bias",
    ]


def test_unknown_kwarg_names_the_key() -> None:
    with pytest.raises(ValueError, match="hiden") as e:
        build_model("crnn_vgg", 10, hiden=64)
    assert "hidden" in str(e.value)  # the valid ones are listed
    with pytest.raises(ValueError, match="width: expected float"):
        build_model("crnn_vgg", 10, width="0.5")


def test_a_factory_made_as_its_module_runs_is_not_refused(tmp_path, monkeypatch) -> None:
    """A module that binds its factories as it runs (``globals()[...] = ...``) shows no such
    name in its source: it is not refused (the config check cannot tell), and its code digest,
    which every train job takes, does not depend on the names at all."""
    from models.registry import factory_problem, model_code

    (tmp_path / "dynnets.py").write_text(
        "from models.crnn import crnn_vgg\n"
        "for tag in ('a', 'b'):\n"
        "    globals()[f'crnn_{tag}'] = crnn_vgg\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = replace(MODELS["crnn_vgg"], target="dynnets:crnn_a")
    monkeypatch.setitem(MODELS, "dyn", entry)
    assert factory_problem(entry) is None
    assert len(model_code("dyn")) == 16
    assert type(build_model("dyn", 5, width=0.125, hidden=8)).__name__ == "CRNN"
    typo = replace(MODELS["crnn_vgg"], target="models.crnn:crnn_vg")
    monkeypatch.setitem(MODELS, "typo", typo)
    assert "defines no 'crnn_vg'" in factory_problem(typo)
    assert len(model_code("typo")) == 16  # the module's code; the name is the config's check


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            ModelEntry("models.crnn:crnn_vgg", "ctc", {"kind": "line", "height": 32}, {}),
            "a CTC model registers output_length",
        ),
        (
            ModelEntry("models.reader:reader", "attention", {"kind": "square", "size": 40}, {}),
            "an attention model takes a max_len keyword",
        ),
        (
            ModelEntry(
                "models.tiny_ctcc:tiny", "classification", {"kind": "square", "size": 8}, {}
            ),
            "the module of its factory, 'models.tiny_ctcc', cannot be found",
        ),
        (  # a typo in the function's name failed in the train job, after every shard was drawn
            ModelEntry(
                "models.crnn:crnn_vg", "ctc", {"kind": "line", "height": 32}, {}, lambda w: w
            ),
            "the module of its factory, 'models.crnn', defines no 'crnn_vg' (did you mean "
            "'crnn_vgg'?)",
        ),
        (
            ModelEntry("mine.tiny", "classification", {"kind": "square", "size": 8}, {}),
            "target 'mine.tiny' is not 'module:function'",
        ),
        (
            ModelEntry("models.crnn:crnn_vgg", "seq2seq", {"kind": "line"}, {}),
            "family 'seq2seq' is not one of classification, ctc, attention; a line input gives",
        ),
    ],
)
def test_a_registry_entry_missing_what_its_family_needs_is_named_when_the_config_is_read(
    monkeypatch, default_config: dict, entry: ModelEntry, problem: str
) -> None:
    """A model added to the registry is checked before any job runs: the config's check names
    the experiment and what the entry lacks, not a later KeyError or import error."""
    monkeypatch.setitem(MODELS, "mine", entry)
    config = copy.deepcopy(default_config)
    config["experiments"]["line_mine"] = {"task": "line", "model": "mine", "model_kwargs": {}}
    with pytest.raises(ValueError) as e:
        check(config, "line_mine")
    assert str(e.value).startswith(
        "experiments.line_mine.model: model 'mine' (models/registry.py MODELS): "
    )
    assert problem in str(e.value)


def test_text_and_list_kwargs_are_type_checked(monkeypatch) -> None:
    entry = ModelEntry(
        "models.crnn:crnn_vgg",
        "ctc",
        {"kind": "line", "height": 32},
        {"head": "gru", "sizes": [8, 16], "extra": None},
        lambda w, **_: w // 4,
    )
    monkeypatch.setitem(MODELS, "mine", entry)
    with pytest.raises(ValueError) as e:
        check_kwargs("mine", {"head": 3, "sizes": "8,16", "extra": "anything"})
    assert str(e.value).splitlines() == [
        "model_kwargs.head: expected str (default 'gru'), got 3",
        "model_kwargs.sizes: expected list (default [8, 16]), got '8,16'",
    ]


def test_registry_does_not_import_torch() -> None:
    code = "import sys, models.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- validate_experiment: the parse-time checks -------------------------------------------------


def load_config(name: str) -> dict:
    """A config file validated (and filled with defaults) exactly as the Snakefile does."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "configs" / name).read_text())
    validate(config, str(SCHEMA), set_default=True)
    return config


@pytest.fixture(scope="module")
def default_config() -> dict:
    return load_config("config.yaml")


@pytest.mark.parametrize("config_file", ["config.yaml", "smoke.yaml", "gpu.yaml"])
def test_shipped_configs_validate(config_file: str) -> None:
    config = load_config(config_file)
    assert config["experiments"]
    # charset.space has no default: a config without it keeps the charset's hash, and so the
    # charsets, shards and models an earlier version made
    assert all("space" not in task["charset"] for task in config["tasks"].values())
    for name, exp in config["experiments"].items():
        validate_experiment(name, exp, config["tasks"][exp["task"]])


GPU_EXPERIMENTS = sorted(yaml.safe_load((REPO / "configs" / "gpu.yaml").read_text())["experiments"])


def draw_texts(task: str, spec: Any, charset: list[str], longest: int) -> list[str]:
    """Two labels drawn with the samplers `synth.shards.generate` uses: the first of the longest
    length the task can produce, then the next one drawn, whatever its length (hanzi: the
    charset's first and last character)."""
    import numpy as np

    from synth.text import LineSampler, expression, short_text

    rng = np.random.default_rng(0)
    if task == "hanzi":
        return [charset[0], charset[-1]]
    if task == "expr":
        args = (spec.baidu_fraction, spec.operands, spec.max_digits, spec.operators)
        draw = partial(expression, rng, *args)
    elif task == "line":
        sampler = LineSampler(charset, spec.length, spec.corpus_fraction, spec.mix_fraction)
        draw = partial(sampler.sample, rng)
    else:
        draw = partial(short_text, rng, charset, spec.length)
    # expr's longest, five operands of two digits and parentheses, is about 1 draw in 900
    first = next(t for t in (draw() for _ in range(100_000)) if len(t) == longest)
    return [first, draw()]


@pytest.mark.parametrize("experiment", GPU_EXPERIMENTS)
def test_gpu_config_trains_a_step_on_rendered_samples(experiment, cjk_font, tmp_path) -> None:
    """Each experiment of configs/gpu.yaml at its real scale (model kwargs, charset, image
    geometry) takes one training step on CPU, on two samples rendered and degraded with its
    task's settings, one of them with the longest label the task can draw, written to a shard
    and read back through models.data (decoding, label check, resizing, padding): the loss is
    finite, every weight gets a finite gradient, and a CTC model's output gives each sample the
    frames its label needs (T >= 2L + 1, as the config check asks). GPU time is scarce: a shape
    or length error at this scale should show here, not in a GPU job's first minute."""
    import numpy as np

    from models.data import eval_batches
    from models.registry import label_lengths
    from models.specs import TrainSpec
    from synth.augment import degrade
    from synth.fonts import Face
    from synth.shards import Sample, draw, write_samples
    from synth.specs import split_config, task_spec

    config = load_config("gpu.yaml")
    exp = config["experiments"][experiment]
    task, name, kwargs = exp["task"], exp["model"], exp["model_kwargs"]
    task_cfg = config["tasks"][task]
    spec = task_spec(task, split_config(task, task_cfg, "train"))
    charset = spec.charset.build()
    longest = label_lengths(task, task_cfg)[1]
    texts = draw_texts(task, spec, charset, longest)
    # WenQuanYi Micro Hei draws every character of the four tasks' charsets
    face = Face(str(cjk_font), 0, "WenQuanYi Micro Hei", "Regular", frozenset(charset))
    rng = np.random.default_rng(1)
    images = [degrade(draw(spec, t, face, rng)[0], spec.degrade, rng) for t in texts]
    shard = tmp_path / "train-000000.tar"
    write_samples(
        shard,
        (
            Sample(f"{task}_train_000000_{i:06d}", im, {"text": t})
            for i, (im, t) in enumerate(zip(images, texts, strict=True))
        ),
        spec.png_level,
    )

    geometry = input_spec(name, **kwargs)
    family = make_family(name, charset, kwargs)
    (batch,) = eval_batches([str(shard)], geometry, 2, family)
    assert sorted(batch.texts) == sorted(texts)
    torch.manual_seed(0)
    layout = memory_format(torch.device("cpu"))  # as models.train lays out a CPU run
    model = build_model(name, family.num_classes, **kwargs).to(memory_format=layout).train()
    out = model(batch.images.contiguous(memory_format=layout))
    smoothing = TrainSpec.from_config(exp["train"]).label_smoothing
    loss = family.loss(out, family.encode(batch.texts), batch.widths, label_smoothing=smoothing)
    assert torch.isfinite(loss), f"{experiment}: loss {loss}"
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{experiment}.{pname}"

    logits = out[0] if isinstance(out, tuple) else out
    kind = family_of(name)
    if kind == "ctc":
        assert logits.shape[:2] == (output_length(name, batch.images.shape[3], **kwargs), 2)
        frames = family.input_lengths(batch.widths, logits.shape[0], 2).tolist()
        for text, t in zip(batch.texts, frames, strict=True):
            assert t >= 2 * len(text) + 1, f"{experiment}: {t} frames for {text!r}"
    elif kind == "attention":
        assert logits.shape == (2, family.steps, len(charset) + 1)
        assert family.max_len >= longest
    else:
        assert logits.shape == (2, len(charset))


def check(config: dict, name: str) -> None:
    exp = config["experiments"][name]
    validate_experiment(name, exp, config["tasks"][exp["task"]])


def test_rejects_ctc_output_too_short_for_expr(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["tasks"]["expr"].update(width=180, operands=[2, 8], max_digits=3)  # 33 chars, T=43
    with pytest.raises(ValueError, match=r"experiments\.expr_crnn.*T=43.*2\*33\+1 = 67"):
        check(config, "expr_crnn")
    config["tasks"]["expr"]["width"] = 300  # 75 - 2 frames >= 67
    check(config, "expr_crnn")


def test_train_shards_are_held_to_the_split_where_the_task_config_has_one(
    default_config: dict,
) -> None:
    config = copy.deepcopy(default_config)
    n = config["tasks"]["line"]["splits"]["train"]["shards"]
    config["experiments"]["line_crnn_vgg"]["train"]["shards"] = n
    check(config, "line_crnn_vgg")
    config["experiments"]["line_crnn_vgg"]["train"]["shards"] = n + 1
    with pytest.raises(
        ValueError,
        match=rf"experiments\.line_crnn_vgg\.train\.shards: {n + 1}, but "
        rf"tasks\.line\.splits\.train has {n} shard\(s\)",
    ):
        check(config, "line_crnn_vgg")
    # a bare task config (synthocr-check-model's: geometry, no splits) has nothing to hold it to
    del config["tasks"]["line"]["splits"]
    check(config, "line_crnn_vgg")


def test_rejects_bad_expr_filters_at_parse_time(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["experiments"]["expr_crnn"]["model_kwargs"]["filters"] = [8, 32]
    with pytest.raises(
        ValueError,
        match=r"experiments\.expr_crnn\.model_kwargs\.filters: .*three channel counts",
    ):
        check(config, "expr_crnn")


def test_rejects_ctc_output_too_short_for_lines(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["tasks"]["line"]["min_char_width"] = 6  # 6L // 4 + 1 < 2L + 1
    with pytest.raises(ValueError, match=r"experiments\.line_crnn_vgg.*min_char_width"):
        check(config, "line_crnn_vgg")
    config["tasks"]["line"]["min_char_width"] = 8  # 8L // 4 + 1 = 2L + 1
    check(config, "line_crnn_vgg")


def test_a_model_that_pools_the_width_by_8_needs_24_px_per_character(
    default_config: dict, monkeypatch
) -> None:
    """T >= 2L + 1, the issue's rule (CTC's least is 2L - 1): a ResNet-style model of stride 8
    gives 2 frames per 16 px character, 2L, and is refused, naming the key to raise; 24 px (3
    frames a character) passes for every length, one character included."""
    import dataclasses

    from models.registry import MODELS

    stride8 = dataclasses.replace(
        MODELS["crnn_vgg"], output_length=lambda image_width, **kw: image_width // 8
    )
    monkeypatch.setitem(MODELS, "crnn_vgg", stride8)
    config = copy.deepcopy(default_config)
    assert config["tasks"]["line"]["min_char_width"] == 16
    assert config["tasks"]["line"]["length"][0] == 1
    with pytest.raises(
        ValueError, match=r"T=2 output frames .*min_char_width \(16\) x 1 characters.*2\*1\+1 = 3"
    ):
        check(config, "line_crnn_vgg")  # 2L frames for L characters
    config["tasks"]["line"]["min_char_width"] = 23  # 23 // 8 = 2 frames for one character
    with pytest.raises(ValueError, match=r"T=2 output frames"):
        check(config, "line_crnn_vgg")
    config["tasks"]["line"]["min_char_width"] = 24
    check(config, "line_crnn_vgg")


def test_rejects_unknown_model_kwarg(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["experiments"]["line_crnn_grcnn"]["model_kwargs"]["depth"] = 3
    with pytest.raises(ValueError, match=r"experiments\.line_crnn_grcnn\.model_kwargs\.depth") as e:
        check(config, "line_crnn_grcnn")
    assert "iterations" in str(e.value)


def test_rejects_model_that_does_not_fit_the_task(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["experiments"]["bad"] = {"task": "hanzi", "model": "crnn_vgg", "model_kwargs": {}}
    with pytest.raises(ValueError, match=r"experiments\.bad: .*line images.*hanzi_cnn"):
        check(config, "bad")
    config["experiments"]["bad"] = {"task": "short", "model": "hanzi_cnn", "model_kwargs": {}}
    with pytest.raises(ValueError, match=r"experiments\.bad: .*input_size: 40"):
        check(config, "bad")
    config["experiments"]["bad"]["model_kwargs"] = {"input_size": 48}
    config["tasks"]["short"]["size"] = 48
    with pytest.raises(ValueError, match="single characters"):
        check(config, "bad")


def test_rejects_geometry_mismatch(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["tasks"]["line"]["height"] = 48
    with pytest.raises(ValueError, match=r"tasks\.line\.height is 48; set tasks\.line\.height: 32"):
        check(config, "line_crnn_vgg")
    config["tasks"]["hanzi"]["size"] = 48
    with pytest.raises(ValueError, match=r"model_kwargs\.input_size: 48"):
        check(config, "hanzi_cnn")
    config["experiments"]["hanzi_cnn"]["model_kwargs"]["input_size"] = 48
    check(config, "hanzi_cnn")


def test_rejects_reader_shorter_than_task(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["tasks"]["short"]["length"] = [1, 6]
    with pytest.raises(ValueError, match=r"experiments\.short_reader\.model_kwargs\.max_len"):
        check(config, "short_reader")
    config["experiments"]["short_reader"]["model_kwargs"] = {"max_len": 6}
    check(config, "short_reader")


def test_expr_longest_label_matches_the_generator(default_config: dict) -> None:
    import numpy as np

    from models.registry import label_lengths
    from synth.text import baidu_expression, long_expression

    task = {**default_config["tasks"]["expr"], "operands": [2, 5], "max_digits": 2}
    rng = np.random.default_rng(0)
    longest = max(
        len(long_expression(rng, task["operands"], task["max_digits"])) for _ in range(5000)
    )
    assert longest == label_lengths("expr", task)[1] == 16  # 5 * 2 digits + 4 operators + ()
    assert max(len(baidu_expression(rng)) for _ in range(500)) == 7
    assert label_lengths("expr", {**task, "baidu_fraction": 1.0})[1] == 7


def test_rejects_a_curriculum_no_label_can_pass(default_config: dict) -> None:
    """Expressions have 3 characters or more: a length curriculum would stall on its start."""
    import numpy as np

    from models.registry import label_lengths
    from synth.text import baidu_expression, long_expression

    task = default_config["tasks"]["expr"]
    rng = np.random.default_rng(0)
    shortest = min(len(long_expression(rng, task["operands"], 2)) for _ in range(2000))
    assert shortest == label_lengths("expr", task)[0] == 3
    assert min(len(baidu_expression(rng)) for _ in range(500)) == 5
    assert label_lengths("expr", {**task, "baidu_fraction": 1.0})[0] == 5

    config = copy.deepcopy(default_config)
    config["experiments"]["expr_crnn"]["train"]["curriculum_steps"] = 100
    with pytest.raises(
        ValueError, match=r"experiments\.expr_crnn\.train\.curriculum_steps: .*at least 3"
    ):
        check(config, "expr_crnn")
    config["tasks"]["short"]["length"] = [2, 4]
    with pytest.raises(ValueError, match=r"tasks\.short labels have at least 2"):
        check(config, "short_reader")
    config["tasks"]["short"]["length"] = [1, 4]
    check(config, "short_reader")  # the default curriculum passes


def test_rejects_label_smoothing_on_ctc_models(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    for name in ("hanzi_cnn", "short_reader", "expr_crnn", "line_crnn_vgg"):
        config["experiments"][name]["train"]["label_smoothing"] = 0.1
    check(config, "hanzi_cnn")
    check(config, "short_reader")
    for name in ("expr_crnn", "line_crnn_vgg"):
        with pytest.raises(
            ValueError, match=rf"experiments\.{name}\.train\.label_smoothing: .*CTC"
        ):
            check(config, name)


def test_the_alignment_loss_only_for_line_models(default_config: dict) -> None:
    """Only the line task's shards record where characters are drawn: align_weight elsewhere
    (a classifier, the reader, the expr CTC model) is an error naming the key."""
    config = copy.deepcopy(default_config)
    for name in config["experiments"]:
        config["experiments"][name]["train"]["align_weight"] = 1.0
    check(config, "line_crnn_vgg")
    check(config, "line_crnn_grcnn")
    for name in ("hanzi_cnn", "short_reader", "expr_crnn"):
        with pytest.raises(ValueError, match=rf"experiments\.{name}\.train\.align_weight: "):
            check(config, name)


def test_grammar_decoder_only_where_the_task_has_a_grammar(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    for name in config["experiments"]:
        config["experiments"][name].setdefault("eval", {})["decoder"] = "grammar"
    check(config, "expr_crnn")
    for name in ("hanzi_cnn", "short_reader", "line_crnn_vgg", "line_crnn_grcnn"):
        with pytest.raises(ValueError, match=rf"experiments\.{name}\.eval\.decoder: 'grammar'"):
            check(config, name)


def test_every_problem_of_an_experiment_is_listed_at_once(default_config: dict) -> None:
    """Past the model's fit to its task, the checks are independent: a config with three
    problems in one experiment lists all three, one line each (the README's "every problem is
    listed at once"), not the first alone."""
    config = copy.deepcopy(default_config)
    exp = config["experiments"]["line_crnn_vgg"]
    exp.setdefault("eval", {})["decoder"] = "grammar"
    exp["train"].update(label_smoothing=0.1, align_weight=0.0, curriculum_steps=0, shards=10**6)
    with pytest.raises(ValueError) as e:
        check(config, "line_crnn_vgg")
    lines = str(e.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "experiments.line_crnn_vgg.train.shards",
        "experiments.line_crnn_vgg.eval.decoder",
        "experiments.line_crnn_vgg.train.label_smoothing",
    ]


def test_input_spec_follows_kwargs() -> None:
    assert input_spec("hanzi_cnn", input_size=48) == {"kind": "square", "size": 48}
    assert input_spec("expr_crnn", width=0.5) == {"kind": "line", "height": 60}
    assert input_spec("crnn_grcnn") == {"kind": "line", "height": 32}
    assert input_spec("reader", input_size=32)["size"] == 32


def test_rejects_batch_of_one_for_hanzi_cnn(default_config: dict) -> None:
    config = copy.deepcopy(default_config)
    config["experiments"]["hanzi_cnn"]["train"]["batch_size"] = 1
    with pytest.raises(ValueError, match=r"experiments\.hanzi_cnn\.train\.batch_size"):
        check(config, "hanzi_cnn")
    config["experiments"]["short_reader"]["train"]["batch_size"] = 1
    check(config, "short_reader")


def test_reader_reads_ink_of_either_polarity() -> None:
    """The reader masks ink, not pixels: dark-on-light and its inverse give the same input, and
    the background maps to 0, so a masked-out region reads as background."""
    from models.reader import ink

    page = torch.ones(1, 1, 40, 40)  # white, normalised to +1
    page[..., 10:20, 12:16] = -1.0  # a dark stroke
    assert torch.equal(ink(page), ink(-page))
    assert ink(page)[..., 0, 0].item() == pytest.approx(0.0, abs=0.05)
    assert ink(page)[..., 15, 14].item() == pytest.approx(1.0, abs=0.05)
    torch.manual_seed(0)
    model = build_model("reader", 10, **TINY["reader"]).eval()
    with torch.no_grad():
        a, b = model(page), model(-page)
    torch.testing.assert_close(a.logits, b.logits)
    assert torch.all(a.masks[:, 0] == 1)


def test_reader_convs_widen_each_columns_view() -> None:
    """``convs`` adds stride-1 convolutions after deep_reader's three: the output shapes stay,
    and a pixel now reaches feature columns further away (the receptive field grows by 8 px)."""
    torch.manual_seed(0)
    three = build_model("reader", 10, **TINY["reader"]).eval()
    four = build_model("reader", 10, **TINY["reader"], convs=4).eval()
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in r.features) for r in (three, four)]
    assert convs == [3, 4]
    page = torch.ones(2, 1, 40, 40)
    out = four(page)
    assert out.logits.shape == three(page).logits.shape == (2, 5, 11)
    assert out.masks.shape == (2, 5, 40, 40)

    def columns_reached(model: torch.nn.Module) -> int:
        torch.manual_seed(1)
        x = torch.rand(1, 1, 40, 40, requires_grad=True)
        model.features(x)[0, :, :, 5].sum().backward()  # the feature column mid-image
        return int((x.grad.abs().sum(dim=(0, 1, 2)) > 0).sum())  # image columns it sees

    assert columns_reached(four) == columns_reached(three) + 8
    with pytest.raises(ValueError, match="convs: must be >= 3"):
        build_model("reader", 10, convs=2)


@pytest.mark.parametrize(
    ("name", "key", "value", "error"),
    [
        ("line_crnn_vgg", "width", -1.5, r"width: must be > 0, got -1\.5"),
        ("line_crnn_vgg", "width", 0, r"width: must be > 0, got 0"),
        ("line_crnn_grcnn", "iterations", 0, r"iterations: must be >= 1, got 0"),
        ("hanzi_cnn", "dropout", 1.0, r"dropout: must be in \[0, 1\), got 1\.0"),
        ("short_reader", "max_len", 0, r"max_len: must be >= 1, got 0"),
        ("short_reader", "convs", 2, r"convs: must be >= 3 \(the reader's own three .*got 2"),
        ("expr_crnn", "drop_frames", -1, r"drop_frames: must be >= 0, got -1"),
    ],
)
def test_model_kwargs_values_are_checked_at_parse_time(default_config, name, key, value, error):
    """The factory would refuse these only in the train job, after every shard is rendered."""
    config = copy.deepcopy(default_config)
    config["experiments"][name].setdefault("model_kwargs", {})[key] = value
    with pytest.raises(ValueError, match=rf"^experiments\.{name}\.model_kwargs\.{error}$"):
        check(config, name)


def test_a_factory_that_cannot_be_imported_is_named_when_built(monkeypatch) -> None:
    entry = ModelEntry("models.crnn:crnn_vgx", "ctc", {"kind": "line", "height": 32}, {}, len)
    monkeypatch.setitem(MODELS, "mine", entry)
    with pytest.raises(
        ValueError,
        match=r"model 'mine': its factory models\.crnn:crnn_vgx cannot be imported: AttributeError",
    ):
        build_model("mine", 10)


def test_an_entry_whose_defaults_drift_from_its_factorys_is_refused_when_built(monkeypatch):
    """An entry declaring hidden 128 for a factory whose default is 256 would train, silently,
    another model than its config names (and a check of kwargs would pass what the factory
    lacks)."""
    kwargs = {"width": 1.0, "hidden": 128, "iterations": 5, "forget_bias": None}
    drifted = replace(MODELS["crnn_grcnn"], kwargs=kwargs)
    monkeypatch.setitem(MODELS, "drifted", drifted)
    with pytest.raises(ValueError) as e:
        build_model("drifted", 10, width=0.125)
    assert str(e.value) == (
        "model 'drifted' (models/registry.py MODELS): its factory models.crnn:crnn_grcnn's "
        "keyword-only arguments are {'width': 1.0, 'hidden': 256, 'iterations': 5, "
        "'forget_bias': None}, its entry's kwargs {'width': 1.0, 'hidden': 128, 'iterations': 5, "
        "'forget_bias': None}: an entry's kwargs repeat its factory's keyword-only arguments "
        "and their defaults"
    )


def test_a_written_out_space_false_is_a_config_without_it() -> None:
    """``charset.space: false`` means unset: taken out when the config is read (the workflow
    calls the same function), so the charset's params, and every shard and model, stay those of
    a config that does not name it."""
    from synth.schema import with_defaults

    config = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    config["tasks"]["line"]["charset"]["space"] = False
    assert (
        with_defaults(config)["tasks"]["line"]["charset"]
        == load_config("config.yaml")["tasks"]["line"]["charset"]
    )
    config["tasks"]["line"]["charset"]["space"] = True
    assert with_defaults(config)["tasks"]["line"]["charset"]["space"] is True
