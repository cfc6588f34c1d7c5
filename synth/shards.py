"""One shard: a task's samples rendered and written as a WebDataset tar, deterministically.

Randomness: the shard's generator is ``PCG64(SeedSequence([seed, task_id, split_id, shard]))`` and
nothing else is random, so the same config and seed give the same bytes on any machine and in any
job order. The tar is written to a temporary file in the same folder, then renamed.

The tar bytes are exactly what ``webdataset.TarWriter(f, encoder=False, mtime=MTIME, user=OWNER,
group=OWNER)`` writes (ustar headers, members in sorted-extension order, 10 KiB records; a test
compares the two byte for byte), produced by :class:`ShardWriter`, a 40-line ustar writer, for two
measured reasons: ``import webdataset`` imports torch (3 s per shard job on 2 cores, more than
rendering a smoke shard), and Python's ``tarfile`` header building costs about 200 us per sample (a
quarter of rendering a 64x64 hanzi). WebDataset, ``tarfile`` and GNU tar read the shards.

Each sample is ``{key}.png`` (8-bit grayscale) and ``{key}.json``; the key is
``{task}_{split}_{shard:06d}_{index:06d}`` (no dots, which WebDataset would split on). JSON fields:

- ``text``: the label (NFKC), e.g. ``(7+5)*4``.
- ``drawn`` (line only, when it differs from ``text``): the text as the image shows it, in its
  source's forms (``今天，天气``, labelled ``今天,天气``); see `generate`.
- ``task``, ``split``: as in the path.
- ``font``: the face's family and style, ``font_file``: the file's base name (`recorded_name`),
  ``face``: face index.
- ``width``, ``height``: the image size in px; ``font_size``: the font size in px the text was
  drawn at (a hanzi glyph too large for its image: times the scale it was then shrunk by).
- ``seed``: the words of the shard's ``SeedSequence``, ``[seed, task_id, split_id, shard]``: with
  the sample's index (the key's last part) they say where it was drawn.
- ``degrade``: the degradations the image got, in the order applied (``["affine", "blur",
  "gaussian_noise", "legible"]``; ``legible`` when its floors changed the image; ``[]`` for none).
- ``value`` (expr only): the expression's integer value.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synth.atomic import atomic_write, sha256_file, write_text_atomic
from synth.augment import degrade, degrade_line, stroke_weight
from synth.charset import SPACE, code_points, listing, nfkc
from synth.fonts import Face, FontError, with_forms
from synth.render import (
    DoesNotFit,
    draw_line,
    has_oldstyle_digits,
    render_expr,
    render_hanzi,
    render_short,
)
from synth.specs import (
    SPLIT_IDS,
    TASK_IDS,
    ExprSpec,
    HanziSpec,
    LineSpec,
    ShardSpec,
    ShortSpec,
    TaskSpec,
    font_role,
)
from synth.text import (
    LineSampler,
    balanced_index,
    evaluate,
    expression,
    short_text,
    value_json,
)

log = logging.getLogger(__name__)

MTIME = 1_500_000_000  # fixed tar member mtime (2017-07-14), so a rerun writes identical bytes
MAX_TRIES = 200  # text re-draws when no face covers a sampled text
# Above this many redraws per sample (texts no one face covers, drawn again), the texts a split
# shows are not those its settings draw (a corpus's longer windows, its rarer mixes): a warning.
REDRAW_WARNING = 0.1
# zlib level of images that compress (1 is about 2x faster than 6 and barely larger). Images whose
# filtered rows are mostly non-zero (noise was added) are stored uncompressed (level 0): deflate
# saves only ~12% on them and costs as much as a quarter of rendering the sample.
PNG_LEVEL = 1
PNG_STORE_ABOVE = 0.6  # fraction of non-zero filtered bytes above which deflate is skipped


@dataclass(frozen=True)
class Sample:
    """A rendered sample: key, ``uint8`` image ``(H, W)`` and its JSON metadata."""

    key: str
    image: np.ndarray
    meta: dict


def _pick_face(text: str, faces: Sequence[Face], rng: np.random.Generator) -> Face | None:
    candidates = [f for f in faces if f.covers(text)]
    if not candidates:
        return None
    return candidates[int(rng.integers(0, len(candidates)))]


def recorded_name(path: str) -> str:
    """A font file's base name as a sample records it (``font_file``): the name's bytes read as
    UTF-8, a byte that is no UTF-8 as ``\\xNN``. Python reads file names in the locale's
    encoding, so ``字体.ttf`` read each hanzi as three Latin-1 characters under
    ``en_US.ISO-8859-1`` and as other hanzi under ``zh_CN.GB18030``; read as UTF-8, the same
    file name gives the same bytes under any locale."""
    return os.fsencode(Path(path).name).decode("utf-8", "backslashreplace")


def _forms_drawn_by(drawn: str, face: Face) -> str:
    """``drawn`` as ``face`` draws it: each character it lacks (a full-width form the charset
    has not, `synth.fonts.with_forms`) in its NFKC form, which the label holds and the face was
    picked to cover. The label is unchanged, and no missing-glyph box is drawn.

    Raises:
        ValueError: the face still lacks a character (a bug: it was picked for the label).
    """
    out = "".join(c if c in face.covered else nfkc(c) for c in drawn)
    if not face.covers(out):
        lacking = sorted(set(out) - face.covered)
        raise ValueError(f"face {face.name} ({face.path}) would draw {out!r} without {lacking}")
    return out


def generate(
    spec: TaskSpec,
    shard: ShardSpec,
    charset: Sequence[str],
    faces: Sequence[Face],
    weight: float = 0.0,
    misdrawn: Mapping[str, str] | None = None,
) -> Iterator[Sample]:
    """Render a shard's samples in order.

    A line is drawn in its source's forms and labelled with their NFKC forms
    (`synth.text.LineSampler.draw`: a user's text's ``，`` is drawn ``，`` and labelled ``,``).
    The face is picked as for every task, among those covering the label (the coverage table's
    characters: so the faces, and the draws from the generator, are those of the label alone),
    and a form the chosen face lacks is drawn in its NFKC form (`_forms_drawn_by`), rather than
    keeping the face from every text that holds the form: no text is redrawn for a form, a
    split whose faces all lack one still draws its texts, and no box is ever drawn. What each
    face draws of the forms is read with fontTools when the shard starts
    (`synth.fonts.with_forms`). The other tasks' texts are charset characters, drawn as they
    are labelled, and no draw from the generator depends on the forms.

    Args:
        spec: the task's spec (:func:`synth.specs.task_spec`).
        shard: which shard (its seed words and sample count).
        charset: the task's charset; every label uses only these characters.
        faces: the faces this split may use (training faces, or held-out ones for test_heldout);
            each sample is drawn with a face that covers every character of its text.
        weight: every render's strokes moved by this share of a pixel before its degradations
            (`synth.augment.stroke_weight`: above 0 bolder), with the generator left where the
            workflow's shard leaves it, so the shard holds the same texts, faces and degradation
            settings as with 0, which writes what the workflow writes (bench/bench_weight.py's
            probe of a model's robustness).
        misdrawn: ``fonts.misdrawn`` (regex to characters): the forms it names for a face count
            as ones that face lacks (`synth.fonts.with_forms`), as the coverage table counts
            the charset's characters it names as missing.

    Yields:
        :class:`Sample` objects, ``shard.samples`` of them.

    Raises:
        ValueError: no face can draw any text of the task (a charset no face covers), or an
            expr operator the charset lacks.
    """
    fonts_key = "fonts.test_fonts" if shard.split == "test_heldout" else "fonts.paths"
    if not faces:
        raise ValueError(
            f"{shard.task}/{shard.split}: no usable font face for this split: {fonts_key} "
            "matches none (or exclude_families leaves out every face)"
        )
    if not any(face.covered & (set(charset) - {SPACE}) for face in faces):
        names = sorted({face.family for face in faces})
        raise ValueError(
            f"{shard.task}/{shard.split}: none of the {len(faces)} faces of {fonts_key} "
            f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) draws a character of "
            f"task {shard.task}'s charset; add a font that does to {fonts_key}"
        )
    if shard.split == "test_heldout" and (
        unseen := [c for c in charset if not any(c in face.covered for face in faces)]
    ):
        log.warning(
            "%s/test_heldout: %d character(s) of the charset are drawn by no held-out face, so "
            "no held-out sample holds them and the held-out figures leave them out: %s",
            shard.task,
            len(unseen),
            listing([code_points(c) for c in unseen]),
        )
    if isinstance(spec, ExprSpec) and (missing := [c for c in spec.operators if c not in charset]):
        raise ValueError(
            f"tasks.{shard.task}.operators: {''.join(missing)!r} not in the task's charset "
            f"({''.join(charset)!r}); add it to tasks.{shard.task}.charset"
        )
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(shard.entropy)))
    charset = list(charset)
    sampler = None
    if isinstance(spec, LineSpec):
        # What the corpus loses to the charset: a warning from the first training shard, in
        # the other shards' logs only (one line on the console per run, not one per shard).
        first = shard.split == "train" and shard.shard == 0
        sampler = LineSampler(
            charset,
            spec.length,
            spec.corpus_fraction,
            spec.mix_fraction,
            texts=spec.corpus,
            loud=first,
        )
        faces = with_forms(faces, sampler.forms, misdrawn)
        if lacking := [
            f"{f.name} ({''.join(sorted(sampler.forms - f.covered))})"
            for f in faces
            if f.covered & set(charset) and not sampler.forms <= f.covered
        ]:
            log.info(
                "%s/%s: %d face(s) lack forms the lines show and draw their NFKC forms instead: %s",
                shard.task,
                shard.split,
                len(lacking),
                listing(lacking),
            )
    by_face = dict.fromkeys(((f.path, f.index) for f in faces), 0)  # samples by face
    base = shard.shard * shard.samples  # position of the shard's first sample within the split
    perm_seed = [shard.seed, TASK_IDS[shard.task], SPLIT_IDS[shard.split]]
    skipped: set[str] = set()
    redraws = 0
    # Single hanzi are drawn in a balanced order of the characters the split's faces draw: a
    # character no face draws, skipped at its turn, gave its turn to the next one, drawn twice
    # (and after a run of them, five times). Every character of the shipped configs is drawn.
    drawn = [c for c in charset if any(c in f.covered for f in faces)]
    for i in range(shard.samples):
        face = None
        for attempt in range(MAX_TRIES):
            drawn_text = None  # the text as drawn, when it may differ from the label (line)
            if isinstance(spec, HanziSpec):
                text = drawn[balanced_index(base + i + attempt, len(drawn), perm_seed)]
            elif isinstance(spec, ExprSpec):
                text = expression(
                    rng, spec.baidu_fraction, spec.operands, spec.max_digits, spec.operators
                )
            elif isinstance(spec, LineSpec):
                drawn_text, text = sampler.draw(rng)
            elif isinstance(spec, ShortSpec):
                text = short_text(rng, charset, spec.length)
            else:
                raise TypeError(f"not a task spec: {spec!r}")
            face = _pick_face(text, faces, rng)
            if face is not None:
                break
            skipped.add(text)
            redraws += 1
        if face is None:
            raise ValueError(
                f"{shard.task}/{shard.split}: no font face covers texts like "
                f"{sorted(skipped)[:5]!r} "
                f"after {MAX_TRIES} tries; check the fonts and the charset"
            )
        by_face[(face.path, face.index)] += 1
        shown = text if drawn_text is None else _forms_drawn_by(drawn_text, face)
        try:
            used: dict[str, float] = {}
            image, centers = draw(spec, shown, face, rng, label=text, used=used)
        except (OSError, DoesNotFit) as e:
            # FreeType on outlines fontTools's coverage scan does not read (a damaged glyph), or
            # metrics far out of scale: the coverage scan reads neither
            raise FontError(
                f"{shard.task}/{shard.split}: font {face.path} (face {face.index}, {face.name}) "
                f"cannot draw {shown!r}: {e}: a damaged or odd file; take it out of {fonts_key} "
                "or replace it",
                fonts_key,
            ) from None
        applied: list[str] = []  # the degradations the workflow's image gets
        if weight:
            # the weighted image degraded from a copy of the generator, the workflow's image from
            # the generator itself: the next samples must be the workflow's, whatever the
            # degradations draw
            weighted = degrade(stroke_weight(image, weight), spec.degrade, copy.deepcopy(rng))
            _, centers = degrade_line(image, centers, spec.degrade, rng, applied)
            image = weighted
        else:
            image, centers = degrade_line(image, centers, spec.degrade, rng, applied)
        meta = {
            "text": text,
            "task": shard.task,
            "split": shard.split,
            "font": face.name,
            "font_file": recorded_name(face.path),
            "face": face.index,
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "font_size": used["font_size"],
            "seed": shard.entropy,
            "degrade": applied,
        }
        if isinstance(spec, ExprSpec):
            meta["value"] = value_json(evaluate(text))
        if shown != text:
            meta["drawn"] = shown
        if isinstance(spec, LineSpec):
            meta["centers"] = list(centers)
        yield Sample(f"{shard.key_prefix}_{i:06d}", image, meta)
    if skipped:
        _log_redraws(shard, faces, skipped, redraws)
    _log_faces_drawn(shard, charset, faces, by_face)


def _log_redraws(shard: ShardSpec, faces: Sequence[Face], skipped: set[str], redraws: int) -> None:
    """Say how many texts were drawn again because no one face covers all of each: at INFO, or
    as a warning (from a split's first shard) above `REDRAW_WARNING` per sample, when the texts
    the split shows are skewed (shorter corpus windows, fewer mixes of scripts), naming the
    characters of those texts that the fewest faces draw (a mix no face draws whole)."""
    share = redraws / max(1, shard.samples)
    if share <= REDRAW_WARNING or shard.shard != 0:
        log.info("%s/%s: %d texts redrawn (no face covered them)", shard.task, shard.split, redraws)
        return
    seen = collections.Counter(c for text in skipped for c in set(text) if c != SPACE)
    drawn_by = {c: sum(c in f.covered for f in faces) for c in seen}
    rarest = sorted(seen, key=lambda c: (drawn_by[c], -seen[c], c))[:6]
    log.warning(
        "%s/%s: %d texts redrawn for %d samples, no one face covering all of each: the split's "
        "texts are skewed to those one face draws whole (shorter lines, fewer mixes); the "
        "characters of those texts the fewest faces draw: %s. Add a face that draws them "
        "together, or keep them apart in the corpus",
        shard.task,
        shard.split,
        redraws,
        shard.samples,
        ", ".join(f"{c!r} ({drawn_by[c]} face{'s' if drawn_by[c] != 1 else ''})" for c in rarest),
    )


def _log_faces_drawn(
    shard: ShardSpec, charset: Sequence[str], faces: Sequence[Face], by_face: dict
) -> None:
    """Log how many samples each face drew, and name the faces that draw characters of the
    charset but drew none of the shard's samples: a text is drawn only by a face that covers all
    of it, so a face lacking a character most texts hold (a digit, for expressions; many hanzi,
    for lines) draws next to none, which its coverage row does not show. Named only when the
    shard has 10 samples a face or more (a face with its share of the texts drawing none is then
    unlikely), as a warning from each split's first shard, at INFO from the others."""
    counts = ", ".join(
        f"{f.name} x{by_face[(f.path, f.index)]}" for f in faces if by_face[(f.path, f.index)]
    )
    log.info("%s/%s: samples by face: %s", shard.task, shard.split, counts)
    wanted = set(charset) - {SPACE}  # faces drawing none of it: the charset job names them
    silent = sorted(
        {
            f"{f.name} ({Path(f.path).name})"
            for f in faces
            if f.covered & wanted and not by_face[(f.path, f.index)]
        }
    )
    if silent and shard.samples >= 10 * len(faces):
        log.log(
            logging.WARNING if shard.shard == 0 else logging.INFO,
            "%s/%s: %d face(s) draw characters of the charset but none of this shard's %d "
            "samples, each drawn by a face that covers all of its text: they lack characters "
            "most texts hold (see results/fonts/%s/%s.tsv): %s",
            shard.task,
            shard.split,
            len(silent),
            shard.samples,
            shard.task,
            font_role(shard.split),
            listing(silent),
        )


def draw(
    spec: TaskSpec,
    text: str,
    face: Face,
    rng: np.random.Generator,
    label: str | None = None,
    used: dict[str, float] | None = None,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Render one text with the task's renderer (before degradations), and for a line where
    each character of its label is drawn (`synth.render.Line`'s centres; ``()`` for the other
    tasks).

    With ``spec.aliased > 0`` one uniform number decides whether the text is drawn without
    anti-aliasing; at 0 nothing is drawn, so configs without the option keep their bytes. An
    expression's ``spec.oldstyle`` does the same for old-style digits, drawn only for a face
    that has them (`synth.render.has_oldstyle_digits`).
    ``label`` is the text's label, which may differ from the text drawn (a line's ``…``,
    labelled ``...``): a line is as wide as its label needs (`synth.render.draw_line`'s ``chars``).
    ``used`` is given the font size drawn at (the renderers' ``used``).
    """
    aliased = spec.aliased > 0 and bool(rng.random() < spec.aliased)
    # likewise: nothing drawn unless the task asks for old-style digits and the face has them
    oldstyle = (
        isinstance(spec, ExprSpec)
        and spec.oldstyle > 0
        and has_oldstyle_digits(face.path, face.index)
        and bool(rng.random() < spec.oldstyle)
    )
    if isinstance(spec, LineSpec):
        line = draw_line(
            text,
            face,
            spec.height,
            rng,
            font_size=spec.font_size,
            min_char_width=spec.min_char_width,
            aliased=aliased,
            chars=None if label is None else len(label),
            used=used,
        )
        return line.image, line.centers
    if isinstance(spec, HanziSpec):
        image = render_hanzi(
            text,
            face,
            spec.size,
            rng,
            font_size=spec.font_size,
            rotate=spec.rotate,
            offset=spec.offset,
            stroke=spec.stroke,
            morph=spec.morph,
            aliased=aliased,
            used=used,
        )
    elif isinstance(spec, ExprSpec):
        image = render_expr(
            text,
            face,
            (spec.height, spec.width),
            rng,
            font_size=spec.font_size,
            spacing=spec.spacing,
            aliased=aliased,
            oldstyle=oldstyle,
            used=used,
        )
    elif isinstance(spec, ShortSpec):
        image = render_short(
            text, face, spec.size, rng, font_size=spec.font_size, aliased=aliased, used=used
        )
    else:
        raise TypeError(f"not a task spec: {spec!r}")
    return image, ()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(image: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """8-bit grayscale PNG bytes of a ``uint8`` array ``(H, W)``.

    A minimal encoder (IHDR, one IDAT, IEND; the "Up" filter on every row but the first) written
    here because PIL's PNG writer costs about 3x more per small image, most of it Python plumbing,
    which would make writing a shard a visible share of rendering it. Noisy images are stored
    without compression (see ``PNG_STORE_ABOVE``), and ``level=0`` stores every row unfiltered.
    Deterministic: no timestamps, and the zlib level depends only on the pixels and ``level``.
    """
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"encode_png wants a uint8 (H, W) array, got {image.dtype} {image.shape}")
    h, w = image.shape
    raw = np.empty((h, w + 1), dtype=np.uint8)
    if level == 0:  # stored: no filter, nothing to gain from one
        raw[:, 0] = 0
        raw[:, 1:] = image
    else:
        raw[0, 0] = 0
        raw[1:, 0] = 2
        raw[0, 1:] = image[0]
        np.subtract(image[1:], image[:-1], out=raw[1:, 1:])
        if np.count_nonzero(raw) > PNG_STORE_ABOVE * raw.size:
            level = 0
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def encode_json(meta: dict) -> bytes:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


OWNER = "synthocr"  # uname and gname of every member
_BLOCK = 512
_RECORD = 20 * _BLOCK


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _field(text: str, width: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= width:
        raise ValueError(f"tar member name too long: {text!r}")
    return raw + b"\0" * (width - len(raw))


class ShardWriter:
    """Writes WebDataset samples as a ustar stream, byte-identical to ``webdataset.TarWriter``.

    Args:
        fileobj: a binary file open for writing.
        mtime: the mtime of every member.
    """

    def __init__(self, fileobj, mtime: int = MTIME):
        self.f = fileobj
        self.mtime = mtime
        self.offset = 0
        self._owner = _field(OWNER, 32)

    def _header(self, name: str, size: int) -> bytes:
        head = (
            _field(name, 100)
            + _octal(0o444, 8)
            + _octal(0, 8)
            + _octal(0, 8)
            + _octal(size, 12)
            + _octal(self.mtime, 12)
            + b" " * 8  # checksum placeholder
            + b"0"  # regular file
            + b"\0" * 100
            + b"ustar\x0000"
            + self._owner
            + self._owner
            + b"\0" * 16  # devmajor, devminor: empty for a regular file, as tarfile writes them
            + b"\0" * 155
        )
        head += b"\0" * (_BLOCK - len(head))
        chksum = b"%06o\0" % sum(head)
        return head[:148] + chksum + head[155:]

    def write(self, key: str, parts: dict[str, bytes]) -> None:
        """Write one sample: ``{key}.{ext}`` for each part, in sorted extension order."""
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot")
        chunks = []
        for ext in sorted(parts):
            data = parts[ext]
            chunks.append(self._header(f"{key}.{ext}", len(data)))
            chunks.append(data)
            pad = -len(data) % _BLOCK
            if pad:
                chunks.append(b"\0" * pad)
        buf = b"".join(chunks)
        self.f.write(buf)
        self.offset += len(buf)

    def close(self) -> None:
        """End of archive (two zero blocks), padded to a whole 10 KiB record like ``tarfile``."""
        end = 2 * _BLOCK
        end += -(self.offset + end) % _RECORD
        self.f.write(b"\0" * end)
        self.offset += end


def write_samples(
    path: str | os.PathLike, samples: Iterator[Sample], png_level: int = PNG_LEVEL
) -> int:
    """Write samples to a WebDataset tar atomically; returns the number written.

    ``png_level`` is the zlib level of the PNGs (the task's ``png_level``; 0 stores them).
    """
    n = 0
    with atomic_write(path, "wb") as f:
        writer = ShardWriter(f)
        for s in samples:
            png = encode_png(s.image, png_level)
            writer.write(s.key, {"png": png, "json": encode_json(s.meta)})
            n += 1
        writer.close()
    return n


def write_shard(
    path: str | os.PathLike,
    spec: TaskSpec,
    shard: ShardSpec,
    charset: Sequence[str],
    faces: Sequence[Face],
    weight: float = 0.0,
    misdrawn: Mapping[str, str] | None = None,
) -> int:
    """Render and write one shard (``weight``, ``misdrawn``: as `generate`); returns the number
    of samples."""
    samples = generate(spec, shard, charset, faces, weight, misdrawn)
    n = write_samples(path, samples, spec.png_level)
    log.info("wrote %s: %d samples", path, n)
    return n


# The end of a damaged shard's error: a shard is a function of the config, the seed and the
# fonts, so the workflow writes it again as it was.
REBUILD_HINT = (
    "; delete it and rerun the workflow, which rebuilds it byte for byte (a shard models.pack "
    "wrote: pack it again)"
)


def record_json(data: bytes | str, where: str, what: str = "cannot decode .json") -> Any:
    """A sample's ``.json`` member, parsed; a ValueError naming ``where`` (and ``what`` went
    wrong) that tells text that is not UTF-8 from text that is not JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        raise ValueError(f"{where}: {what}: not UTF-8 (byte {e.start}: {bad!r})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where}: {what}: not valid JSON: {e}") from None


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for an error: ``null``, ``a number (12)``,
    ``an array ([1, 2])`` (the value cut to 40 characters)."""
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )
    shown = json.dumps(value, ensure_ascii=False)
    return f"{kind} ({shown if len(shown) <= 40 else shown[:37] + '...'})"


def record_text(meta: Any, where: str) -> str:
    """A decoded ``.json`` member's label, ``meta["text"]``, checked to be there and a string: a
    null or a number would otherwise be read as the text ``None`` or ``12``.

    Raises:
        ValueError: ``meta`` is no object with a ``text`` field, or ``text`` is not a string
            (naming ``where`` and its JSON type).
    """
    if not isinstance(meta, Mapping):
        raise ValueError(
            f"{where}: bad .json: {json_kind(meta)}, not an object with a 'text' field (the label)"
        )
    if "text" not in meta:
        raise ValueError(f"{where}: bad .json: it has no 'text' field (the label)")
    text = meta["text"]
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'text' in its .json is {json_kind(text)}, not a string")
    return text


def split_member(name: str) -> tuple[str, str]:
    """A shard member's ``(key, extension)``, as WebDataset splits its name: the folder and the
    file name up to the file name's first dot, and the rest, lower-cased (``""`` without a dot;
    a name that starts with a dot gives a key ending in the folder, which `member_problem`
    refuses where WebDataset skips it).
    Every reader splits names here (`iter_records`, `count_samples`,
    `models.data.index_shard`), so training and evaluation see the same samples."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def name_problem(shard: str | os.PathLike, name: str) -> str | None:
    """Why a shard's file ``name`` cannot name a sample's part (naming the shard and member):
    no extension, or nothing before it (``.json``, ``dir/.x.png``: WebDataset skips them)."""
    key, ext = split_member(name)
    if not ext:
        return f"shard {shard}: member {name!r} has no extension"
    if not key or key.endswith("/"):
        return f"shard {shard}: member {name!r} has no name before its extension"
    return None


def member_problem(shard: str | os.PathLike, member: tarfile.TarInfo) -> str | None:
    """Why a shard member cannot be part of a sample (naming the shard and the member), or None
    for a regular file with an extension, and for a folder entry (which readers skip).

    WebDataset skips links and special files without a word; here they are errors, since the
    sample they stand for would be lost: a symbolic or hard link, a device, a FIFO."""
    if member.isdir():
        return None
    if member.isreg():
        return name_problem(shard, member.name)
    kind = (
        "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a file"
    )
    link = f" (to {member.linkname!r})" if member.issym() or member.islnk() else ""
    return (
        f"shard {shard}: member {member.name!r} is {kind}{link}: a sample's parts must be files"
        " (tar -h stores the files links point to)"
    )


def duplicate_key(shard: str | os.PathLike, key: str, member: str, previous: str | None) -> str:
    """What is wrong with a shard that holds ``key`` twice: ``member`` (its file name) comes
    after sample ``previous`` (a sample again), or, with ``previous`` None, repeats a member
    the sample has (a second ``.png``, say). Both readers say it alike (`iter_records`,
    `models.data.index_shard`)."""
    if previous is not None:
        what = f"appears again ({member} after sample {previous!r})"
    else:
        what = f"has a second .{split_member(member)[1]} member"
    return f"shard {shard}: sample {key!r} {what}: a duplicate key{REBUILD_HINT}"


class ShardReadError(ValueError):
    """A shard that is not a readable tar (empty, truncated, corrupt): names it, and the last
    sample read before the damage, and ends with `REBUILD_HINT`."""


def iter_records(shard: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """A WebDataset tar's samples in file order: ``{"__key__": key, ext: bytes, ...}``.

    Members that share a key (the file name up to its first dot, as WebDataset splits it) and
    follow each other form one sample. Read with `tarfile`, streaming: no torch import (as
    `webdataset` would bring), so evaluation, Tesseract, plot and preview jobs start fast.

    Raises:
        ShardReadError: The tar is unreadable (naming the shard and where it broke), or holds
            a key twice (two members of one sample with the same extension, or a key again
            after other samples), which would have one sample read twice or one part replaced.
    """
    current: dict[str, Any] | None = None
    last = None
    seen: set[str] = set()
    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                problem = member_problem(shard, member)
                if problem is not None:
                    raise ShardReadError(problem)
                if member.isdir():
                    continue
                key, ext = split_member(member.name)
                if current is not None and current["__key__"] != key:
                    last = current["__key__"]
                    yield current
                    current = None
                if current is None:
                    if key in seen:
                        raise ShardReadError(duplicate_key(shard, key, member.name, last))
                    seen.add(key)
                    current = {"__key__": key}
                elif ext in current:
                    raise ShardReadError(duplicate_key(shard, key, member.name, None))
                f = tar.extractfile(member)
                current[ext] = f.read() if f is not None else b""
            end = tar.offset
    except (tarfile.TarError, EOFError, zlib.error) as e:
        after = f" after sample {last!r}" if last is not None else ""
        raise ShardReadError(f"shard {shard}: not a readable tar{after}: {e}{REBUILD_HINT}") from e
    _check_complete(shard, end, current["__key__"] if current else None)
    if current is not None:
        yield current


def _check_complete(shard: str | os.PathLike, end: int, last: str | None) -> None:
    """A tar cut exactly between members reads as a shorter archive: only the two zero blocks
    that close every tar tell it from a whole one. Checked for plain (uncompressed) tars."""
    with open(shard, "rb") as f:
        compressed = f.read(3)[:2] in (b"\x1f\x8b", b"BZ") or f.name.endswith(".xz")
    if not compressed and os.path.getsize(shard) < end + 2 * tarfile.BLOCKSIZE:
        after = f" after sample {last!r}" if last is not None else ""
        raise ShardReadError(
            f"shard {shard}: ends{after} without the blocks that close a tar: cut short?"
            f"{REBUILD_HINT}"
        )


def count_samples(path: str | os.PathLike) -> int:
    """Samples in a shard (distinct keys), read from the tar headers.

    Raises:
        ShardReadError: The tar is unreadable, or a member cannot be part of a sample
            (`member_problem`: a link, a special file, no extension) (naming it).
    """
    try:
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if not m.isdir()]
            end = tar.offset
        for m in members:
            problem = member_problem(path, m)
            if problem is not None:
                raise ShardReadError(problem)
        keys = [split_member(m.name)[0] for m in members]
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise ShardReadError(f"shard {path}: not a readable tar: {e}{REBUILD_HINT}") from e
    _check_complete(path, end, keys[-1] if keys else None)
    return len(set(keys))


MANIFEST_COLUMNS = ["split", "shard", "path", "samples", "bytes", "sha256"]


def write_manifest(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> None:
    """A task's manifest: one row per shard (split, shard file name, path, samples, bytes, sha256).

    ``path`` is relative to the manifest's folder.
    """
    rows = ["\t".join(MANIFEST_COLUMNS)]
    out = Path(out)
    for p in sorted(Path(p) for p in paths):
        split = p.name.rsplit("-", 1)[0]
        rel = os.path.relpath(p, out.parent)
        rows.append(
            "\t".join(
                [split, p.name, rel, str(count_samples(p)), str(p.stat().st_size), sha256_file(p)]
            )
        )
    write_text_atomic(out, "\n".join(rows) + "\n")


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a manifest as dicts (``samples`` and ``bytes`` as int)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        row["samples"] = int(row["samples"])
        row["bytes"] = int(row["bytes"])
        rows.append(row)
    return rows
