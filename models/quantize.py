"""An exported ONNX file -> an int8 one, calibrated on images: onnxruntime's static
quantization, for reading faster on a CPU.

``python -m models.export CHECKPOINT OUT.onnx --int8 CALIBRATION...`` exports the checkpoint
and quantizes it here; `quantize_onnx` does the second step on a file already exported.

The convolutions' weights become int8 (one scale per output channel) and their inputs uint8
(one scale per tensor, from the range each takes on the calibration images), in onnxruntime's
QDQ format (`onnxruntime.quantization.quantize_static`): onnxruntime then runs them as integer
convolutions. The recurrent layers and the class layer stay float (``ops``: quantizing the
class layer's MatMul too reads faster, as many lines within two of 1000, BENCHMARKS.md,
"Recognition"), and so does the convolution on the image itself (one channel: an integer
product over a filter's 9 values runs slower than the float one).

Where a max-pool then reads float values (that convolution's, or a GRCNN layer's), the file's
metadata says to load it without onnxruntime's ``QDQPropagationTransformer``
(``disabled_optimizers``, which `models.export.load_onnx` honours): that optimizer moves the
quantization above the pool, which then runs on uint8 in onnxruntime's generic kernel, several
times slower than its float one. Where every pool reads an integer convolution, the move keeps
the pool in the integer layout, and the file is loaded with it (BENCHMARKS.md, "Recognition",
session 50: both choices measured on the five models).

The calibration images are read as recognition reads images (`Recognizer.load`: grayscale,
dark on light) and batched as it batches them (`models.predict.batches`), so the ranges are
those the model meets when it reads; they should look like the images it will read (a split of
the training shards does: never the split it is scored on). The quantized file keeps the
export's metadata, with a ``quantization`` entry added (the ops, the convolutions left float,
the optimizers to load it without, the calibration's image count, and how many of those images
it reads as the float file does), so `models.export.load_onnx` and `models.recognize` read it
as any export.

The file is written atomically; quantizing the same file on the same images gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from PIL import Image

from models.evaluate import iter_samples, shard_folder_hint
from models.export import (
    META_KEY,
    ExportError,
    load_onnx,
    metadata_of,
    model_opset,
    output_problem,
    unreadable_onnx,
)
from models.images import ImageLoadError, check_aspect, find_images
from models.predict import batches, predict
from models.recognize import Recognizer
from synth.atomic import missing_why, write_bytes_atomic
from synth.shards import ShardReadError

log = logging.getLogger(__name__)

DEFAULT_OPS = ("Conv",)
# The onnxruntime optimizer an int8 file is loaded without where its max-pools read float
# values (`_pools_read_float`): the pools then stay float.
QDQ_PROPAGATION = "QDQPropagationTransformer"
# What --int8-ops names, and the ONNX op types each stands for: a linear layer is exported as a
# Gemm where its input is a matrix (the classifier's and the reader's heads), as a MatMul where
# it is a sequence (a CTC model's class layer).
ONNX_OPS = {"Conv": ("Conv",), "MatMul": ("MatMul", "Gemm")}
QUANTIZABLE_OPS = tuple(ONNX_OPS)
DEFAULT_CALIBRATION_IMAGES = 256
# Below this share of the calibration images read alike, the export warns.
AGREEMENT_WARNING = 0.95
# The lowest opset of an int8 file: weights per output channel are DequantizeLinear's ``axis``,
# which opset 13 added (below it onnxruntime refuses the quantized graph).
MIN_INT8_OPSET = 13


def check_int8_args(
    out: str | os.PathLike,
    ops: Sequence[str],
    sources: Sequence[str | os.PathLike],
    limit: int,
    opset: int | None = None,
) -> None:
    """What `quantize_onnx` can check of its arguments before any work (the export command
    checks them before its float export too): an ``.onnx`` output that can be written
    (`models.export.output_problem`), ops of `QUANTIZABLE_OPS`,
    calibration sources that exist, a limit of at least one image, and an ``opset`` the
    float export is to be written at (None: not known yet) of `MIN_INT8_OPSET` or more.

    Raises:
        ExportError: Naming the argument at fault.
    """
    if problem := output_problem(out):
        raise ExportError(problem)
    unknown = sorted(set(ops) - set(QUANTIZABLE_OPS))
    if unknown or not ops:
        raise ExportError(
            f"cannot quantize op(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(QUANTIZABLE_OPS)}"
        )
    for source in map(str, sources):
        if not os.path.exists(source):
            raise ExportError(f"calibration: {source} {missing_why(source)}")
    if limit < 1:
        raise ExportError(f"the calibration needs at least one image, got a limit of {limit}")
    if opset is not None and opset < MIN_INT8_OPSET:
        raise ExportError(_opset_problem(f"--opset {opset}", opset))


def _opset_problem(what: str, opset: int) -> str:
    """Why an int8 file cannot be written at ``opset`` (``what`` names where it comes from)."""
    return (
        f"{what}: an int8 file needs opset {MIN_INT8_OPSET} or later (its weights' scales per "
        f"output channel), not {opset}; export at opset {MIN_INT8_OPSET} or later, or leave "
        "out --int8 for a float file at a lower opset"
    )


CALIBRATION_ASPECT_ADVICE = (
    "leave it out of the calibration images, or crop it to a line of text (a shard's lines are "
    "held to their labels' lengths instead)"
)


def calibration_images(
    sources: Sequence[str | os.PathLike], recognizer: Recognizer, limit: int
) -> list[Image.Image]:
    """Up to ``limit`` images from ``sources``, loaded as ``recognizer`` loads images.

    Args:
        sources: Image files, folders (walked as `models.images.find_images` walks them) and
            shard ``.tar`` files (their images, in order), taken in turn.
        recognizer: Loads each image (grayscale, its polarity, the size limits). An image
            file is held to `models.images.MAX_ASPECT` too, whatever the recognizer's limit; a
            shard's image to its label's length (`models.evaluate.iter_samples`).
        limit: Stop after this many.

    Raises:
        ExportError: A source that does not exist, a folder without images, an image or shard
            that cannot be read (each naming it), or no image at all.
    """
    if limit < 1:
        raise ExportError(f"the calibration needs at least one image, got a limit of {limit}")
    images: list[Image.Image] = []
    for source in map(str, sources):
        if len(images) >= limit:
            break
        if not os.path.exists(source):
            raise ExportError(f"calibration: {source} {missing_why(source)}")
        if os.path.isfile(source) and source.lower().endswith(".tar"):
            try:
                samples = iter_samples(  # the images alone: a label's value is not read
                    [source], limit=limit - len(images), task=recognizer.meta.task, values=False
                )
                for sample in samples:
                    images.append(recognizer.load(sample.image, name=f"{source}: {sample.key}"))
            except (ShardReadError, ValueError) as e:  # ImageLoadError is a ValueError
                raise ExportError(f"calibration: {e}") from None
            continue
        found = find_images([source])
        if not found:
            # never an example of a split you score: calibrate on training images
            hint = shard_folder_hint(source, prefer=("train", "val"), only=True)
            raise ExportError(f"calibration: {source} is a folder with no image files in it{hint}")
        for path in found[: limit - len(images)]:
            try:
                image = recognizer.load(path)
            except ImageLoadError as e:
                raise ExportError(f"calibration: {e}") from None
            # the recognizer takes a shard's long lines, whose labels vouch for them (as
            # training does); an image file over the recognition's limit would fill memory
            if why := check_aspect(*image.size, advice=CALIBRATION_ASPECT_ADVICE):
                raise ExportError(f"calibration: {path}: {why}")
            images.append(image)
    if not images:
        raise ExportError(f"calibration: no images in {', '.join(map(str, sources))}")
    return images


class _Batches:
    """`onnxruntime.quantization.CalibrationDataReader`'s protocol (``get_next``, None at the
    end) over prepared batches, fed to the graph's input ``name``."""

    def __init__(self, name: str, arrays: list[np.ndarray]) -> None:
        self.name = name
        self._it: Iterator[np.ndarray] = iter(arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}


def _lift_constants(graph: onnx.GraphProto, ops: Sequence[str]) -> None:
    """Make the constants that feed an op to quantize initializers: the quantizer quantizes a
    bias only when it is one, and onnxruntime runs a convolution as an integer one only when
    its bias is quantized too. The exporter writes some as ``Constant`` nodes, and a bias equal
    to another's as an ``Identity`` of that one's initializer."""
    fed = {name for node in graph.node if node.op_type in ops for name in node.input}
    initializers = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        value = None
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
        elif node.op_type == "Identity":
            value = initializers.get(node.input[0])
        if value is not None and node.output[0] in fed:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _image_convolutions(graph: onnx.GraphProto) -> list[str]:
    """The names of the convolutions on the graph's input, the grayscale image (one channel:
    weights ``O, 1, kH, kW``): left float, since onnxruntime's integer product over so few
    values (9 for a 3x3 filter) runs slower than its float one. (The reader's convolutions of
    the masked image stay quantized: left float too, a tiny reader's int8 logits followed its
    float ones less closely, and the default config's reader read only 1.03x as fast.)"""
    weights = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv"
        and node.input[0] in inputs
        and node.input[1] in weights
        and len(weights[node.input[1]].dims) == 4
        and weights[node.input[1]].dims[1] == 1
    ]


# Between a convolution and the pool that reads it: its ReLU, and its output's quantization.
_PASSED_TO_POOLS = ("Relu", "QuantizeLinear", "DequantizeLinear")


def _pools_read_float(graph: onnx.GraphProto) -> bool:
    """Whether a max-pool whose output is quantized reads a float value: its input (through
    ReLUs and quantize-dequantize pairs) is not an integer convolution's, one whose input is
    dequantized."""
    made_by = {out: node for node in graph.node for out in node.output}
    quantized = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    for node in graph.node:
        if node.op_type != "MaxPool" or node.output[0] not in quantized:
            continue
        source = made_by.get(node.input[0])
        while source is not None and source.op_type in _PASSED_TO_POOLS:
            source = made_by.get(source.input[0])
        if source is None or source.op_type != "Conv":
            return True
        fed = made_by.get(source.input[0])
        if fed is None or fed.op_type != "DequantizeLinear":
            return True
    return False


class _DropHint(logging.Filter):
    """onnxruntime's quantizer advises, at every call and on the root logger, a pre-processing
    step (shape inference, graph optimisation); these exports quantize fully without it (every
    convolution becomes an integer one: tests/test_quantize.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quantizer_logging() -> Iterator[None]:
    """Around onnxruntime's quantizer, which logs through the root logger's module functions
    (`logging.warning`): its pre-processing hint dropped, and, when the caller has configured
    no logging, its warnings shown on stderr without `logging.basicConfig` configuring the
    caller's process for good, as those functions would."""
    root = logging.getLogger()
    hint = _DropHint()
    stderr = None if root.handlers else logging.StreamHandler()
    root.addFilter(hint)
    if stderr is not None:
        stderr.setLevel(logging.WARNING)
        root.addHandler(stderr)
    try:
        yield
    finally:
        root.removeFilter(hint)
        if stderr is not None:
            root.removeHandler(stderr)


def quantize_onnx(
    src: str | os.PathLike,
    out: str | os.PathLike,
    calibration: Sequence[str | os.PathLike],
    *,
    limit: int = DEFAULT_CALIBRATION_IMAGES,
    ops: Sequence[str] = DEFAULT_OPS,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Quantize an exported file to int8 (see the module docstring).

    Args:
        src: A synthocr ``.onnx`` export (float).
        out: The ``.onnx`` file to write (atomically); may be ``src`` itself.
        calibration: Where the calibration images come from (`calibration_images`).
        limit: Calibration images used, at most.
        ops: What is quantized, of `QUANTIZABLE_OPS`: ``Conv`` the convolutions, ``MatMul``
            the linear layers (ONNX ``MatMul`` and ``Gemm`` nodes, `ONNX_OPS`); an op the
            model has no node of is warned of.
        batch_size: Images per calibration batch.

    Returns:
        The ``quantization`` entry written into the file's metadata.

    Raises:
        ExportError: ``src`` is not a synthocr export, is one already quantized or one of an
            opset under `MIN_INT8_OPSET`; ``out`` is not an ``.onnx`` path, or cannot be
            written; an unknown op; a calibration source at fault (`calibration_images`); or
            onnxruntime's quantizer fails.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    out = Path(out)
    check_int8_args(out, ops, calibration, limit)
    try:
        proto = onnx.load(str(src))
    except (OSError, DecodeError) as e:
        raise unreadable_onnx(src, e) from None
    info = metadata_of(proto, src)
    if "quantization" in info:
        raise ExportError(f"{src} is already quantized: quantize the float export instead")
    opset = model_opset(proto)
    if opset is not None and opset < MIN_INT8_OPSET:
        raise ExportError(_opset_problem(f"{src}: it is exported at opset {opset}", opset))
    onnx_ops = [t for op in ops for t in ONNX_OPS[op]]
    present = {node.op_type for node in proto.graph.node}
    for op in ops:
        if not present & set(ONNX_OPS[op]):
            log.warning(
                "%s: the model has no %s node, so op %s quantizes nothing in it",
                src,
                " or ".join(ONNX_OPS[op]),
                op,
            )
    model, meta = load_onnx(src, threads=1)
    # no aspect limit of its own: calibration_images holds image files to MAX_ASPECT, and a
    # shard's lines to their labels' lengths (a long line config's are over 200:1)
    reader = Recognizer(model, meta, torch.device("cpu"), batch_size=batch_size, max_aspect=None)
    images = calibration_images(calibration, reader, limit)
    arrays = [batch.numpy() for _, batch, _ in batches(meta, images, batch_size)]
    try:
        with tempfile.TemporaryDirectory(prefix="synthocr-quantize-") as work:
            plain, tmp = Path(work) / "float.onnx", Path(work) / "int8.onnx"
            lifted = onnx.ModelProto()
            lifted.CopyFrom(proto)
            _lift_constants(lifted.graph, onnx_ops)
            kept_float = _image_convolutions(lifted.graph) if "Conv" in ops else []
            onnx.save(lifted, str(plain))
            with _quantizer_logging():
                quantize_static(
                    str(plain),
                    str(tmp),
                    _Batches(proto.graph.input[0].name, arrays),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=onnx_ops,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=kept_float,
                )
            quantized = onnx.load(str(tmp))
            int8, _ = load_onnx(tmp, threads=1)  # the quantizer keeps the metadata
        before = predict(model, meta, images, batch_size=batch_size)
        after = predict(int8, meta, images, batch_size=batch_size)
        same = sum(a.text == b.text for a, b in zip(before, after, strict=True))
        entry = {
            "format": "QDQ",
            "weights": "int8, per output channel",
            "activations": "uint8, per tensor (min-max over the calibration images)",
            "ops": list(ops),
            "float_convolutions": len(kept_float),
            "disabled_optimizers": [QDQ_PROPAGATION] if _pools_read_float(quantized.graph) else [],
            "calibration_images": len(images),
            "read_as_float": same / len(images),
        }
        del quantized.metadata_props[:]
        for prop in proto.metadata_props:
            value = prop.value
            if prop.key == META_KEY:
                value = json.dumps({**info, "quantization": entry}, ensure_ascii=False)
            quantized.metadata_props.add(key=prop.key, value=value)
        quantized.producer_name = proto.producer_name
        quantized.producer_version = proto.producer_version
        onnx.checker.check_model(quantized)
    except (RuntimeError, ValueError, OSError, onnx.checker.ValidationError) as e:
        raise ExportError(f"quantizing {src} to {out} failed: {e}") from e
    try:
        write_bytes_atomic(out, quantized.SerializeToString())
    except OSError as e:
        raise ExportError(f"{out}: cannot be written: {e}") from None
    log.info(
        "int8 (%s): %d of %d calibration images read as the float model reads them",
        ", ".join(ops),
        same,
        len(images),
    )
    if same / len(images) < AGREEMENT_WARNING:
        log.warning(
            "%s: the int8 model reads %d of %d calibration images as the float one does; "
            "check its accuracy before using it (python -m models.evaluate %s SHARD... --out "
            "DIR), or quantize fewer ops or on more calibration images",
            out,
            same,
            len(images),
            out,
        )
    return entry
