"""Users' images -> text, with a trained checkpoint (or its ONNX export).

Command line::

    python -m models.recognize results/models/line_crnn_vgg/model.pt scans/ line.png

prints one tab-separated line per image, in input order (folders are walked recursively, in
sorted order, for image files): ``path, text, confidence``; for the ``expr`` task also the
expression's value (empty when the reading does not parse); for the hanzi classifier (and,
with ``--decoder beam``, the CTC models and the reader) also the ``--top-k`` alternatives as
``text, probability`` pairs. Confidences and probabilities print with four decimals, or in
exponent notation below 0.001 (a long line's greedy confidence, the product of its frames'
best probabilities, can be that small).
``--decoder grammar`` (``expr`` models) keeps only readings that evaluate.
``--format json`` prints JSON lines instead (``path``, ``text``, ``confidence``, ``top_k``,
``value``). An image that cannot be read (missing, empty, corrupt, not an image, too many
pixels) gets ``error: PATH: reason`` on stderr, and in JSON mode a ``{"path", "error"}``
record; the others go on.

Exit status: 0 when every image was read, 2 when some failed, 1 when nothing could run (a
bad argument; a missing, corrupt or untrusted checkpoint; an unavailable device).

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
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.checkpoint import CheckpointError, ModelMeta, load_model
from models.cli import non_negative_int, positive_int
from models.devices import resolve_device
from models.export import ExportError, load_onnx
from models.families import Prediction
from models.images import (
    DEFAULT_MAX_PIXELS,
    POLARITIES,
    ImageLoadError,
    ImageSource,
    find_images,
    load_gray,
)
from models.predict import predict
from models.registry import DECODERS, family_of, grammar_for
from synth.text import value_json

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 64
EXIT_OK, EXIT_FATAL, EXIT_SOME_FAILED = 0, 1, 2


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
        decoder: CTC decoder, ``greedy``, ``beam`` (prefix beam search, n-best in ``top_k``) or
            ``grammar`` (the beam search held to the task's grammar: ``expr`` models only).
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
        decoder: str = "greedy",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if polarity not in POLARITIES:
            raise ValueError(f"unknown polarity {polarity!r}; valid: {', '.join(POLARITIES)}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
        if decoder == "grammar":
            grammar_for(meta.model, meta.task)  # refuses a model or task without one
        self.model = model
        self.meta = meta
        self.device = device
        self.batch_size = batch_size
        self.top_k = top_k
        self.polarity = polarity
        self.max_pixels = max_pixels
        self.decoder = decoder

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
        """One image as the model wants it before resizing: mode ``L``, dark-on-light.

        Raises:
            ImageLoadError: Naming the image.
        """
        return load_gray(source, polarity=self.polarity, max_pixels=self.max_pixels, name=name)

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
            ImageLoadError: An image cannot be read (naming it; nothing is returned).
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
        self, paths: Sequence[str | os.PathLike], chunk_size: int | None = None
    ) -> Iterator[tuple[str, Prediction | ImageLoadError]]:
        """Read files chunk by chunk, so memory stays bounded, in input order.

        Yields:
            ``(path, prediction)``, or ``(path, error)`` for a file that could not be read.
        """
        chunk_size = chunk_size or 8 * self.batch_size
        for start in range(0, len(paths), chunk_size):
            chunk = [str(p) for p in paths[start : start + chunk_size]]
            loaded = [self._try_load(path) for path in chunk]
            predictions = iter(self.read([x for x in loaded if isinstance(x, Image.Image)]))
            for path, item in zip(chunk, loaded, strict=True):
                yield path, item if isinstance(item, ImageLoadError) else next(predictions)

    def _try_load(self, path: str) -> Image.Image | ImageLoadError:
        try:
            return self.load(path)
        except ImageLoadError as e:
            return e


def load_recognizer(
    checkpoint: str | os.PathLike,
    device: str | torch.device = "auto",
    *,
    threads: int = 0,
    **options: Any,
) -> Recognizer:
    """A `Recognizer` from a checkpoint (``model.pt``) or an ONNX export (``.onnx``).

    Args:
        checkpoint: The file; ``.onnx`` files run on onnxruntime (CPU).
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        threads: onnxruntime intra-op threads for ``.onnx`` files (0: its default). PyTorch's
            are the process's (``torch.set_num_threads``).
        **options: `Recognizer` keyword arguments (``batch_size``, ``top_k``, ``polarity``,
            ``max_pixels``, ``decoder``).

    Raises:
        models.checkpoint.CheckpointError: Missing, corrupt or untrusted checkpoint
            (`models.checkpoint.UntrustedCheckpointError` for one holding pickled code).
        models.export.ExportError: An unreadable ONNX file.
        ValueError: An unavailable device or a bad option.
    """
    if Path(checkpoint).suffix.lower() == ".onnx":
        model, meta = load_onnx(checkpoint, threads=threads)
        return Recognizer(model, meta, torch.device("cpu"), **options)
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, device=dev)
    return Recognizer(model, meta, dev, **options)


def format_tsv(path: str, pred: Prediction, with_value: bool, with_top_k: bool) -> str:
    """One output line: ``path, text, confidence[, value][, text_1, p_1, ...]``."""
    fields = [path, pred.text, format_probability(pred.confidence)]
    if with_value:
        fields.append("" if pred.value is None else str(pred.value))
    if with_top_k:
        for text, prob in pred.top_k:
            fields += [text, format_probability(prob)]
    return "\t".join(fields)


def format_probability(p: float) -> str:
    """Four decimals, or three significant digits in exponent notation below 0.001, so a small
    confidence never prints as ``0.0000``."""
    return f"{p:.4f}" if p >= 1e-3 or p == 0 else f"{p:.2e}"


def _six_digits(p: float) -> float:
    """Six significant digits: a long line's confidence (1e-78) is not rounded to 0.0, and the
    top-k ranking survives."""
    return float(f"{p:.6g}")


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
    return json.dumps(record, ensure_ascii=False)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument exits with 1 (nothing could run), not argparse's 2, which
    here means that some images could not be read."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FATAL, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m models.recognize",
        description="Read text from images with a synthocr checkpoint (or its ONNX export). "
        "Prints one line per image: path, text, confidence (tab-separated, or JSON lines).",
        epilog="Exit status: 0 every image read, 2 some images failed, 1 nothing could run.",
    )
    parser.add_argument("checkpoint", help="model.pt (or an .onnx export)")
    parser.add_argument("paths", nargs="+", help="image files or folders (walked recursively)")
    parser.add_argument("--format", choices=("tsv", "json"), default="tsv")
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=DEFAULT_TOP_K,
        help=f"alternatives to print for the hanzi classifier and, with --decoder beam, the "
        f"CTC models and the reader (default {DEFAULT_TOP_K})",
    )
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (default), cpu, cuda[:N] or mps (.onnx files run on the CPU)",
    )
    parser.add_argument(
        "--threads",
        type=non_negative_int,
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
    parser.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images of more pixels (decompression bombs; default {DEFAULT_MAX_PIXELS:,};"
        " 0: no limit)",
    )
    return parser


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the command line's work; returns the exit status."""
    max_pixels = args.max_pixels if args.max_pixels > 0 else None
    # Pillow's own limit would refuse images above twice its default before ours is consulted:
    # ours (checked from the header too, before decoding) is the one that counts here. This is
    # the command's own process; the library never changes the global.
    Image.MAX_IMAGE_PIXELS = None
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        recognizer = load_recognizer(
            args.checkpoint,
            device=args.device,
            threads=args.threads,
            batch_size=args.batch_size,
            top_k=args.top_k,
            polarity=args.polarity,
            max_pixels=max_pixels,
            decoder=args.decoder,
        )
    except (CheckpointError, ExportError, ValueError) as e:
        print(f"error: {e}", file=err)
        return EXIT_FATAL
    with_value = recognizer.meta.task == "expr"
    with_top_k = recognizer.has_alternatives
    failed = 0
    paths = find_images(args.paths)
    if not paths:
        print(f"error: no image files under {' '.join(args.paths)}", file=err)
        return EXIT_FATAL
    for path, result in recognizer.recognize_files(paths):
        if isinstance(result, ImageLoadError):
            failed += 1
            print(f"error: {result}", file=err, flush=True)
            if args.format == "json":
                record = {"path": path, "error": result.reason}
                print(json.dumps(record, ensure_ascii=False), file=out, flush=True)
            continue
        if args.format == "json":
            line = format_json(path, result, with_value)
        else:
            line = format_tsv(path, result, with_value, with_top_k)
        print(line, file=out, flush=True)
    if failed:
        print(f"{failed} of {len(paths)} images could not be read", file=err)
        return EXIT_SOME_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.recognize CHECKPOINT PATH...``: returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
