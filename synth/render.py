"""Renderers (pure): text + font face + size + explicit generator -> grayscale image.

Each returns a ``uint8`` array of shape ``(H, W)``, dark text on a light flat background; the
degradations of :mod:`synth.augment` (noise, blur, warps, backgrounds, inversion) come after. The
text must be covered by the face (see :class:`synth.fonts.Face`): callers pick faces that draw
every character, so no missing-glyph box is ever rendered.

``aliased=True`` draws the text without anti-aliasing (FreeType's monochrome rendering), as bitmap
fonts, the embedded bitmap strikes of many CJK fonts at small sizes (AR PL UMing at 11-16 px,
WenQuanYi Zen Hei Sharp at 12-16 px) and unsmoothed screen text look.

``render_expr(..., oldstyle=True)`` draws the digits in the face's old-style (text) figures, its
OpenType ``onum`` forms (a ``0`` like an ``o``, a ``3`` and ``9`` below the baseline), as books set
in EB Garamond or Georgia print them (`has_oldstyle_digits` says which faces have them). That
one layout goes through libraqm (Pillow's RAQM engine, which applies OpenType features); the rest
is drawn with Pillow's basic layout, which applies none.

All draws from ``rng`` happen in a fixed order, so a given generator state gives the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

from synth.charset import nfkc


class FontRef(Protocol):
    """Anything naming a face: :class:`synth.fonts.Face` or ``FontFace(path, index)``."""

    path: str
    index: int


class FontFace:
    """A plain (path, face index) reference."""

    def __init__(self, path, index: int = 0):
        self.path = str(path)
        self.index = int(index)


# The OpenType features an old-style layout asks for (`render_expr`'s ``oldstyle``).
OLDSTYLE = ("onum",)


@lru_cache(maxsize=512)
def load_font(path: str, index: int, size: int, raqm: bool = False) -> ImageFont.FreeTypeFont:
    """A FreeType font object, cached per (path, face index, pixel size) within the process;
    ``raqm`` lays text out with libraqm, which applies OpenType features (`OLDSTYLE`)."""
    if raqm and not features.check("raqm"):
        raise RuntimeError(
            "old-style digits (tasks.expr.oldstyle) need Pillow built with libraqm, which this "
            "Pillow lacks (PIL.features.check('raqm') is False); PyPI's Pillow wheels have it"
        )
    engine = ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size=size, index=index, layout_engine=engine)


def _features(oldstyle: bool) -> list[str] | None:
    """The OpenType features of a layout: `OLDSTYLE`'s for old-style digits (through libraqm)."""
    return list(OLDSTYLE) if oldstyle else None


class DoesNotFit(ValueError):
    """A text wider or taller than its image even at the smallest font size."""


@lru_cache(maxsize=65536)
def _advance(path: str, index: int, size: int, ch: str, oldstyle: bool = False) -> float:
    return load_font(path, index, size, oldstyle).getlength(ch, features=_features(oldstyle))


@lru_cache(maxsize=65536)
def _ink_x(
    path: str, index: int, size: int, ch: str, oldstyle: bool = False
) -> tuple[float, float]:
    """The left and right ends of a character's ink from its pen position (0, 0 for none)."""
    font = load_font(path, index, size, oldstyle)
    left, _, right, _ = font.getbbox(ch, anchor="ls", features=_features(oldstyle))
    return (left, right) if right > left else (0.0, 0.0)


@lru_cache(maxsize=512)
def has_oldstyle_digits(path: str, index: int = 0) -> bool:
    """Whether a face draws other digits with its old-style figures (`OLDSTYLE`) than without:
    the digits drawn both ways at 48 px and compared, so a face whose ``onum`` feature does not
    reach its digits (or that has none) is False."""
    font = load_font(path, index, 48, True)
    digits = "0123456789"
    left, top, right, bottom = font.getbbox(digits, features=None)
    size = (int(right - left) + 96, int(bottom - top) + 96)
    drawn = []
    for feats in (None, list(OLDSTYLE)):
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).text(
            (48 - left, 48 - top), digits, font=font, fill=255, features=feats
        )
        drawn.append(mask.tobytes())
    return drawn[0] != drawn[1]


def _bbox(font: ImageFont.FreeTypeFont, text: str, aliased: bool) -> tuple[int, int, int, int]:
    """``text``'s ink box as `_draw` draws it: ``aliased``, in FreeType's monochrome mode, whose
    glyphs (a face's embedded bitmap strikes, AR PL UKai's) can reach a pixel past the
    anti-aliased box, which drew a short text's last column on the image's edge or past it."""
    return font.getbbox(text, mode="1" if aliased else "")


def _draw(mask: Image.Image, aliased: bool) -> ImageDraw.ImageDraw:
    """A drawing context on ``mask``; ``aliased`` turns anti-aliasing off (1-bit glyphs)."""
    draw = ImageDraw.Draw(mask)
    if aliased:
        draw.fontmode = "1"
    return draw


# The share of a glyph's ink an erosion must leave to be made (`render_hanzi`). Under a 3x3
# minimum at the hanzi task's sizes Noto Sans CJK Regular keeps about 30% (2% of its erosions
# fall under this and are not made), LXGW WenKai 17% of them, Noto Serif CJK Regular 32%, AR PL
# UKai 49%, the Light weights about 75%, Thin 91% (it keeps about 1%): strokes a pixel or two wide
# that an erosion leaves faint or broken.
MIN_ERODED_INK = 0.2


def _ink(fg_bg_rng: np.random.Generator, mask: Image.Image) -> np.ndarray:
    """Compose a coverage mask (255 = ink) into dark text on a light background."""
    bg = int(fg_bg_rng.integers(200, 256))
    fg = int(fg_bg_rng.integers(0, 80))
    m = np.asarray(mask, dtype=np.uint16)
    return (bg - (m * (bg - fg) + 127) // 255).astype(np.uint8)


def render_hanzi(
    text: str,
    font: FontRef,
    size: int,
    rng: np.random.Generator,
    *,
    font_size: Sequence[float] = (40, 58),
    rotate: float = 15.0,
    offset: float = 0.08,
    stroke: float = 0.15,
    morph: float = 0.2,
    aliased: bool = False,
    used: dict[str, float] | None = None,
) -> np.ndarray:
    """One character in a ``size`` x ``size`` image.

    Random font size, rotation (up to ``rotate`` degrees), centre offset (up to ``offset`` x size),
    a 1-px stroke with probability ``stroke``, erosion or dilation with probability ``morph``.
    The glyph is scaled down if it would not fit, so it is never clipped. An erosion that would
    leave under `MIN_ERODED_INK` of the glyph's ink is not made (a thin face's strokes, one or
    two pixels wide, vanish under it: the sample was blank under its label), and a glyph drawn
    between pixels to no ink at all (a hairline) is drawn again on whole pixels.

    Args:
        used: a dict given ``font_size``, the font size in px the text was drawn at,
            times the scale a glyph too large for the image is then scaled by
            (a sample's ``font_size``, `synth.shards`). Nothing is drawn for it.

    Returns:
        ``uint8`` array ``(size, size)``.
    """
    fs = int(rng.integers(int(font_size[0]), int(font_size[1]) + 1))
    angle = float(rng.uniform(-rotate, rotate)) if rotate > 0 else 0.0
    dx, dy = (rng.uniform(-offset, offset, size=2) * size) if offset > 0 else (0.0, 0.0)
    sw = 1 if rng.random() < stroke else 0
    m = rng.random()
    morph_kind = 0 if m >= morph else (1 if rng.random() < 0.5 else 2)
    f = load_font(font.path, font.index, fs)
    left, top, right, bottom = f.getbbox(text, stroke_width=sw)
    w, h = max(right - left, 1), max(bottom - top, 1)
    pad = 4
    side = int(np.ceil(np.hypot(w, h))) + 2 * pad
    origin = ((side - w) / 2 - left, (side - h) / 2 - top)
    for at in (origin, (round(origin[0]), round(origin[1]))):
        mask = Image.new("L", (side, side), 0)
        _draw(mask, aliased).text(at, text, font=f, fill=255, stroke_width=sw, stroke_fill=255)
        if mask.getbbox() is not None:
            break
    if angle:
        mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR)
    if morph_kind == 2:
        mask = mask.filter(ImageFilter.MaxFilter(3))
    elif morph_kind == 1:
        eroded = mask.filter(ImageFilter.MinFilter(3))
        ink = float(np.asarray(mask, dtype=np.float64).sum())
        if ink and float(np.asarray(eroded, dtype=np.float64).sum()) >= MIN_ERODED_INK * ink:
            mask = eroded
    box = mask.getbbox() or (0, 0, side, side)
    glyph = mask.crop(box)
    gw, gh = glyph.size
    limit = size - 2
    scale = 1.0
    if gw > limit or gh > limit:
        k = scale = limit / max(gw, gh)
        glyph = glyph.resize(
            (max(1, round(gw * k)), max(1, round(gh * k))), Image.Resampling.BILINEAR
        )
        gw, gh = glyph.size
    x = round((size - gw) / 2 + dx)
    y = round((size - gh) / 2 + dy)
    x = min(max(x, 1), size - gw - 1) if size - gw >= 2 else (size - gw) // 2
    y = min(max(y, 1), size - gh - 1) if size - gh >= 2 else (size - gh) // 2
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(glyph, (x, y))
    if used is not None:
        used["font_size"] = round(fs * scale, 1)
    return _ink(rng, canvas)


class Line(NamedTuple):
    """A rendered line: its image and where each character of its label is drawn.

    Attributes:
        image: ``uint8`` array ``(H, W)``.
        centers: the x of each label character's centre in the image, px (the middle of its
            advance), one per character of the label: a drawn ``…`` labelled ``...`` gives three,
            spread over its advance. What a CTC model's frames are told to read where
            (`models.families.CTCFamily.align_loss`).
    """

    image: np.ndarray
    centers: tuple[float, ...]


def render_line(
    text: str,
    font: FontRef,
    height: int,
    rng: np.random.Generator,
    *,
    font_size: Sequence[float] = (0.7, 0.95),
    min_char_width: int = 16,
    aliased: bool = False,
    chars: int | None = None,
    used: dict[str, float] | None = None,
) -> np.ndarray:
    """A text line of height ``height``; the width follows the text (`draw_line`'s image)."""
    return draw_line(
        text,
        font,
        height,
        rng,
        font_size=font_size,
        min_char_width=min_char_width,
        aliased=aliased,
        chars=chars,
        used=used,
    ).image


def draw_line(
    text: str,
    font: FontRef,
    height: int,
    rng: np.random.Generator,
    *,
    font_size: Sequence[float] = (0.7, 0.95),
    min_char_width: int = 16,
    aliased: bool = False,
    chars: int | None = None,
    used: dict[str, float] | None = None,
) -> Line:
    """A text line of height ``height`` and where its characters are drawn.

    Font size is a random fraction ``font_size`` of the height (reduced if the ink would not fit);
    margins are random; the width is at least ``min_char_width * chars`` (the text then sits at a
    random position), which keeps a CTC model's output length above ``2 * chars + 1``.
    ``chars`` is the length of the text's label, ``len(text)`` when not given: a line drawn with
    a ``…`` is labelled ``...`` (NFKC), three characters that each need their frames.

    Args:
        used: a dict given ``font_size``, the font size in px the text was drawn at (after
            any reduction; a sample's ``font_size``, `synth.shards`). Nothing is drawn for it.

    Returns:
        `Line`: the image ``(height, W)`` and one centre per label character (``chars`` of them;
        when ``chars`` is not the length of the text's NFKC forms, spread evenly over the text).
    """
    fs = max(4, round(height * float(rng.uniform(font_size[0], font_size[1]))))
    f = load_font(font.path, font.index, fs)
    left, top, right, bottom = _bbox(f, text, aliased)
    if bottom - top > height - 2:
        fs = max(4, int(fs * (height - 2) / (bottom - top)))
        f = load_font(font.path, font.index, fs)
        left, top, right, bottom = _bbox(f, text, aliased)
    w, h = max(right - left, 1), max(bottom - top, 1)
    n_label = len(text) if chars is None else chars
    ml, mr = (int(v) for v in rng.integers(1, max(2, fs // 3), size=2))
    width = max(w + ml + mr, min_char_width * n_label)
    x = int(rng.integers(ml, width - w - mr + 1))
    slack = max(0, height - h)
    y = int(rng.integers(0, slack + 1)) if slack else 0
    y = y if slack <= 2 else min(max(y, 1), slack - 1)
    mask = Image.new("L", (width, height), 0)
    _draw(mask, aliased).text((x - left, y - top), text, font=f, fill=255)
    if used is not None:
        used["font_size"] = fs
    return Line(_ink(rng, mask), _centers(text, f, x - left, n_label))


def _centers(
    text: str, font: ImageFont.FreeTypeFont, pen: float, n_label: int
) -> tuple[float, ...]:
    """The x of each label character's centre for ``text`` drawn with ``font`` from pen position
    ``pen``: the middle of each character's advance (the prefix lengths, so kerning counts), a
    character whose NFKC form is ``k`` characters long split into ``k`` equal parts. A label of
    another length (not the NFKC forms of the characters one by one) gets its centres spread
    evenly over the whole advance."""
    ends = [font.getlength(text[: j + 1]) for j in range(len(text))]
    forms = [len(nfkc(c)) for c in text]
    if sum(forms) != n_label:
        step = (ends[-1] if ends else 0.0) / max(n_label, 1)
        return tuple(round(pen + (k + 0.5) * step, 1) for k in range(n_label))
    out = []
    start = 0.0
    for end, k in zip(ends, forms, strict=True):
        out += [round(pen + start + (i + 0.5) * (end - start) / k, 1) for i in range(k)]
        start = end
    return tuple(out)


def render_expr(
    text: str,
    font: FontRef,
    size: Sequence[int],
    rng: np.random.Generator,
    *,
    font_size: Sequence[float] = (26, 40),
    spacing: Sequence[float] = (-1, 4),
    aliased: bool = False,
    oldstyle: bool = False,
    used: dict[str, float] | None = None,
) -> np.ndarray:
    """An expression on one line, fitted in ``size = (height, width)``, with varied spacing;
    ``oldstyle`` draws its digits in the face's old-style figures (``onum``).

    Each character is placed on a common baseline with its own random extra spacing; the font is
    scaled down until the line fits with a 2-px margin, by its ink as well as its advances (an
    italic glyph reaching past its advance keeps the margin too).

    Args:
        used: a dict given ``font_size``, the font size in px the text was drawn at (after
            any reduction; a sample's ``font_size``, `synth.shards`). Nothing is drawn for it.

    Returns:
        ``uint8`` array ``(height, width)``.
    """
    height, width = int(size[0]), int(size[1])
    fs = int(rng.integers(int(font_size[0]), int(font_size[1]) + 1))
    gaps = rng.uniform(spacing[0], spacing[1], size=max(len(text) - 1, 0))
    for _ in range(8):
        drawn_fs = fs  # the size of the font loaded, which draws the text and is measured below
        f = load_font(font.path, font.index, fs, oldstyle)
        adv = [_advance(font.path, font.index, fs, c, oldstyle) for c in text]
        k = fs / 32.0  # spacing is given for a 32-px font
        total = sum(adv) + float(np.sum(gaps)) * k
        # The ink can reach past the advances: an italic glyph's overhang beyond its advance, a
        # negative left bearing. The line is fitted by ``before`` (ink left of the pen's start)
        # and ``after`` (the right end of the advances or of the ink, the further).
        before, after = _overhangs(font, fs, text, adv, gaps * k, oldstyle)
        after = max(after, total)
        _, top, _, bottom = f.getbbox(text, anchor="ls", features=_features(oldstyle))
        ink_h = bottom - top
        if (before + after <= width - 4 and ink_h <= height - 4) or fs <= 6:
            break
        fs = max(
            6, int(fs * min((width - 4) / max(before + after, 1), (height - 4) / max(ink_h, 1)))
        )
    if before + after > width or ink_h > height:
        # at the smallest size: a face whose advances or glyphs are far out of scale (a damaged
        # or odd font) would draw specks of the text's ends under its whole label
        raise DoesNotFit(
            f"{text!r} is {before + after:.0f} x {ink_h} px at {drawn_fs} px, the smallest size, "
            f"in an image of {width} x {height}"
        )
    x0 = before + float(rng.uniform(2, max(2.0, width - 2 - before - after)))
    yc = float(rng.uniform(2 + ink_h / 2, max(2 + ink_h / 2, height - 2 - ink_h / 2)))
    baseline = yc - (top + bottom) / 2
    mask = Image.new("L", (width, height), 0)
    draw = _draw(mask, aliased)
    x = x0
    for i, c in enumerate(text):
        draw.text((x, baseline), c, font=f, fill=255, anchor="ls", features=_features(oldstyle))
        x += adv[i] + (gaps[i] * k if i < len(gaps) else 0.0)
    if used is not None:
        used["font_size"] = drawn_fs
    return _ink(rng, mask)


def _overhangs(
    font: FontRef,
    fs: int,
    text: str,
    adv: Sequence[float],
    gaps: np.ndarray,
    oldstyle: bool = False,
) -> tuple[float, float]:
    """How far the ink of ``text`` drawn glyph by glyph from pen position 0 (each glyph after the
    last one's advance and gap, as `render_expr` draws it) reaches left of 0 (0 when it does
    not) and right of 0 (its ink's right end)."""
    x, before, after = 0.0, 0.0, 0.0
    for i, c in enumerate(text):
        left, right = _ink_x(font.path, font.index, fs, c, oldstyle)
        if right > left:  # a glyph with ink
            before, after = max(before, -(x + left)), max(after, x + right)
        x += adv[i] + (float(gaps[i]) if i < len(gaps) else 0.0)
    return before, after


def render_short(
    text: str,
    font: FontRef,
    size: int,
    rng: np.random.Generator,
    *,
    font_size: Sequence[float] = (10, 14),
    aliased: bool = False,
    used: dict[str, float] | None = None,
) -> np.ndarray:
    """Up to a few characters at a random position in a ``size`` x ``size`` image (deep_reader).

    Args:
        used: a dict given ``font_size``, the font size in px the text was drawn at (after
            any reduction; a sample's ``font_size``, `synth.shards`). Nothing is drawn for it.

    Returns:
        ``uint8`` array ``(size, size)``.
    """
    fs = int(rng.integers(int(font_size[0]), int(font_size[1]) + 1))
    f = load_font(font.path, font.index, fs)
    left, top, right, bottom = _bbox(f, text, aliased)
    while (right - left > size - 2 or bottom - top > size - 2) and fs > 4:
        fs -= 1
        f = load_font(font.path, font.index, fs)
        left, top, right, bottom = _bbox(f, text, aliased)
    w, h = right - left, bottom - top
    if w > size or h > size:
        raise DoesNotFit(
            f"{text!r} is {w} x {h} px at {fs} px, the smallest size, in an image of {size} px"
        )
    x = int(rng.integers(1, max(2, size - w)))
    y = int(rng.integers(1, max(2, size - h)))
    mask = Image.new("L", (size, size), 0)
    _draw(mask, aliased).text((x - left, y - top), text, font=f, fill=255)
    if used is not None:
        used["font_size"] = fs
    return _ink(rng, mask)
