"""Checkpoint -> self-describing ONNX file, and ONNX file -> a model `models.predict` can run.

``python -m models.export CHECKPOINT OUT.onnx`` writes a graph whose input ``image`` is the
preprocessed batch (``N, 1, H, W`` float32, as `models.preprocess.to_tensor_batch` makes it:
grayscale in [0, 1], normalised to ``(x - 0.5) / 0.5``) and whose outputs are

- ``logits`` and ``log_probs`` (log-softmax over classes): ``T, N, C + 1`` for CTC models
  (class 0 the blank), ``N, C`` for the hanzi classifier, ``N, S, C + 1`` for the reader
  (class 0 the terminal symbol);
- the reader also gives ``masks`` ``N, S, H, W``: where it looked at each step. It runs a fixed
  number of steps, so its graph is unrolled.

The batch axis is dynamic for every model; the width axis too for line models (CTC), whose
frame axis follows it. The checkpoint's meta (model, kwargs, charset, task, input geometry,
training step and spec, its ``init_from`` reduced to the file's name so that no path of the
training machine ships), the family, the axes, how an image becomes the input
(`input_description`: scale, normalisation, polarity, resampling and its rounding, the
background padding takes, a line's padding, a square model's fit and centring) and the class
that is no character (the blank, the terminal symbol) are stored as JSON in the model's
``metadata_props`` under ``synthocr``, so the file alone says how to feed it and read its
output (`read_onnx_meta`); for CTC models also how many of the output frames are those of an
image of a given width, the rest reading its padding (`frame_rule`), and for the reader the
longest text it reads (``max_len``). So a file whose model is not registered where it is read
(a model of a package not installed there) is still read, from its description alone
(`load_onnx`, `described_entry`). The TorchScript-based exporter (``dynamo=False``) is used:
it needs no extra package and exports LSTM/GRU layers as single ONNX ops with dynamic batch
and length.

The file is written atomically and, by default, checked against PyTorch on random batches
(`check_parity`: every output within 1e-4 of its largest magnitude) before it is moved into
place.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from torch import nn

from models.checkpoint import CheckpointError, ModelMeta, check_meta, load_model, read_meta
from models.cli import command_name, positive_int, print_path, stops_on_interrupt
from models.families import BLANK, EOS, make_family
from models.preprocess import (
    BACKGROUND,
    BACKGROUND_OF,
    MEAN,
    RESAMPLE,
    ROUNDING,
    SQUARE_ALIGN,
    SQUARE_FIT,
    STD,
    min_width,
)
from models.registry import (
    FAMILIES,
    FIXED_WIDTH_TASKS,
    DescribedEntry,
    FrameRule,
    add_described,
    family_of,
    is_registered,
    output_length,
)
from synth.atomic import publish, remove_stale_temporaries, unwritable_why

log = logging.getLogger(__name__)

META_KEY = "synthocr"
OPSET = 17
# The opsets the TorchScript-based exporter writes (torch.onnx._constants' bounds in torch 2.13;
# from 9, as 7 and 8 write ConstantFill, which onnxruntime does not run), checked before the
# export so that a typo fails with one line, not a print of the whole graph.
MIN_OPSET, MAX_OPSET = 9, 20
INPUT_NAME = "image"
# The largest difference onnxruntime's outputs may have from PyTorch's, as a share of the
# output's largest magnitude (of 1 where that is below 1): float32 sums of a trained line
# model's logits of about 50 differ by some 1e-4 between the two runtimes' orders of summing.
PARITY_TOLERANCE = 1e-4
# `frame_rule` is checked against the model's output_length at every width from the model's
# narrowest input to that plus this many px (a 200:1 line 60 px high is 12,000 px wide).
FRAME_RULE_SPAN = 65_536


class ExportError(RuntimeError):
    """An export that failed or disagrees with PyTorch, or an ONNX file that is unreadable or not
    a synthocr export (names the file)."""


class _ExportWrapper(nn.Module):
    """The model with its outputs named and a log-softmax added: ``image -> logits, log_probs
    [, masks]``."""

    def __init__(self, model: nn.Module, family: str) -> None:
        super().__init__()
        self.model = model
        self.family = family

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        if self.family == "attention":
            if not (isinstance(out, tuple | list) and len(out) == 2):
                raise ExportError(
                    f"an attention model returns (logits, masks), got {type(out).__name__}"
                )
            logits, masks = out
            return logits, logits.log_softmax(-1), masks
        return out, out.log_softmax(-1)


def output_names(family: str) -> list[str]:
    """The ONNX output names of a model of ``family``."""
    names = ["logits", "log_probs"]
    return [*names, "masks"] if family == "attention" else names


def dynamic_axes(family: str, geometry: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    """The dynamic axes of each input and output: batch always, width for line models."""
    line = geometry["kind"] == "line"
    image = {0: "batch", 3: "width"} if line else {0: "batch"}
    # CTC logits are T, N, C (frames follow the width); the others are batch-first.
    out = {0: "frames", 1: "batch"} if family == "ctc" else {0: "batch"}
    axes: dict[str, dict[int, str]] = {INPUT_NAME: image}
    for name in output_names(family):
        axes[name] = out if name != "masks" else {0: "batch"}
    return axes


def example_batch(
    geometry: Mapping[str, Any], batch: int = 2, width: int | None = None, seed: int = 0
) -> torch.Tensor:
    """A random normalised batch ``N, 1, H, W`` for a model's geometry (line width: ``width``,
    default four times the height)."""
    if geometry["kind"] == "line":
        h = int(geometry["height"])
        w = max(width or 4 * h, min_width(geometry))
    else:
        h = w = int(geometry["size"])
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, h, w, generator=g).sub_(MEAN).div_(STD)


def frame_rule(meta: ModelMeta) -> dict[str, int] | None:
    """How many output frames a CTC model gives an image ``W`` px wide, in numbers a reader of
    the ``.onnx`` file alone can use: ``T = (max(W, min_width) + offset) // stride``, with ``W``
    the image's width before padding (`models.registry.output_length` counts the same; every
    stack of strided convolutions and poolings has this form: ``W // 4 + 1`` is stride 4,
    offset 4).

    Returns:
        ``{"stride", "offset"}``, or None for a model that is not CTC or whose ``output_length``
        does not have that form at every width of `FRAME_RULE_SPAN` from `min_width` on (or
        fails on a tensor of widths, which its contract allows it to take).
    """
    return _frame_rule(meta)[0]


def _frame_rule(meta: ModelMeta) -> tuple[dict[str, int] | None, str]:
    """`frame_rule`, and why a CTC model has none (empty when it has one or is not CTC)."""
    if family_of(meta.model) != "ctc":
        return None, ""
    low = min_width(meta.input)
    widths = torch.arange(low, low + FRAME_RULE_SPAN, dtype=torch.long)
    not_of_the_form = "its output_length is not (W + offset) // stride at every width"
    try:
        frames = torch.as_tensor(output_length(meta.model, widths, **meta.model_kwargs)).long()
    except Exception as e:  # one of one's own that takes no tensor, or fails: no rule, a warning
        return None, f"{not_of_the_form} (given a tensor of widths: {type(e).__name__}: {e})"
    if frames.shape != widths.shape:
        return None, not_of_the_form
    changes = torch.nonzero(frames[1:] != frames[:-1]).flatten() + 1
    if len(changes) < 2:
        return None, not_of_the_form
    # the frame count grows by one every ``stride`` px, first at width ``widths[changes[0]]``
    stride = int(changes[1] - changes[0])
    offset = stride * int(frames[changes[0]]) - int(widths[changes[0]])
    if not torch.equal(torch.div(widths + offset, stride, rounding_mode="floor"), frames):
        return None, not_of_the_form
    return {"stride": stride, "offset": offset}, ""


def input_description(meta: ModelMeta) -> dict[str, Any]:
    """How an image becomes the graph's input, in the numbers a reader of the file alone needs
    (`models.preprocess` and `models.predict.batches` do this): gray levels ``x`` of 0..255
    (``scale``), dark text on a light background, resized with ``resample``, each side rounded
    as ``rounding`` says, then ``(x / scale - mean) / std``. ``background`` is the grey level
    padding takes, measured on the image ``background_of`` says (`models.preprocess.
    background_level`: the median of its border pixels).

    A line is resized to the model's height, its aspect ratio kept, and padded on the right to
    at least ``min_width``, then to a multiple of ``pad_multiple`` (None: read at its own width,
    as a task drawn at one width is, so that its last frames are its own); lines of one padded
    width batch together, each read as alone. A square model's image is resized so that its
    longer side is the square's (``fit``), then centred on the square (``align``)."""
    kind = meta.input["kind"]
    described: dict[str, Any] = {
        "name": INPUT_NAME,
        "layout": "N,1,H,W",
        "scale": 255,
        "mean": MEAN,
        "std": STD,
        "polarity": "dark-on-light",
        "resample": RESAMPLE.name.lower(),
        "rounding": ROUNDING,
        "background": BACKGROUND,
        "background_of": BACKGROUND_OF[kind],
    }
    if kind == "line":
        own_width = meta.task in FIXED_WIDTH_TASKS
        described["min_width"] = min_width(meta.input)
        described["pad_multiple"] = None if own_width else min_width(meta.input)
    else:
        described["fit"] = SQUARE_FIT
        described["align"] = SQUARE_ALIGN
    return described


def onnx_metadata(meta: ModelMeta) -> dict[str, Any]:
    """What the ONNX file says about itself (stored as JSON under `META_KEY`)."""
    family = family_of(meta.model)
    described = meta.to_dict()
    if described["train"].get("init_from"):
        described["train"] = {
            **described["train"],
            "init_from": Path(str(described["train"]["init_from"])).name,
        }
    info: dict[str, Any] = {
        "format": "synthocr-onnx",
        "version": 1,
        "meta": described,
        "family": family,
        # class i of the outputs is charset[i - class_offset]; for CTC class 0 is the blank,
        # for the reader the terminal symbol
        "class_offset": 0 if family == "classification" else 1,
        "input": input_description(meta),
        "outputs": output_names(family),
        "dynamic_axes": {
            k: {str(a): n for a, n in v.items()}
            for k, v in dynamic_axes(family, meta.input).items()
        },
    }
    if family == "ctc":
        info["blank"] = BLANK
    elif family == "attention":
        info["terminal"] = EOS
    if family == "attention":
        # the steps it runs, less the terminal symbol's: needed to read its outputs without
        # its registry entry (`described_entry`)
        info["max_len"] = make_family(meta.model, meta.charset, meta.model_kwargs).max_len
    if family == "ctc":
        # the frames of an image W px wide, before padding: (max(W, min_width) + offset) //
        # stride, with min_width half the height; the frames past it read the padding
        info["frames"], why = _frame_rule(meta)
        if info["frames"] is None:
            log.warning(
                "model %s: %s, so the export cannot say how many frames an image of a given "
                "width gives",
                meta.model,
                why,
            )
    return info


def read_onnx_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The `onnx_metadata` dict stored in an exported file.

    Raises:
        ExportError: The file is not ONNX, or has no synthocr metadata.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as e:
        raise unreadable_onnx(path, e) from None
    return metadata_of(model, path)


def unreadable_onnx(path: str | os.PathLike, error: Exception) -> ExportError:
    """The error for a file ``onnx.load`` cannot read: a PyTorch checkpoint (a zip archive)
    under an ``.onnx`` name is said to be one, not only "wire format was corrupt"."""
    try:
        with open(path, "rb") as f:
            checkpoint = f.read(4) == b"PK\x03\x04"
    except OSError:
        checkpoint = False
    hint = (
        " (it is a zip archive, as a PyTorch checkpoint is: name it .pt, or export it with "
        "models.export)"
        if checkpoint
        else ""
    )
    return ExportError(f"{path}: not a readable ONNX file: {error}{hint}")


def metadata_of(model: onnx.ModelProto, path: str | os.PathLike) -> dict[str, Any]:
    """`read_onnx_meta` of a file already loaded (``path`` names it in errors)."""
    # protobuf reads no bytes as an empty model, without error ("no 'synthocr' entry" misled)
    if not model.ByteSize() and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ExportError(f"{path}: empty file (0 bytes): not an ONNX model")
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ExportError(f"{path}: no {META_KEY!r} entry in metadata_props: not a synthocr export")
    try:
        info = json.loads(props[META_KEY])
    except (ValueError, RecursionError) as e:  # RecursionError: nested past Python's limit
        raise ExportError(f"{path}: its {META_KEY!r} metadata is not JSON: {e}") from None
    if not isinstance(info, dict) or not isinstance(info.get("meta"), dict):
        raise ExportError(f"{path}: its {META_KEY!r} metadata has no 'meta' object")
    return info


def _own_version() -> str:
    """synthocr's version as installed, or "" when it runs from a checkout not installed."""
    try:
        return importlib.metadata.version("synthocr")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _atomic_tmp(path: Path) -> Path:
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def output_problem(out: str | os.PathLike) -> str | None:
    """Why ``out`` cannot be the ``.onnx`` file an export writes, or None: another suffix, a
    folder, or a place no file can be made (`synth.atomic.unwritable_why`). Nothing is left
    behind: a folder that does not exist yet is made only when the export writes."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        return f"{out}: the output must be an .onnx file"
    if out.is_dir():
        return f"{out} is a folder: give the .onnx file to write"
    if why := unwritable_why(out.parent):
        return f"{out}: cannot be written: {why}"
    return None


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = OPSET,
    check: bool = True,
) -> Path:
    """Export a checkpoint to ONNX (see the module docstring for the graph's contract).

    Args:
        checkpoint: A synthocr checkpoint (``model.pt``).
        out: The ``.onnx`` file to write (atomically; its folder is created).
        opset: ONNX opset version.
        check: Compare onnxruntime with PyTorch on random batches before writing
            (`check_parity`).

    Returns:
        ``out`` as a `Path`.

    Raises:
        CheckpointError: The checkpoint cannot be loaded (or is refused).
        ExportError: ``out`` does not end in ``.onnx`` or is the checkpoint itself; the export
            fails or disagrees with PyTorch (or gives non-finite outputs).
    """
    out = Path(out)
    if out.exists() and Path(checkpoint).exists() and out.resolve() == Path(checkpoint).resolve():
        raise ExportError(f"{out} is the checkpoint being exported: give another output path")
    if problem := output_problem(out):
        raise ExportError(problem)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"opset {opset} is not one this exporter writes ({MIN_OPSET}..{MAX_OPSET})"
        )
    # loaded before the folder is made: a refused checkpoint leaves no empty folder behind
    model, meta = load_model(checkpoint, device="cpu")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{out}: cannot create its folder {out.parent}: {e}") from None
    if not os.access(out.parent, os.W_OK):
        raise ExportError(f"{out}: its folder {out.parent} is not writable")
    family = family_of(meta.model)
    wrapper = _ExportWrapper(model, family).eval()
    try:
        tmp = _atomic_tmp(out)
    except OSError as e:
        raise ExportError(f"{out}: cannot write in {out.parent}: {e}") from None
    try:
        with warnings.catch_warnings():
            # Shape checks in forward become constants in the trace: expected, and harmless.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The legacy exporter is chosen on purpose (see the module docstring).
            warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            # Without initial states the RNN ops take any batch size (check_parity and
            # tests/test_export.py run other batch sizes than the traced one).
            warnings.filterwarnings(
                "ignore", "Exporting a model to ONNX with a batch_size", UserWarning
            )
            # Opened here: torch's exporter takes only a UTF-8 path, and a Linux path may be
            # any bytes (Python gives them as surrogates), as onnx and Python take them.
            with open(tmp, "wb") as f:
                torch.onnx.export(
                    wrapper,
                    (example_batch(meta.input),),
                    f,
                    input_names=[INPUT_NAME],
                    output_names=output_names(family),
                    dynamic_axes=dynamic_axes(family, meta.input),
                    opset_version=opset,
                    dynamo=False,
                )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key = META_KEY
        entry.value = json.dumps(onnx_metadata(meta), ensure_ascii=False)
        proto.producer_name = "synthocr"
        proto.producer_version = _own_version()  # torch.onnx wrote torch's
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if check:
            diff = check_parity(model, meta, tmp)
            log.info("onnxruntime vs PyTorch: max abs logit difference %.2e", diff)
        publish(tmp, out)
    except (RuntimeError, ValueError, OSError, onnx.checker.ValidationError) as e:
        raise ExportError(f"exporting {checkpoint} to {out} failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out


def parity_widths(geometry: Mapping[str, Any]) -> list[int | None]:
    """Widths to check a model at: two different ones for line models, the fixed one else."""
    if geometry["kind"] != "line":
        return [None]
    h = int(geometry["height"])
    return [3 * h, 7 * h + 4]


def check_parity(
    model: nn.Module,
    meta: ModelMeta,
    onnx_path: str | os.PathLike,
    widths: Sequence[int | None] | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Run PyTorch and onnxruntime on random batches of 3 and compare every output (the export
    traces a batch of another size, so a graph that kept the traced batch fails here).

    Returns:
        The largest absolute difference seen.

    Raises:
        ExportError: A difference above ``tolerance`` times the output's largest magnitude, or
            ``tolerance`` where that is below 1 (naming the output and the width); a graph
            onnxruntime cannot run at these sizes (one that kept a size of the traced input).
    """
    family = family_of(meta.model)
    onnx_model = OnnxModel(onnx_path)
    worst = 0.0
    for width in widths if widths is not None else parity_widths(meta.input):
        x = example_batch(meta.input, batch=3, width=width, seed=1)
        with torch.inference_mode():
            expected = _ExportWrapper(model, family).eval()(x)
        try:
            got = onnx_model.run(x.numpy())
        except _onnxruntime_errors() as e:  # not RuntimeErrors: they escaped as a traceback
            traced = tuple(example_batch(meta.input).shape)
            raise ExportError(
                f"{onnx_path}: onnxruntime cannot run the graph on input {tuple(x.shape)}, "
                f"traced at {traced}: {str(e).strip()} (a size read from the input as a "
                "number when traced, int(x.shape[0]) say, stays fixed in the graph)"
            ) from None
        for name, e, g in zip(output_names(family), expected, got, strict=True):
            if tuple(e.shape) != g.shape:
                raise ExportError(
                    f"{onnx_path}: output {name} has shape {g.shape}, PyTorch {tuple(e.shape)} "
                    f"(input {tuple(x.shape)})"
                )
            if not (np.isfinite(e.numpy()).all() and np.isfinite(g).all()):
                raise ExportError(
                    f"{onnx_path}: output {name} is not finite on input {tuple(x.shape)} "
                    "(a checkpoint with NaN or infinite weights?)"
                )
            diff = float(np.abs(e.numpy() - g).max())
            scale = max(1.0, float(np.abs(e.numpy()).max()))
            if diff > tolerance * scale:
                raise ExportError(
                    f"{onnx_path}: output {name} differs from PyTorch by {diff:.2e} "
                    f"(> {tolerance:.0e} x {scale:.3g}, its largest magnitude) on input "
                    f"{tuple(x.shape)}"
                )
            worst = max(worst, diff)
    return worst


class OnnxModel(nn.Module):
    """An exported file run by onnxruntime, callable like the PyTorch model it came from.

    ``model(images)`` takes the ``N, 1, H, W`` tensor and returns the logits tensor (a
    ``(logits, masks)`` tuple for the reader), so `models.predict.predict` and the families'
    decoders use it unchanged. It has no parameters and runs on the CPU.

    Args:
        path: The ``.onnx`` file.
        threads: onnxruntime intra-op threads (0: its default).
        disabled_optimizers: onnxruntime graph optimizers to leave out, as an int8 file's
            metadata names them (`models.quantize`).

    Raises:
        ExportError: onnxruntime cannot load the file (naming it, its opset and the
            onnxruntime version).
    """

    def __init__(
        self, path: str | os.PathLike, threads: int = 0, disabled_optimizers: Sequence[str] = ()
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.path = str(path)
        self.disabled_optimizers = list(disabled_optimizers)
        try:
            model: str | bytes = self.path
            self.path.encode("utf-8")
        except UnicodeEncodeError:  # a path of other bytes than UTF-8's: onnxruntime takes none
            model = Path(path).read_bytes()
        try:
            self.session = ort.InferenceSession(
                model,
                sess_options=options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=self.disabled_optimizers,
            )
        except _onnxruntime_errors() as e:
            raise ExportError(_unloadable_why(self.path, e)) from None
        # the file's synthocr metadata (`onnx_metadata`; an int8 file's ``quantization`` too)
        self.info = json.loads(self.session.get_modelmeta().custom_metadata_map.get(META_KEY, "{}"))
        self.family = self.info.get("family")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """All outputs, in `output_names` order, for a float32 ``N, 1, H, W`` array."""
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images, np.float32)})

    def forward(self, images: torch.Tensor) -> Any:
        outputs = [torch.from_numpy(o) for o in self.run(images.detach().cpu().numpy())]
        if self.family == "attention":
            return outputs[0], outputs[2]
        return outputs[0]


def _onnxruntime_errors() -> tuple[type[Exception], ...]:
    """The exceptions onnxruntime raises for a model it cannot load: its own classes, which
    derive from ``Exception`` alone (no ``RuntimeError``), so they escaped every handler as a
    traceback."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile")
    names += ("NotImplemented", "RuntimeException", "EPFail", "NoModel", "EngineError")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


def model_opset(proto: onnx.ModelProto) -> int | None:
    """The opset of the default (``ai.onnx``) domain a model is written at; None if it names
    none."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _unloadable_why(path: str, error: Exception) -> str:
    """Why onnxruntime cannot load ``path``, with the file's IR version and opset and the
    installed onnxruntime's version: a file written for a newer onnxruntime (a higher opset or
    IR version) is the usual cause on a deployment machine."""
    import onnxruntime as ort

    try:
        proto = onnx.load(path, load_external_data=False)
        stamp = f"IR version {proto.ir_version}, opset {model_opset(proto)}"
    except (OSError, DecodeError):
        stamp = "not readable by onnx either"
    # onnxruntime's message names the file and its own C++ source and function: keep what
    # follows them
    said = str(error).split(" failed:", 1)[-1].strip()
    said = re.sub(r"^/\S+:\d+ [^(]*\([^)]*\) ", "", said)
    return (
        f"{path}: onnxruntime {ort.__version__} cannot load it ({stamp}): {said} (a file "
        "exported for a newer onnxruntime can be exported again with a lower --opset)"
    )


# The largest stride or offset (px) a file's frame rule may give: any network's is a few pixels.
MAX_FRAME_STEP = 4096


def described_entry(info: Mapping[str, Any], path: str | os.PathLike) -> DescribedEntry:
    """What the registry needs to read an exported model's outputs, from the file's metadata
    (`read_onnx_meta`) alone: its family, input geometry, for CTC its frame rule and for the
    reader its ``max_len``. No factory: enough to read the file, not to build the model.

    Raises:
        ExportError: The metadata lacks what its family needs (a CTC file without a frame
            rule, a reader's without ``max_len``), naming the package to install instead.
    """
    meta = info["meta"]
    name, package = meta.get("model"), meta.get("package") or ""
    install = (
        f"install the package {package}, which registers it, to read it"
        if package
        else "register the model here (README.md, 'A model in your own package') to read it"
    )
    family, geometry = info.get("family"), meta.get("input")
    if family not in FAMILIES:
        raise ExportError(f"{path}: its metadata's family {family!r} is not one of {FAMILIES}")
    side = {"line": "height", "square": "size"}.get(
        geometry.get("kind") if isinstance(geometry, dict) else None, ""
    )
    size = geometry.get(side) if side else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ExportError(f"{path}: its metadata gives no input geometry: {geometry!r}")
    offset = 0 if family == "classification" else 1
    if info.get("class_offset") != offset:
        raise ExportError(
            f"{path}: its metadata gives class_offset {info.get('class_offset')!r}, a "
            f"{family} model's is {offset}"
        )
    frames_of, kwargs = None, {}
    if family == "ctc":
        frames = info.get("frames")
        if not (
            isinstance(frames, dict)
            and isinstance(frames.get("stride"), int)
            and isinstance(frames.get("offset"), int)
            and frames["stride"] > 0
        ):
            said = (
                "missing"
                if "frames" not in info
                else "null"
                if frames is None
                else f"{frames!r}, not a whole stride of at least 1 px and a whole offset"
            )
            raise ExportError(
                f"{path}: model {name!r} is not registered here, and the file's frame rule "
                f"('frames') is {said}, so how many output frames an image of a given width "
                f"has cannot be told from the file alone; {install}"
            )
        stride, offset, narrowest = frames["stride"], frames["offset"], min_width(geometry)
        if stride > MAX_FRAME_STEP or abs(offset) > MAX_FRAME_STEP or offset + narrowest < stride:
            # an edited or damaged file: sizes past any image's overflow torch's integers, and
            # a rule that gives the narrowest image no frame cannot read anything
            raise ExportError(
                f"{path}: its frame rule (frames: stride {stride}, offset {offset}) gives "
                f"{(narrowest + offset) // stride} frames to an image {narrowest} px wide, the "
                f"narrowest it reads; a frame rule has a stride of 1 to {MAX_FRAME_STEP} px and "
                "gives every image at least one frame"
            )
        frames_of = FrameRule(stride, offset, narrowest)
    elif family == "attention":
        model_kwargs = meta.get("model_kwargs")
        max_len = info.get(
            "max_len", model_kwargs.get("max_len") if isinstance(model_kwargs, dict) else None
        )
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ExportError(
                f"{path}: model {name!r} is not registered here, and the file does not say "
                "how many characters the reader reads (no 'max_len' in its metadata, nor in "
                f"its model_kwargs: an export older than synthocr writing it); {install}"
            )
        kwargs = {"max_len": max_len}
    return DescribedEntry(
        f"synthocr-metadata:{path}",
        str(family),
        dict(geometry),
        kwargs,
        frames_of,
        source=str(path),
        package=package,
    )


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an ``.onnx`` export rather than a checkpoint (``model.pt``)."""
    return Path(path).suffix.lower() == ".onnx"


def export_device(path: str | os.PathLike, device: str | torch.device) -> torch.device:
    """The CPU, where onnxruntime reads an export, for a ``device`` of ``auto`` or ``cpu``.

    Raises:
        ValueError: Another device (naming the file and the device).
    """
    if str(device).strip().lower() not in ("auto", "cpu"):
        raise ValueError(
            f"{path}: an .onnx file runs on the CPU (onnxruntime), not on device "
            f"{str(device)!r}; use auto or cpu, or the model.pt for a GPU"
        )
    return torch.device("cpu")


def read_model_meta(path: str | os.PathLike) -> ModelMeta:
    """The `ModelMeta` of a checkpoint or of an ``.onnx`` export (`export_meta`), without
    loading its weights."""
    if not is_export(path):
        return read_meta(path)
    return export_meta(path)[1]


def export_meta(path: str | os.PathLike) -> tuple[dict[str, Any], ModelMeta]:
    """An exported file's metadata (`read_onnx_meta`) and its `ModelMeta`.

    A model not registered here (one of a package not installed) is read from the file's own
    description (`described_entry`, added to the registry's lowest layer); a registered one
    from its entry, whatever the file says.

    Raises:
        ExportError: The file is no readable export, or its metadata does not describe a
            model this process can read.
    """
    info = read_onnx_meta(path)
    name = info["meta"].get("model")
    if isinstance(name, str) and not is_registered(name):
        try:
            add_described(name, described_entry(info, path))
        except ValueError as e:
            raise ExportError(f"{path}: {e}") from None
        package = info["meta"].get("package")
        log.info(
            "%s: model %r is not registered here%s; reading it from the file's own description",
            path,
            name,
            f" (trained with the package {package}, not installed)" if package else "",
        )
    try:
        meta = ModelMeta.from_dict(info["meta"], where=str(path))
        check_meta(meta, str(path), described=True)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    return info, meta


def load_onnx(path: str | os.PathLike, threads: int = 0) -> tuple[OnnxModel, ModelMeta]:
    """An exported file and its `ModelMeta` (`export_meta`), ready for `models.predict`."""
    info, meta = export_meta(path)
    model = OnnxModel(path, threads=threads, disabled_optimizers=_disabled_optimizers(info, path))
    # The graph must be the one the meta describes: its classes and its input's fixed sides.
    classes = len(meta.charset) + (family_of(meta.model) != "classification")  # + blank/stop
    got = model.session.get_outputs()[0].shape[-1]
    if isinstance(got, int) and got != classes:
        raise ExportError(
            f"{path}: the graph has {got} output classes, its metadata's charset gives {classes}"
        )
    fixed = {"line": ("height",), "square": ("size", "size")}.get(meta.input.get("kind"), ())
    sides = model.session.get_inputs()[0].shape[2 : 2 + len(fixed)]
    for side, key in zip(sides, fixed, strict=False):
        if isinstance(side, int) and side != int(meta.input[key]):
            raise ExportError(
                f"{path}: the graph takes images {side} px {key}, its metadata says "
                f"{meta.input[key]}"
            )
    return model, meta


def _disabled_optimizers(info: Mapping[str, Any], path: str | os.PathLike) -> list[str]:
    """The onnxruntime optimizers an int8 file's ``quantization`` entry says to load it without
    (none for a float file, or one quantized before synthocr wrote them)."""
    entry = info.get("quantization")
    names = entry.get("disabled_optimizers", []) if isinstance(entry, dict) else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ExportError(
            f"{path}: its quantization entry's disabled_optimizers is not a list of names: "
            f"{names!r}"
        )
    return names


def _export_int8(args: argparse.Namespace) -> Path:
    """Export to a temporary float file, then quantize it into ``args.out``."""
    from models.quantize import (
        DEFAULT_CALIBRATION_IMAGES,
        DEFAULT_OPS,
        check_int8_args,
        quantize_onnx,
    )

    out = Path(args.out)
    ops = args.int8_ops.split(",") if args.int8_ops else list(DEFAULT_OPS)
    limit = (
        args.calibration_images
        if args.calibration_images is not None
        else DEFAULT_CALIBRATION_IMAGES
    )
    # before the float export (a minute, for some)
    check_int8_args(out, ops, args.int8, limit, opset=args.opset)
    with tempfile.TemporaryDirectory(prefix="synthocr-export-") as work:
        plain = export_onnx(
            args.checkpoint, Path(work) / "float.onnx", opset=args.opset, check=not args.no_check
        )
        quantize_onnx(
            plain,
            out,
            args.int8,
            limit=limit,
            ops=ops,
        )
    return out


@stops_on_interrupt("models.export")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.export CHECKPOINT OUT.onnx``: returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=command_name("models.export"),
        description="Export a synthocr checkpoint to a self-describing ONNX file "
        "(dynamic batch; dynamic width for line models).",
    )
    parser.add_argument("checkpoint", help="model.pt written by training")
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the onnxruntime-vs-PyTorch comparison on random batches",
    )
    parser.add_argument(
        "--int8",
        nargs="+",
        metavar="CALIBRATION",
        help="write an int8 model (onnxruntime static quantization of the convolutions), "
        "calibrated on these images: image files, folders or shard .tar files of the model's "
        "task, such as its training shards (models/quantize.py); give it after CHECKPOINT "
        "and OUT, since it takes every path that follows it",
    )
    parser.add_argument(
        "--calibration-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --int8: images used for the calibration, at most (default 256)",
    )
    parser.add_argument(
        "--int8-ops",
        default=None,
        metavar="OPS",
        help="with --int8: the op types quantized, comma-separated (default Conv; Conv,MatMul "
        "quantizes the linear layers too, the class layer among them, whether exported as "
        "MatMul or Gemm)",
    )
    args = parser.parse_args(argv)
    if not args.int8 and (args.calibration_images is not None or args.int8_ops is not None):
        parser.error("--calibration-images and --int8-ops go with --int8")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.int8:
            path = _export_int8(args)
        else:
            path = export_onnx(args.checkpoint, args.out, opset=args.opset, check=not args.no_check)
    except (CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print_path(path)
    return 0


if __name__ == "__main__":
    # Run as ``python -m models.export`` this file is ``__main__``, and `models.quantize` imports
    # ``models.export`` anew: its ExportError is another class than this one. The command is
    # that module's, so that `main` catches what the quantizer raises.
    from models import export

    sys.exit(export.main())
