r"""Users' images -> text, with a trained checkpoint (or its ONNX export).

Command line::

    python -m models.recognize results/models/line_crnn_vgg/model.pt scans/ line.png

prints one tab-separated line per image, in input order (folders are walked recursively, in
sorted order, for image files; a folder with none gets a warning; ``--files-from FILE`` adds
the paths FILE lists, one per line, relative to the current folder, ``-`` for standard input):
``path, text, confidence``; for the ``expr`` task also the
expression's value (empty when the reading does not parse); for the hanzi classifier (and,
with ``--decoder beam``, the CTC models and the reader) also the ``--top-k`` alternatives as
``text, probability`` pairs. Confidences and probabilities print with four decimals, or in
exponent notation below 0.001 (a long line's greedy confidence, the product of its frames'
best probabilities, can be that small; one below a float's range, about 1e-308, prints as 0).
In a path or a reading, backslashes, tabs, newlines and carriage returns print as ``\\``,
``\t``, ``\n`` and ``\r`` (a line charset may hold a backslash), and a file name's bytes that
are not UTF-8 as ``\xNN``, so every image is one line of exactly its fields (JSON lines keep
them, escaped as JSON escapes them); no field is quoted, and `tsv_unescape` undoes the escapes.
``--decoder grammar`` (``expr`` models) keeps only readings that evaluate; with
``--task-config CONFIG``, only the expressions that config's ``tasks.expr`` draws, as the
workflow's evaluation reads them (``Recognizer(task_settings=...)`` in Python).
``--format json`` prints JSON lines instead (``path``, ``text``, ``confidence``, ``top_k``,
``value``). An image that cannot be read (missing, empty, corrupt, not an image, too many
pixels, one side over ``--max-aspect`` times the other) gets ``error: PATH: reason`` on
stderr, and in JSON mode a ``{"path", "error"}`` record; the others go on.

Exit status: 0 when every image was read, 2 when some failed, 1 when nothing could run (a
bad argument; a missing, corrupt or untrusted checkpoint; an unavailable device), 130 when
stopped by Ctrl-C.

Python::

    from models.recognize import load_recognizer
    recognizer = load_recognizer("results/models/line_crnn_vgg/model.pt")
    [result] = recognizer(["line.png"])  # paths, PIL images or numpy arrays
    result.text, result.confidence, result.top_k, result.value

Images are loaded by `models.images` (any mode, EXIF orientation, polarity made dark-on-light,
decompression bombs refused), then resized and padded by `models.preprocess` and read by
`models.predict` in batches grouped by width.
"""

from __future__ import annotations

import argparse
import json
import logging
import numbers
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.checkpoint import CheckpointError, ModelMeta, load_model
from models.cli import (
    TASK_CONFIG_HELP,
    at_most,
    command_name,
    non_negative_int,
    positive_int,
    read_task_settings,
    stops_on_interrupt,
    task_settings_warnings,
    thread_count,
)
from models.devices import resolve_device
from models.export import ExportError, export_device, is_export, load_onnx
from models.families import NonFiniteOutputError, Prediction
from models.images import (
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT,
    POLARITIES,
    ImageLoadError,
    ImageSource,
    find_images,
    load_gray,
    trim_refusal,
    trim_to_ink,
)
from models.predict import predict
from models.progress import progress_bar, write_line
from models.registry import DECODERS, family_of, grammar_for
from synth.text import value_json

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
# The most alternatives a result carries: the beam search keeps at least as many prefixes, and
# 20,000 of them took 19 s an image.
MAX_TOP_K = 100
DEFAULT_BATCH_SIZE = 64
# `Recognizer.recognize_files` reads a chunk of files once they hold this many pixels (or 8
# batches of files): decoded at full size in 8-bit grayscale, so about this many bytes.
CHUNK_PIXELS = 64_000_000
# A line model's image under this width-to-height ratio gets a `TallLineWarning`: a single
# character is about square, so this is most likely a vertical line (or a rotated photo).
TALL_LINE_RATIO = 0.5
# An image under this share of the model's input (a line model's height, a square model's side)
# gets a `SmallImageWarning`.
SMALL_IMAGE_SHARE = 0.25
EXIT_OK, EXIT_FATAL, EXIT_SOME_FAILED = 0, 1, 2


class ImageWarning(UserWarning):
    """An image the model reads, but most likely as noise (`TallLineWarning`,
    `SmallImageWarning`); the command prints each as a ``warning: PATH: ...`` line."""


class TallLineWarning(ImageWarning):
    """A line model was given an image under half as wide as high: it reads lines horizontally,
    left to right, so a vertical line of text, or a photo on its side, reads as noise."""


class SmallImageWarning(ImageWarning):
    """An image under a quarter of the model's input size (a line model's height, a square
    model's side): scaled up that much, its few pixels read as noise, with a confidence that
    need not say so."""


class Recognizer:
    """A loaded model that reads images.

    Use `load_recognizer` to make one from a file.

    Args:
        model: The model in eval mode (a PyTorch module, or `models.export.OnnxModel`).
        meta: Its checkpoint meta.
        device: Where the model runs.
        batch_size: Images per forward pass.
        top_k: Alternatives per result (the hanzi classifier; CTC with ``decoder="beam"`` or
            ``"grammar"``; the reader with ``"beam"``).
        polarity: ``auto``, ``dark-on-light`` or ``light-on-dark`` (`models.images`).
        max_pixels: Image files of more pixels are refused (None: no limit of ours).
        max_aspect: Images whose one side is more than this many times the other are refused
            (None or 0: no limit, as ``--max-aspect 0``); `models.images.MAX_ASPECT` by default.
        decoder: CTC decoder, ``greedy``, ``beam`` (prefix beam search, n-best in ``top_k``;
            for the reader its most likely texts, best first) or ``grammar`` (the beam search
            held to the task's grammar: ``expr`` models only).
        task_settings: With ``grammar``, the settings of the model's task (``tasks.expr`` of
            the config it was trained with): only the texts they draw are read, as the
            workflow's evaluation reads them (operand counts, digits, one pair of
            parentheses; `synth.text.DrawnExpressionGrammar`). None: any expression that
            evaluates.
        trim: Cut each image to its ink, framed as the training images frame their text
            (`models.images.trim_to_ink`), for images with room around the line or character
            (a screenshot, a loose crop, a character off centre): the line models and the
            hanzi classifier (`models.images.TRIM_TASKS`); the reader, whose text is anywhere in
            its image, refuses it.
    """

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta,
        device: torch.device,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        top_k: int = DEFAULT_TOP_K,
        polarity: str = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_aspect: int | None = MAX_ASPECT,
        decoder: str = "greedy",
        task_settings: Mapping[str, Any] | None = None,
        trim: bool = False,
    ) -> None:
        _check_count("batch_size", batch_size, 1, None)
        _check_count("top_k", top_k, 1, MAX_TOP_K)
        _check_count("max_pixels", max_pixels, 1, None, none="no limit of ours")
        _check_count("max_aspect", max_aspect, 0, None, none="no limit")
        if polarity not in POLARITIES:
            raise ValueError(f"unknown polarity {polarity!r}; valid: {', '.join(POLARITIES)}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
        self.model = model
        self.meta = meta
        self.device = device
        self.batch_size = batch_size
        self.top_k = top_k
        self.polarity = polarity
        self.max_pixels = max_pixels
        self.max_aspect = max_aspect
        if trim and (why := trim_refusal(meta.task, f"{meta.model} ({meta.task})")):
            raise ValueError(why)
        self.trim = trim
        self.decoder = decoder
        self.use_task_settings(task_settings)

    def use_task_settings(self, task_settings: Mapping[str, Any] | None, warn: bool = True) -> None:
        """Hold the ``grammar`` decoder's readings to the texts ``task_settings`` (the model's
        ``tasks.<task>``) draw, or, with None, to any text of the task's grammar. An operator
        the settings draw that the model's charset lacks is a `UserWarning` (with ``warn``),
        as ``--task-config``'s warning line.

        Raises:
            ValueError: Settings given to another decoder than ``grammar`` (they would be
                ignored, as ``--task-config`` without ``--decoder grammar`` is refused), the
                model or task has no grammar, or the settings cannot be read (naming the key).
        """
        if task_settings is not None and self.decoder != "grammar":
            raise ValueError(
                "task_settings hold the grammar decoder's readings to a config's texts, and "
                f"this recognizer decodes with {self.decoder!r}: give decoder='grammar'"
            )
        if self.decoder == "grammar":
            grammar_for(self.meta.model, self.meta.task, task_cfg=task_settings)
        if warn and task_settings is not None:
            for warning in task_settings_warnings(
                "task_settings", self.meta.task, task_settings, self.meta.charset
            ):
                warnings.warn(warning, UserWarning, stacklevel=2)
        self.task_settings = dict(task_settings) if task_settings is not None else None

    @property
    def family(self) -> str:
        """``classification``, ``ctc`` or ``attention``."""
        return family_of(self.meta.model)

    @property
    def has_alternatives(self) -> bool:
        """Whether results carry ``top_k`` alternatives (not only the best reading)."""
        return self.family == "classification" or (
            self.family in ("ctc", "attention") and self.decoder in ("beam", "grammar")
        )

    def load(self, source: ImageSource, name: str | None = None) -> Image.Image:
        """One image as the model wants it before resizing: mode ``L``, dark-on-light. For a line
        model, an image under `TALL_LINE_RATIO` times as wide as high gets a `TallLineWarning`
        naming it; one under `SMALL_IMAGE_SHARE` of the model's input size a `SmallImageWarning`.

        Raises:
            ImageLoadError: Naming the image.
        """
        img = load_gray(
            source,
            polarity=self.polarity,
            max_pixels=self.max_pixels,
            max_aspect=self.max_aspect,
            name=name,
        )
        if self.trim:
            img = trim_to_ink(img, self.meta.task)
        label = name or (str(source) if isinstance(source, str | os.PathLike) else "<image>")
        line = self.meta.input.get("kind") == "line"
        target = int(self.meta.input.get("height" if line else "size") or 0)
        side = img.height if line else max(img.size)
        if side < SMALL_IMAGE_SHARE * target:
            warnings.warn(
                f"{label}: {img.width}x{img.height} px, under a quarter of the model's "
                f"{target} px {'height' if line else 'side'}: scaled up {target / side:.0f}x, its "
                "few pixels read as noise (give it the image it was cut from, at full size)",
                SmallImageWarning,
                stacklevel=2,
            )
        if line and img.width < TALL_LINE_RATIO * img.height:
            warnings.warn(
                f"{label}: {img.width}x{img.height} px, under half as wide as high: a line model "
                "reads one line from left to right (rotate an image on its side; crop a vertical "
                "line's characters)",
                TallLineWarning,
                stacklevel=2,
            )
        return img

    def read(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Read already loaded (`load`) images, in batches grouped by width."""
        if not images:
            return []
        return predict(
            self.model,
            self.meta,
            images,
            batch_size=self.batch_size,
            device=self.device,
            top_k=self.top_k,
            decoder=self.decoder,
            beam_width=max(5, self.top_k),
            task_settings=self.task_settings,
        )

    def recognize(self, images: ImageSource | Sequence[ImageSource]) -> list[Prediction]:
        """Read images.

        Args:
            images: One image or a sequence of them: paths, PIL images (any mode) or numpy
                arrays (``H, W`` or ``H, W, C``; uint8, uint16, bool or float in [0, 1]).

        Returns:
            One `models.families.Prediction` per image, in order: ``text``, ``confidence``,
            ``top_k`` (``(text, probability)`` pairs, best first) and, for the ``expr`` task,
            ``value`` (None when the reading does not parse).

        Raises:
            ImageLoadError: An image cannot be read (naming it; nothing is returned for any
                image of the call: use `recognize_files` to read past unreadable files).
        """
        if isinstance(images, str | os.PathLike | Image.Image | np.ndarray):
            images = [images]
        loaded = [
            self.load(im, name=None if isinstance(im, str | os.PathLike) else f"image {i}")
            for i, im in enumerate(images)
        ]
        return self.read(loaded)

    __call__ = recognize

    def recognize_files(
        self,
        paths: Sequence[str | os.PathLike],
        chunk_size: int | None = None,
        chunk_pixels: int = CHUNK_PIXELS,
    ) -> Iterator[tuple[str, Prediction | ImageLoadError]]:
        """Read files chunk by chunk, in input order. A chunk is read once it holds
        ``chunk_size`` files (default: 8 batches) or ``chunk_pixels`` pixels of decoded
        grayscale, so memory stays that of one chunk: a folder of phone photos is not held at
        full size all at once. The readings do not depend on the chunks (nor on the batches).

        Yields:
            ``(path, prediction)``, or ``(path, error)`` for a file that could not be read.
        """
        chunk_size = chunk_size or 8 * self.batch_size
        chunk: list[tuple[str, Image.Image | ImageLoadError]] = []
        pixels = 0
        if isinstance(paths, str | os.PathLike):
            raise TypeError(f"paths: a list of file paths, got the one path {str(paths)!r}")
        for i, p in enumerate(paths):
            if not isinstance(p, str | os.PathLike):
                raise TypeError(
                    f"paths[{i}]: a file path, got {type(p).__name__} (recognize() reads "
                    "images and arrays)"
                )
            path = str(p)
            item = self._try_load(path)
            chunk.append((path, item))
            if isinstance(item, Image.Image):
                pixels += item.width * item.height
            if len(chunk) >= chunk_size or pixels >= chunk_pixels:
                yield from self._read_chunk(chunk)
                chunk, pixels = [], 0
        yield from self._read_chunk(chunk)

    def _read_chunk(
        self, chunk: list[tuple[str, Image.Image | ImageLoadError]]
    ) -> Iterator[tuple[str, Prediction | ImageLoadError]]:
        predictions = iter(self.read([x for _, x in chunk if isinstance(x, Image.Image)]))
        for path, item in chunk:
            yield path, item if isinstance(item, ImageLoadError) else next(predictions)

    def _try_load(self, path: str) -> Image.Image | ImageLoadError:
        try:
            return self.load(path)
        except ImageLoadError as e:
            return e


def _check_count(
    name: str, value: Any, low: int, high: int | None, none: str | None = None
) -> None:
    """``value`` is a whole number from ``low`` to ``high`` (None: no bound), or None when
    ``none`` says what None means.

    Raises:
        ValueError: Naming the argument.
    """
    if value is None and none is not None:
        return
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        also = f" or None ({none})" if none is not None else ""
        raise ValueError(f"{name} must be a whole number {bound}{also}, got {value!r}")


def load_recognizer(
    checkpoint: str | os.PathLike,
    device: str | torch.device = "auto",
    *,
    threads: int = 0,
    **options: Any,
) -> Recognizer:
    """A `Recognizer` from a checkpoint (``model.pt``) or an ONNX export (``.onnx``).

    Args:
        checkpoint: The file; ``.onnx`` files run on onnxruntime (CPU), and need no package of
            their model's: where it is not registered, the file's own metadata describes it.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``;
            ``auto`` or ``cpu`` for an ``.onnx`` file.
        threads: CPU threads, 0 for the default (one per core): onnxruntime's intra-op threads
            for an ``.onnx`` file; for a checkpoint, PyTorch's, which are the whole process's
            (``torch.set_num_threads``, as ``--threads`` sets them).
        **options: `Recognizer` keyword arguments (``batch_size``, ``top_k``, ``polarity``,
            ``max_pixels``, ``max_aspect``, ``decoder``, ``task_settings``).

    Raises:
        models.checkpoint.CheckpointError: Missing, corrupt or untrusted checkpoint
            (`models.checkpoint.UntrustedCheckpointError` for one holding pickled code).
        models.export.ExportError: An unreadable ONNX file, or one of a model not registered
            here (a package's, not installed) whose metadata cannot describe it
            (`models.export.described_entry`).
        ValueError: An unavailable device or a bad option (``threads`` not an integer >= 0).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0: one per core), got {threads!r}")
    if is_export(checkpoint):
        cpu = export_device(checkpoint, device)
        model, meta = load_onnx(checkpoint, threads=threads)
        return Recognizer(model, meta, cpu, **options)
    dev = resolve_device(device)
    if threads > 0:
        torch.set_num_threads(threads)
    model, meta = load_model(checkpoint, device=dev)
    return Recognizer(model, meta, dev, **options)


# Python reads a file name's bytes that are not UTF-8 as lone surrogates (U+DC80..U+DCFF).
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ESCAPED_BYTE = re.compile(r"[\udc80-\udcff]")
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"})


def tsv_field(text: str) -> str:
    r"""A field of a tab-separated line: backslash, tab, newline, carriage return and NUL
    escaped (``\\``, ``\t``, ``\n``, ``\r``, ``\0``), so a path holding them cannot split its
    line (nor put a NUL, which a listing may carry, in it), and a file name's bytes that are not
    UTF-8 as ``\xNN``, so the line is valid UTF-8."""
    text = text.translate(_TSV_ESCAPES)
    return _ESCAPED_BYTE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


_TSV_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|[\\tnr0])")
_TSV_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "0": "\x00"}


def tsv_unescape(field: str) -> str:
    r"""A field of the TSV output as it was: `tsv_field` undone (``\\``, ``\t``, ``\n``,
    ``\r``, ``\0``; ``\xNN`` back to the undecodable byte, as Python reads such a file name, so
    `os.fsencode` gives the name's bytes)."""

    def undo(m: re.Match[str]) -> str:
        code = m.group(1)
        return chr(0xDC00 + int(code[1:], 16)) if code[0] == "x" else _TSV_UNESCAPES[code]

    return _TSV_ESCAPE.sub(undo, field)


def format_tsv(path: str, pred: Prediction, with_value: bool, with_top_k: bool) -> str:
    """One output line: ``path, text, confidence[, value][, text_1, p_1, ...]``."""
    fields = [tsv_field(path), tsv_field(pred.text), format_probability(pred.confidence)]
    if with_value:
        fields.append("" if pred.value is None else str(pred.value))
    if with_top_k:
        for text, prob in pred.top_k:
            fields += [tsv_field(text), format_probability(prob)]
    return "\t".join(fields)


def format_probability(p: float) -> str:
    """Four decimals, or three significant digits in exponent notation below 0.001, so a small
    confidence does not print as ``0.0000``; ``0`` only for one below a float's range (about
    1e-308: the product of thousands of frames' probabilities can underflow)."""
    if p == 0:
        return "0"
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.2e}"


def _six_digits(p: float) -> float:
    """Six significant digits: a long line's confidence (1e-78) is not rounded to 0.0, and the
    top-k ranking survives."""
    return float(f"{p:.6g}")


def json_line(record: dict[str, Any]) -> str:
    r"""A JSON line, UTF-8 text kept as is; a path's undecodable bytes (lone surrogates, as
    Python reads a file name that is not UTF-8) escaped as ``\udcXX``, so the line stays valid
    UTF-8 and `json.loads` gives the name back."""
    line = json.dumps(record, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


def format_json(path: str, pred: Prediction, with_value: bool) -> str:
    """One JSON line: ``path, text, confidence, top_k[, value]``."""
    record: dict[str, Any] = {
        "path": path,
        "text": pred.text,
        "confidence": _six_digits(pred.confidence),
        "top_k": [[t, _six_digits(p)] for t, p in pred.top_k],
    }
    if with_value:
        record["value"] = value_json(pred.value)  # an int, or "p/q" after a division
    return json_line(record)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument exits with 1 (nothing could run), not argparse's 2, which
    here means that some images could not be read."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FATAL, f"{self.prog}: error: {message}\n")


def _top_k(text: str) -> int:
    return at_most(positive_int(text), MAX_TOP_K, "the beam search keeps as many readings")


def _device_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty device name; use auto, cpu, cuda[:N] or mps")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=command_name("models.recognize"),
        description="Read text from images with a synthocr checkpoint (or its ONNX export). "
        "Prints one line per image: path, text, confidence (tab-separated, or JSON lines).",
        epilog=(
            "Exit status: 0 every image read, 2 some images failed, 1 nothing could run, "
            "130 stopped by Ctrl-C."
        ),
    )
    parser.add_argument("checkpoint", help="model.pt (or an .onnx export)")
    parser.add_argument(
        "paths", nargs="*", help="image files or folders (walked recursively)", metavar="PATH"
    )
    parser.add_argument(
        "--files-from",
        metavar="FILE",
        help="read image paths (files or folders) from FILE too, one per line, UTF-8; - reads "
        "standard input; relative paths are relative to the current folder, not to FILE's",
    )
    parser.add_argument(
        "--null",
        action="store_true",
        help="with --files-from: the names end with a NUL byte, not a newline (find -print0), "
        "so that a name may hold a newline",
    )
    parser.add_argument(
        "--format",
        choices=("tsv", "json"),
        default="tsv",
        help="tsv (default): path, text, confidence[, value][, alternatives], tab-separated; "
        "json: one JSON object per line",
    )
    parser.add_argument(
        "--top-k",
        type=_top_k,
        default=None,
        help=f"alternatives to print for the hanzi classifier and, with --decoder beam or "
        f"grammar, the CTC models and the reader (default {DEFAULT_TOP_K})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per forward pass (default {DEFAULT_BATCH_SIZE}); the readings do not "
        "depend on it",
    )
    parser.add_argument(
        "--device",
        type=_device_name,
        default="auto",
        help="auto (default), cpu, cuda[:N] or mps (.onnx files run on the CPU: auto or cpu)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=0,
        help="CPU threads (PyTorch and onnxruntime; default 0: their defaults, one per core)",
    )
    parser.add_argument(
        "--polarity",
        choices=POLARITIES,
        default="auto",
        help="auto detects light text on a dark background and inverts it (default); "
        "dark-on-light never inverts; light-on-dark always does",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="greedy",
        help="CTC decoder: greedy (default), beam (n-best readings; the reader's too), or "
        "grammar (expr models: only readings that evaluate)",
    )
    parser.add_argument("--task-config", metavar="CONFIG", help=TASK_CONFIG_HELP)
    parser.add_argument(
        "--trim",
        action="store_true",
        help="cut each image to its ink, framed as the training images frame theirs (line "
        "models and the hanzi classifier: a line with room around it, a screenshot, a loose "
        "crop, a character off centre)",
    )
    parser.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images of more pixels (decompression bombs; default {DEFAULT_MAX_PIXELS:,};"
        " 0: no limit)",
    )
    parser.add_argument(
        "--max-aspect",
        type=non_negative_int,
        default=MAX_ASPECT,
        help=f"refuse images whose one side is more than this many times the other (default "
        f"{MAX_ASPECT}, a line of about {MAX_ASPECT} hanzi; 0: no limit)",
    )
    return parser


def read_path_list(source: str, null: bool = False) -> list[str]:
    """The paths of a ``--files-from`` list: one per line, UTF-8 (a leading byte-order mark is
    dropped, and bytes that are not UTF-8 come through as Python reads such file names), empty
    lines skipped, nothing else stripped (a file name may start or end with a space); ``-`` is
    standard input. With ``null``, each name ends with a NUL byte instead (``find -print0``),
    and is taken whole, a newline or a carriage return in it too.

    Raises:
        OSError: The list cannot be read (its message names it).
    """
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as f:
            data = f.read()
    text = data.decode("utf-8-sig", errors="surrogateescape")
    if null:
        return [name for name in text.split("\0") if name]
    return [line.removesuffix("\r") for line in text.split("\n") if line.removesuffix("\r")]


def _gather_paths(args: argparse.Namespace, err: TextIO) -> list[Path] | None:
    """The image files of the arguments and ``--files-from``, in order; a folder that holds
    none gets a warning. None (after an error line) when there are none at all."""
    given: list[str] = list(args.paths)
    where = " ".join(args.paths)
    if args.files_from is not None:
        try:
            listed = read_path_list(args.files_from, null=args.null)
        except OSError as e:
            reason = e.strerror or str(e)
            print(f"error: --files-from {tsv_field(args.files_from)}: {reason}", file=err)
            return None
        if not listed and not args.paths:
            print(f"error: --files-from {tsv_field(args.files_from)}: lists no paths", file=err)
            return None
        given += listed
        where = f"{where} {args.files_from}".strip()
    found: list[Path] = []
    empty: list[str] = []
    for path in given:
        images = find_images([path])
        if not images:
            empty.append(path)  # find_images keeps every path that is not a folder
        found.extend(images)
    if not found:
        print(f"error: no image files under {tsv_field(where)}", file=err)
        return None
    for folder in empty:
        print(f"warning: {tsv_field(folder)}: a folder with no image files in it", file=err)
    return found


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the command line's work; returns the exit status."""
    max_pixels = args.max_pixels if args.max_pixels > 0 else None
    # Pillow's own limit would refuse images above twice its default before ours is consulted:
    # ours (checked from the header too, before decoding) is the one that counts here. This is
    # the command's own process; the library never changes the global.
    Image.MAX_IMAGE_PIXELS = None
    try:
        recognizer = load_recognizer(
            args.checkpoint,
            device=args.device,
            threads=args.threads,
            batch_size=args.batch_size,
            top_k=args.top_k or DEFAULT_TOP_K,
            polarity=args.polarity,
            max_pixels=max_pixels,
            max_aspect=args.max_aspect or None,
            decoder=args.decoder,
            trim=args.trim,
        )
        if args.task_config:
            meta = recognizer.meta
            settings = read_task_settings(args.task_config, meta.task)
            recognizer.use_task_settings(settings, warn=False)  # its warnings are lines below
            for warning in task_settings_warnings(
                args.task_config, meta.task, settings, meta.charset
            ):
                print(f"warning: {warning}", file=err)
    except (CheckpointError, ExportError, ValueError) as e:
        print(f"error: {e}", file=err)
        return EXIT_FATAL
    with_top_k = recognizer.has_alternatives
    if args.decoder == "beam" and recognizer.family == "classification":
        print(
            f"warning: --decoder beam has no effect on a classifier ({recognizer.meta.model}): "
            "it prints its --top-k best classes with any decoder",
            file=err,
        )
    if args.top_k is not None and not with_top_k:
        article = "an" if recognizer.family[0] in "aeiou" else "a"  # an attention model
        print(
            f"warning: --top-k has no effect with the {args.decoder} decoder on {article} "
            f"{recognizer.family} model; add --decoder beam for alternatives",
            file=err,
        )
    paths = _gather_paths(args, err)
    if paths is None:
        return EXIT_FATAL
    with warnings.catch_warnings():  # restores the process's handling when the run ends
        warnings.simplefilter("always", ImageWarning)
        warnings.showwarning = lambda message, *_, **__: write_line(
            f"warning: {tsv_field(str(message))}", err
        )
        try:
            failed = _print_results(recognizer, paths, args.format, out, err)
        except NonFiniteOutputError as e:  # the model, not an image: nothing more can be read
            print(f"error: {args.checkpoint}: {e}", file=err)
            return EXIT_FATAL
    if failed:
        print(f"{failed} of {len(paths)} images could not be read", file=err)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _print_results(
    recognizer: Recognizer, paths: list[Path], fmt: str, out: TextIO, err: TextIO
) -> int:
    """Read the files and print a line for each; returns how many could not be read. With the
    readings going to a file or a pipe and standard error a terminal, a bar counts the images
    there (the error and warning lines are printed above it)."""
    with_value = recognizer.meta.task == "expr"
    with_top_k = recognizer.has_alternatives
    failed = 0
    to_file = not (hasattr(out, "isatty") and out.isatty())
    with progress_bar(len(paths), " images", enabled=to_file and err is sys.stderr) as bar:
        for path, result in recognizer.recognize_files(paths):
            bar.update(1)
            if isinstance(result, ImageLoadError):
                failed += 1
                reason = result.reason.replace(result.name, tsv_field(result.name))
                write_line(f"error: {tsv_field(result.name)}: {reason}", err)
                if fmt == "json":
                    _write(json_line({"path": path, "error": result.reason}), out)
                continue
            if fmt == "json":
                line = format_json(path, result, with_value)
            else:
                line = format_tsv(path, result, with_value, with_top_k)
            _write(line, out)
    return failed


class OutputError(OSError):
    """The readings cannot be written (a full disk, a device error): the run stops."""


def _write(line: str, out: TextIO) -> None:
    try:
        print(line, file=out, flush=True)
    except BrokenPipeError:
        raise  # the reader stopped early: main ends the run quietly
    except OSError as e:
        raise OutputError(e.errno, e.strerror) from e


@stops_on_interrupt("models.recognize", "the readings printed so far stand")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.recognize CHECKPOINT PATH...``: returns the exit status.

    Output whose encoding cannot hold a character (an ASCII console) gets a ``\\uXXXX``
    escape in its place instead of stopping the run, and a reader that stops early (``| head``)
    ends the run quietly, with status 1 as Python's own handling of a closed pipe does.
    """
    parser = build_parser()
    # Options may stand between the checkpoint and the paths (`CHECKPOINT --format json PATH`).
    args = parser.parse_intermixed_args(argv)
    if not args.paths and args.files_from is None:
        parser.error("give the images: PATH..., or --files-from FILE")
    if args.null and args.files_from is None:
        parser.error("--null goes with --files-from")
    if args.task_config and args.decoder != "grammar":
        parser.error("--task-config holds the grammar decoder's readings: add --decoder grammar")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return run(args, sys.stdout, sys.stderr)
    except (BrokenPipeError, OutputError) as e:
        if isinstance(e, OutputError):
            print(f"error: cannot write the readings to standard output: {e}", file=sys.stderr)
        # Point stdout at /dev/null so the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
