"""Look at the data: a contact sheet of samples from shards, with their labels.

    python -m synth.preview results/shards/line/train-000000.tar -n 48 -o line.png

Labels are drawn with a CJK font (``--font``, else the first of a few common system fonts found),
so hanzi labels are legible; a caption that font cannot draw all of is drawn with the next that
can, and a character none draws shows as ``?``. Samples are taken round-robin from the given
shards.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from synth.atomic import missing_why, write_bytes_atomic
from synth.fonts import FONT_ERRORS, FontError, drawn_chars, face_count, font_file_problem
from synth.render import FontFace, FontRef, load_font
from synth.shards import REBUILD_HINT, iter_records, json_kind, record_json

log = logging.getLogger(__name__)

# Tried in order when no label font is given: (path, face index).
LABEL_FONTS = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
)
CELL_H = 64  # px: every sample is scaled to this height on the sheet (at most 2x)
MAX_CELL_W = 360
SHEET_W = 1200
GREY = (110, 110, 110)  # the font names under the labels


def iter_shard(path: str | os.PathLike) -> Iterator[tuple[str, Image.Image, dict]]:
    """(key, image, metadata) of each sample of a shard, in order, the image decoded.

    Raises:
        ValueError: A sample lacks its .png or .json, or either cannot be decoded (naming the
            shard and the sample, as training and evaluation do); ShardReadError: the tar.
    """
    for record in iter_records(path):
        key = record["__key__"]
        where = f"shard {path}: sample {key!r}"
        if "png" not in record or "json" not in record:
            raise ValueError(f"{where} lacks its .png or .json")
        meta = record_json(record["json"], where)
        try:
            image = Image.open(io.BytesIO(record["png"]))
            image.load()  # decoded here, where the sample is known, not when the sheet is drawn
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{where}: cannot decode .png: {e}{REBUILD_HINT}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{where}: bad .json: {json_kind(meta)}, not an object")
        yield key, image, meta


def take(
    shards: Sequence[str | os.PathLike], n: int, scan: int = 50
) -> list[tuple[str, Image.Image, dict]]:
    """Up to ``n`` samples, round-robin over the shards, as many faces among them as can be:
    of the first ``scan * n`` samples, the first of each face (font file and index) comes first,
    then the others in order, so a sheet shows the faces a few samples would leave out (a
    symbol font among 80 faces). Shown in round-robin order."""
    its = [iter_shard(s) for s in shards]
    seen: list[tuple[str, Image.Image, dict]] = []
    while its and len(seen) < scan * n:
        for it in list(its):
            try:
                seen.append(next(it))
            except StopIteration:
                its.remove(it)
    faces: set[tuple[str, str]] = set()
    first = []
    for i, (_, _, meta) in enumerate(seen):
        face = (str(meta.get("font_file", "")), str(meta.get("face", "")))
        if face not in faces:
            faces.add(face)
            first.append(i)
    chosen = set(first[:n])
    chosen |= set([i for i in range(len(seen)) if i not in chosen][: n - len(chosen)])
    return [seen[i] for i in sorted(chosen)]


def contact_sheet(
    shards: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    n: int = 48,
    label_font: FontRef | None = None,
) -> int:
    """Write a PNG grid of ``n`` samples of ``shards`` with their labels, every face's first if it
    can (`take`).

    Each cell shows the image (scaled to a common height), its label (and value for expressions)
    and the font it was drawn with (`_face_line`: marked when the sample is a held-out one).

    Returns:
        The number of samples shown.

    Raises:
        synth.fonts.FontError: ``label_font`` cannot be read (naming its file and face; the
            system's label fonts are passed over with a warning instead).
        OSError, ValueError: A shard is missing or damaged, or holds no sample.
    """
    samples = take(shards, n)
    if not samples:
        raise ValueError(f"no samples in {', '.join(map(str, shards))}")
    captions = _Captions(
        [label_font] if label_font is not None else [],
        [_label(meta) for _, _, meta in samples] + [_face_line(m) for _, _, m in samples],
    )
    scaled = []
    for _, img, _ in samples:
        k = min(2.0, CELL_H / img.height, MAX_CELL_W / img.width)
        size = (max(1, round(img.width * k)), max(1, round(img.height * k)))
        scaled.append(img.convert("L").resize(size, Image.Resampling.NEAREST))
    cell_w = max(max(im.width for im in scaled), 120) + 8
    cell_h = CELL_H + 44
    cols = max(1, min(len(samples), SHEET_W // cell_w))
    rows = math.ceil(len(samples) / cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, ((_, _, meta), im) in enumerate(zip(samples, scaled, strict=True)):
        x, y = (i % cols) * cell_w + 4, (i // cols) * cell_h + 4
        sheet.paste(im.convert("RGB"), (x, y))
        font, label = captions.font(_label(meta), 16)
        draw.text((x, y + CELL_H + 2), _fit(label, font, cell_w - 8), font=font, fill=(0, 0, 160))
        font, name = captions.font(_face_line(meta), 11)
        draw.text((x, y + CELL_H + 22), _fit(name, font, cell_w - 8), font=font, fill=GREY)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes_atomic(out, buf.getvalue())
    return len(samples)


def _label(meta: dict) -> str:
    """A sample's caption: its text, and its value for an expression."""
    label = str(meta.get("text", "?"))
    return f"{label} = {meta['value']}" if "value" in meta else label


HELD_OUT = "[held out] "  # before the face of a test_heldout sample


def _face_line(meta: dict) -> str:
    """A tile's second line: the face that drew it, after `HELD_OUT` for a ``test_heldout``
    sample (a face training never saw; first, where shortening to the tile leaves it), so a
    sheet of a training and a held-out shard tells their faces apart."""
    font = str(meta.get("font", ""))
    return HELD_OUT + font if meta.get("split") == "test_heldout" else font


class _Captions:
    """The fonts captions are drawn with: the given ones, then the system's `LABEL_FONTS`. A
    caption is drawn with the first that draws all of its characters (`synth.fonts.drawn_chars`),
    else with the one that draws most, its other characters shown as ``?``: a user's font
    chosen for the labels may lack ``=`` or the Latin letters of font names, and a sheet shows
    no missing-glyph box either.

    Raises:
        synth.fonts.FontError: A given font cannot be read (naming its file and face): the
            user asked for it, so it is not passed over as a system font that cannot be read is.
    """

    def __init__(self, given: Sequence[FontRef], texts: Sequence[str]) -> None:
        self.chars = set("".join(texts)) | set("?.")
        refs = [*given, *(FontFace(p, i) for p, i in LABEL_FONTS if Path(p).is_file())]
        by_face = {(r.path, r.index): r for r in reversed(refs)}  # a face once, at its first
        self.refs = sorted(by_face.values(), key=refs.index)
        self._drawn: dict[int, set[str] | None] = {}  # read when first needed
        self._warned = False
        asked = {(r.path, r.index) for r in given}
        for i, ref in enumerate(self.refs):
            if (ref.path, ref.index) in asked:
                try:
                    self._drawn[i] = drawn_chars(ref.path, ref.index, self.chars)
                except FONT_ERRORS as e:
                    why = _unread_font_why(ref.path, ref.index, e)
                    raise FontError(f"label font {ref.path} (face {ref.index}): {why}") from None

    def _drawn_by(self, i: int) -> set[str] | None:
        """What font ``i`` draws of the captions' characters; None when it cannot be read."""
        if i not in self._drawn:
            ref = self.refs[i]
            try:
                self._drawn[i] = drawn_chars(ref.path, ref.index, self.chars)
            except FONT_ERRORS as e:
                log.warning("label font %s (face %d) cannot be read: %s", ref.path, ref.index, e)
                self._drawn[i] = None
        return self._drawn[i]

    def font(
        self, text: str, size: int
    ) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
        """The font to draw ``text`` with at ``size`` px, and the text as it can draw it."""
        need, readable = set(text), []
        for i, ref in enumerate(self.refs):
            drawn = self._drawn_by(i)
            if drawn is not None and need <= drawn:
                return load_font(ref.path, ref.index, size), text
            if drawn is not None:
                readable.append((ref, drawn))
        if not readable:
            if not self._warned:
                log.warning("no CJK font found for the labels; characters it lacks show as ?")
                self._warned = True
            return ImageFont.load_default(size), "".join(c if c.isascii() else "?" for c in text)
        ref, drawn = max(readable, key=lambda f: len(need & f[1]))  # the first that draws most
        unknown = "?" if "?" in drawn else ""
        shown = "".join(c if c in drawn or c.isspace() else unknown for c in text)
        return load_font(ref.path, ref.index, size), shown


def _unread_font_why(path: str, index: int, error: Exception) -> str:
    """Why face ``index`` of ``path`` could not be read (``error``, what reading it raised)."""
    if Path(path).is_dir():
        return "is a folder, not a font file"
    if not Path(path).is_file():
        return missing_why(path)
    if problem := font_file_problem(path):
        return f"not a font this project reads: {problem}"
    if isinstance(error, IndexError):
        return f"no such face (the file has {face_count(path)}; faces count from 0)"
    return f"cannot be read: {error}"


def _fit(text: str, font, width: int) -> str:
    """``text``, shortened with an ellipsis to fit ``width`` px (labels must not overlap)."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _face_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a face index from 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """The command: returns its exit status, 1 after one ``error:`` line for a shard that is
    missing or unreadable, or holds no sample, or a ``--font`` face that cannot be read."""
    ap = argparse.ArgumentParser(prog="python -m synth.preview", description=__doc__.split("\n")[0])
    ap.add_argument("shards", nargs="+", help="WebDataset shard files")
    ap.add_argument("-n", type=_positive_int, default=48, help="samples to show (default 48)")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--font", help="font for the labels (default: a CJK system font)")
    ap.add_argument("--face", type=_face_index, help="face index in --font (default 0)")
    args = ap.parse_args(argv)
    if args.face is not None and args.font is None:
        ap.error("argument --face: not allowed without argument --font (it picks a face of it)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    font = FontFace(args.font, args.face or 0) if args.font is not None else None
    out = Path(args.output)
    if any(os.path.exists(s) and out.exists() and os.path.samefile(s, out) for s in args.shards):
        ap.error(f"-o {out} is one of the shards given: it would be overwritten")
    if out.suffix.lower() != ".png":
        ap.error(f"-o {out}: the contact sheet is a PNG: give a .png file")
    try:
        shown = contact_sheet(args.shards, args.output, n=args.n, label_font=font)
    # a missing or damaged shard (ShardReadError), no sample, a label font that cannot be read
    except (OSError, ValueError) as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {shown} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
