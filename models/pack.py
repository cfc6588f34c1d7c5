"""Your own labelled images -> WebDataset shards of the workflow's format, to evaluate a trained
model on them (``models.evaluate``) or to fine-tune one (``models.train``, ``train.init_from``).

    python -m models.pack labels.tsv mine/ --split real --checkpoint results/models/X/model.pt

The labels file is UTF-8 text, one image per line: its path, a tab, its text (the ``gt.txt``
of deep-text-recognition-benchmark's ``create_lmdb_dataset.py``); every line is packed, a
repeated one too. Paths are relative to the labels file's folder. Each image is read as the
recognition command reads it (`models.images`: any mode, the first frame of an animation, EXIF
orientation, light text on dark inverted, decompression bombs and strips over 200:1 refused),
stored as 8-bit grayscale (scaled to ``--height`` px tall when given), and written with its
label (NFKC-normalised, as the synthetic labels are; a label starting or ending with whitespace
is kept as it is, with a warning) as ``{key}.png`` + ``{key}.json`` in shards
``{out}/{split}-{shard:06d}.tar``, beside a ``{split}.manifest.tsv``. The JSON's ``font`` is the
image's folder as the labels file writes it, with a slash (``./`` for an image beside it), so
the per-font tables of an evaluation become per-folder ones; ``source`` is the path as written.

Nothing is dropped: a line without a tab, an empty label, an image that cannot be read, and,
with ``--checkpoint`` (a ``model.pt`` or an ``.onnx`` export; or ``--charset``), a label the
model cannot encode (a character outside its charset, an expression without a value, a label
longer than the model reads: one character for the hanzi classifier, ``max_len`` for the reader;
for CTC models, an image too narrow to give the frames its label needs) are all found before
anything is written, and listed in line order (the first 20 printed), each with its line number;
then nothing is written. Every image is read twice, once to check it and once to write it, so
memory stays that of one image. The same labels file and images give the same bytes. Shards of
the split left from an earlier, larger packing are removed.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.cli import command_name, non_negative_int, positive_int, stops_on_interrupt
from models.evaluate import label_problem
from models.images import (
    DEFAULT_MAX_PIXELS,
    MAX_ASPECT,
    POLARITIES,
    ImageLoadError,
    label_proportion_problem,
    load_gray,
    trim_refusal,
    trim_to_ink,
)
from synth.atomic import unwritable_why
from synth.charset import compatibility_forms, label_spaces
from synth.shards import Sample, write_manifest, write_samples
from synth.text import ExpressionError, value_json
from synth.text import evaluate as evaluate_expression

log = logging.getLogger(__name__)

SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_LISTED = 20  # problems printed before "and N more"


class PackError(ValueError):
    """Lines of a labels file that cannot be packed, each named by file and line number."""

    def __init__(self, labels: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listed = "\n  ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"\n  and {more} more" if more > 0 else ""
        super().__init__(
            f"{labels}: {len(self.problems)} line(s) cannot be packed; nothing was written:\n"
            f"  {listed}{tail}"
        )


@dataclass(frozen=True)
class Entry:
    """One line of a labels file."""

    line: int
    source: str  # the path as written
    path: Path  # resolved against the labels file's folder
    text: str  # NFKC


@dataclass(frozen=True)
class LabelCheck:
    """What a model can read: its charset, the longest label its family encodes (0: no bound;
    1 for the hanzi classifier, ``max_len`` for the reader), and its task (``expr``: only
    expressions with a value)."""

    charset: frozenset[str]
    longest: int = 0
    task: str | None = None
    # CTC models: the frames an image of (width, height) px gives, once scaled to the model
    frames: Callable[[int, int], int] | None = None

    def fits(self, text: str, width: int, height: int) -> str | None:
        """Why an image of this size is too narrow for its label under CTC, or None: CTC needs
        a frame per character and one between each repeated pair, and a label it cannot align
        would add nothing to training (its loss is zero) and is always misread."""
        if self.frames is None:
            return None
        need = len(text) + sum(a == b for a, b in itertools.pairwise(text))
        have = self.frames(width, height)
        if have < need:
            return (
                f"label {text!r} needs {need} CTC frames; this {width}x{height} px image gives "
                f"the model {have}: it is too narrow for its text (crop less tightly, or split it)"
            )
        return None

    def problem(self, text: str) -> str | None:
        """Why the model cannot read ``text`` (as its evaluation would refuse it), or None."""
        why = label_problem(text, self.charset, self.longest)
        if why:
            return why
        if self.task == "expr":
            try:
                evaluate_expression(text)
            except ExpressionError as e:
                return f"label {text!r}: {e}"
        return None


def read_labels(labels: str | os.PathLike) -> tuple[list[Entry], list[tuple[int, str]]]:
    """The entries of a labels file, and its problems: (line number, ``file:line: why``)."""
    labels = Path(labels)
    try:
        raw = labels.read_bytes()
    except OSError as e:
        raise PackError(str(labels), [f"{labels}: cannot be read: {e.strerror or e}"]) from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PackError(str(labels), [f"{labels}:{line}: not UTF-8 ({e.reason})"]) from None
    entries, problems = [], []
    normalised: list[tuple[int, list[str]]] = []  # lines whose labels NFKC changes, and how
    respaced: list[int] = []  # lines whose labels' whitespace `label_spaces` changes
    # Lines end at "\n" (or "\r\n") only: str.splitlines would also split a label at U+2028,
    # U+0085 and the other separators Unicode has.
    for n, line in enumerate(content.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{labels}:{n}"
        if "\t" not in line:
            problems.append((n, f"{where}: no tab between the image's path and its text"))
            continue
        source, text = line.split("\t", 1)
        if changed := compatibility_forms(text):
            normalised.append((n, changed))
        text = unicodedata.normalize("NFKC", text)
        if not source:
            problems.append((n, f"{where}: no image path before the tab"))
        elif not text.strip():
            problems.append((n, f"{where}: {source}: empty label"))
        elif "\t" in text:
            problems.append((n, f"{where}: {source}: more than one tab (a label holds no tab)"))
        else:
            if (spaced := label_spaces(text)) != text:
                respaced.append(n)
            entries.append(Entry(n, source, labels.parent / source, spaced))
    if not entries and not problems:
        problems.append((0, f"{labels}: no labelled image in it"))
    if normalised:
        forms = list(dict.fromkeys(f for _, fs in normalised for f in fs))
        log.warning(
            "%s: %d label(s) read in their NFKC form, as charsets are (lines %s): %s",
            labels,
            len(normalised),
            ", ".join(str(n) for n, _ in normalised[:5]) + (", ..." if len(normalised) > 5 else ""),
            ", ".join(forms[:10]) + (", ..." if len(forms) > 10 else ""),
        )
    if respaced:
        log.warning(
            "%s: %d label(s) read with their spaces as every line label and Tesseract reading "
            "holds them (a run of whitespace one space, none at either end or next to a hanzi "
            "or other wide character), which no reading could otherwise match (lines %s)",
            labels,
            len(respaced),
            ", ".join(map(str, respaced[:5])) + (", ..." if len(respaced) > 5 else ""),
        )
    return entries, problems


def _scaled(image: Image.Image, height: int | None) -> np.ndarray:
    if height is not None and image.height != height:
        width = max(1, round(image.width * height / image.height))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def pack(
    labels: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test_own",
    check: LabelCheck | None = None,
    samples_per_shard: int = 10_000,
    height: int | None = None,
    polarity: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect: int | None = MAX_ASPECT,
    trim: bool = False,
    png_level: int = 1,
) -> list[Path]:
    """Pack a labels file's images into ``{out}/{split}-{i:06d}.tar``; returns the shard paths.

    Every image is read and every label checked before the first shard is written. With
    ``trim``, each is cut to its ink as ``models.recognize --trim`` cuts it (`trim_to_ink`, with
    the margins of the ``check``'s task, else a line's).

    Raises:
        PackError: Listing every line that cannot be packed, in line order (nothing is written
            then).
        ValueError: A split name that is not a word (``[A-Za-z0-9][A-Za-z0-9_-]*``), or ``out``
            is a file or cannot be made (`synth.atomic.unwritable_why`).
    """
    if not SPLIT_NAME.fullmatch(split):
        raise ValueError(f"split {split!r}: use letters, digits, '_' and '-' (no dot)")
    task = check.task if check is not None and check.task else None
    if trim and (why := trim_refusal(task, f"a {task} model")):
        raise ValueError(why)
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: give a folder for the shards")
    if why := unwritable_why(out):  # before every image is read (a file above it, say)
        raise ValueError(f"{out}: cannot be written: {why}")
    entries, problems = read_labels(labels)

    def load(e: Entry) -> np.ndarray:
        gray = load_gray(e.path, polarity=polarity, max_pixels=max_pixels, max_aspect=max_aspect)
        if trim:  # framed as `models.recognize --trim` frames it: scored as it would be read
            gray = trim_to_ink(gray, task or "line")
        if why := label_proportion_problem(gray.size, e.text):  # training would refuse it
            raise ImageLoadError(str(e.path), why)  # and scaled to height, it fills memory
        return _scaled(gray, height)

    def problem(e: Entry) -> str | None:
        if check is not None and (why := check.problem(e.text)):
            return f"{e.source}: {why}"
        try:
            image = load(e)
        except ImageLoadError as err:  # named where it was read: a relative path resolved
            header = e.line == 1 and not e.path.exists() and not Path(e.source).suffix
            # "path<TAB>text", "image<TAB>label": a header row, which a labels file has none of
            return f"{err} (a header row? a labels file has none)" if header else str(err)
        why = check.fits(e.text, image.shape[1], image.shape[0]) if check is not None else None
        return f"{e.source}: {why}" if why else None

    # First every image is read and checked, keeping none (memory stays that of one image);
    # then, when all is well, read again and written.
    for e in entries:
        if why := problem(e):
            problems.append((e.line, f"{labels}:{e.line}: {why}"))
    if problems:
        raise PackError(str(labels), [msg for _, msg in sorted(problems)])

    out.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(len(entries) / samples_per_shard)
    # The shards are written in a hidden folder beside their places, then put in place together:
    # a packing stopped while it writes (Ctrl-C, a kill) leaves the folder as the last finished
    # one left it, never new shards beside old ones under the old manifest. Stopped during the
    # renames at the end (milliseconds), it leaves no manifest: the split is then incomplete,
    # and packing it again mends it. A kill leaves the hidden folder, which the next packing of
    # the split removes.
    for unfinished in out.glob(f".{split}.packing-*"):
        shutil.rmtree(unfinished, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{split}.packing-"))
    try:
        names = []
        for shard in range(n_shards):
            chunk = entries[shard * samples_per_shard : (shard + 1) * samples_per_shard]
            name = f"{split}-{shard:06d}.tar"
            write_samples(staging / name, _samples(chunk, load, split, shard, task), png_level)
            names.append(name)
        # the old manifest would describe the old shards: gone before the first is replaced
        (out / f"{split}.manifest.tsv").unlink(missing_ok=True)
        paths = []
        for name in names:
            os.replace(staging / name, out / name)
            paths.append(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in out.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if stale not in paths:
            stale.unlink()
            log.info("removed %s, left from an earlier packing of split %s", stale, split)
    write_manifest([str(p) for p in paths], out / f"{split}.manifest.tsv")
    log.info("packed %d images into %d shard(s) under %s", len(entries), len(paths), out)
    return paths


def _samples(
    entries: Sequence[Entry],
    load: Callable[[Entry], np.ndarray],
    split: str,
    shard: int,
    task: str | None,
) -> Iterator[Sample]:
    for n, e in enumerate(entries):
        image = load(e)
        meta: dict[str, Any] = {
            "text": e.text,
            "split": split,
            # the image's folder, with a slash: "./" beside the labels file, never the tables'
            # "all" row (models.report.ALL_FONTS)
            "font": Path(e.source).parent.as_posix().rstrip("/") + "/",
            "source": e.source,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
        }
        if task == "expr":
            meta["value"] = value_json(evaluate_expression(e.text))
        yield Sample(key=f"own_{split}_{shard:06d}_{n:06d}", image=image, meta=meta)


def ctc_frames(models: Sequence[tuple[str, Mapping[str, Any]]]) -> Callable[[int, int], int]:
    """The frames an image of (width, height) px gives the fewest-framed of some CTC models
    (``(model name, model_kwargs)`` pairs), once scaled to each one's height and padded to its
    narrowest input, as `models.preprocess` feeds it."""
    from models.preprocess import min_width
    from models.registry import input_spec, output_length

    geometries = [(name, kwargs, input_spec(name, **kwargs)) for name, kwargs in models]

    def frames(width: int, height: int) -> int:
        return min(
            int(
                output_length(
                    name,
                    max(max(1, round(width * g["height"] / height)), min_width(g)),
                    **kwargs,
                )
            )
            for name, kwargs, g in geometries
        )

    return frames


def label_check(checkpoint: str | None, charset: str | None) -> LabelCheck | None:
    """The labels' check: a checkpoint's charset and task, or a charset file's characters."""
    if checkpoint:
        # These import torch: only when a checkpoint is given.
        from models.export import ExportError, read_model_meta
        from models.families import make_family

        try:
            meta = read_model_meta(checkpoint)
        except ExportError as e:  # an .onnx file that is no export: named, as a bad checkpoint
            raise ValueError(str(e)) from None
        family = make_family(meta.model, meta.charset, meta.model_kwargs)
        frames = ctc_frames([(meta.model, meta.model_kwargs)]) if family.kind == "ctc" else None
        return LabelCheck(frozenset(meta.charset), family.longest_label, meta.task, frames)
    if charset:
        from synth.charset import read_charset

        return LabelCheck(frozenset(read_charset(charset)))
    return None


@stops_on_interrupt("models.pack", "the output folder is as the last finished packing left it")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("models.pack"),
        description="Pack labelled images (a 'path<TAB>text' file) into WebDataset shards that "
        "models.evaluate and models.train read.",
    )
    parser.add_argument("labels", help="UTF-8 file: one 'image path<TAB>text' per line")
    parser.add_argument("out", help="folder for {split}-NNNNNN.tar and {split}.manifest.tsv")
    parser.add_argument("--split", default="test_own", help="shard name prefix (test_own)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        help="model.pt (or an .onnx export of one) whose charset and task every label must fit",
    )
    which.add_argument("--charset", help="charset file (one character per line) labels must fit")
    parser.add_argument("--samples-per-shard", type=positive_int, default=10_000)
    parser.add_argument(
        "--height", type=positive_int, help="scale each image to this height, keeping its aspect"
    )
    parser.add_argument("--polarity", choices=POLARITIES, default="auto")
    parser.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images of more pixels (default 50,000,000; 0: no limit)",
    )
    parser.add_argument(
        "--max-aspect",
        type=non_negative_int,
        default=MAX_ASPECT,
        help=f"refuse images whose one side is more than this many times the other (default "
        f"{MAX_ASPECT}, as models.recognize; 0: no limit)",
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="cut each image to its ink, framed as models.recognize --trim frames it (as the "
        "--checkpoint's task frames its text: a line's without one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check = label_check(args.checkpoint, args.charset)
        paths = pack(
            args.labels,
            args.out,
            split=args.split,
            check=check,
            samples_per_shard=args.samples_per_shard,
            height=args.height,
            polarity=args.polarity,
            max_pixels=args.max_pixels or None,
            max_aspect=args.max_aspect or None,
            trim=args.trim,
        )
    except (ValueError, OSError) as e:  # PackError, CheckpointError, a charset file: named
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
