"""Users' images -> 8-bit grayscale, dark text on a light background.

The recognizers are trained on synthetic renders: mode ``L``, dark ink on a light page. Real
images come in every shape, so `load_gray` brings any of them to that form before
`models.preprocess` resizes and pads them to the model's geometry:

- Files of any format Pillow reads; the EXIF orientation is applied (`PIL.ImageOps.exif_transpose`),
  so phone photos are upright. Multi-frame files (GIF, TIFF) give their first frame.
- Every mode: ``1``, ``L``, ``P`` and ``PA`` (through RGBA, so a transparent palette entry is
  white), ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, modes with alpha (``LA``, ``RGBA``,
  ``PA``..., composited on white: transparent means page, not ink; but when the opaque pixels
  are light on average, i.e. white text on a transparent background, on black, so the text
  stays visible and the polarity step makes it dark-on-light), 16-bit ``I;16*`` and 32-bit
  ``I`` (scaled from the bit depth their largest value fits, 8, 12 or 16: a 12-bit scan stored
  in 16 bits keeps its contrast),
  float ``F`` (as 0..1 when no value passes 1.5, else as 0..255; clipped to its range: a 0..1
  image resampled overshoots a little, and a 0..255 one whose brightest pixel is 1.5 is black).
- numpy arrays ``H, W`` or ``H, W, C`` (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) of ``bool``,
  ``uint8``, ``uint16`` or other integers (scaled as the ``I`` mode above; but an array of 0s
  and 1s alone, a mask, as 0 and 255), or floats (as the ``F`` mode above). Floats that are NaN
  or infinite are refused (so is an ``F`` image holding them).
- Polarity (`POLARITIES`): ``auto`` estimates the background as the median of a thin border ring
  and calls the image light-on-dark when that background is darker than the image's mean
  brightness (ink is the minority of pixels, so the mean leans towards the background; an
  image whose border is mostly ink, e.g. a crop that cuts through the text, can fool it: say
  the polarity then). ``dark-on-light`` never inverts, ``light-on-dark`` always does.
- Named pipes (a FIFO, or ``<(...)`` in bash): read to their end, when a process writes to one
  within `PIPE_WAIT_S` seconds; one nothing writes to is an error, not a wait without end.
- Decompression bombs: a file of more than ``max_pixels`` pixels (`DEFAULT_MAX_PIXELS`) is
  refused from its header, before it is decoded; so is an image whose one side is more than
  ``max_aspect`` (`MAX_ASPECT`) times the other (scaled to a model's height, a thin strip
  becomes enormous).

Every failure is an `ImageLoadError` naming the image (its path, or what the caller calls it).
What a TIFF's decoder, libtiff, prints to stderr about a file, naming none, comes back naming it:
a warning for damaged pixels it reads all the same, the error's reason for a file it cannot read
(`_decoder_messages`).
`decode_png` decodes the images the workflow itself wrote (a shard's ``.png`` member) for
training and evaluation, which name the shard and the sample when it fails.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import select
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

ImageSource: TypeAlias = str | os.PathLike | Image.Image | np.ndarray

DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: a 7000 x 7000 page scan fits, a decompression bomb not
# A side longer than this many times the other is refused: a 60000 x 1 strip scaled to a line
# model's 32 px would be 1.9 million px wide (tens of GB of activations). 200:1 is a line of
# about 200 hanzi, or 400 Latin letters; a longer line needs a higher ``max_aspect``.
MAX_ASPECT = 200
# How much longer than high each character of a label may make its image (a hanzi is about 1:1,
# spacing and margins add), beyond MAX_ASPECT: `label_proportion_problem`.
ASPECT_PER_CHARACTER = 20
FLOAT_UNIT_MAX = 1.5  # floats up to this are 0..1 (a resampled 0..1 image overshoots 1 a little)
PIPE_WAIT_S = 10.0  # how long a named pipe may stay without a writer
PIPE_MAX_BYTES = 1 << 30  # what is read of one, at most: 1 GiB
POLARITIES = ("auto", "dark-on-light", "light-on-dark")
# Formats Pillow registers but cannot decode on its own here: stubs that need a handler
# installed (BUFR, GRIB, HDF5), PostScript (Ghostscript), WMF/EMF (Windows only), MPEG (it only
# identifies the stream) and IPTC.
_UNDECODABLE_FORMATS = {"BUFR", "EPS", "GRIB", "HDF5", "IPTC", "MPEG", "WMF"}


def _readable_extensions() -> tuple[str, ...]:
    Image.init()
    return tuple(
        sorted(
            ext
            for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _UNDECODABLE_FORMATS
        )
    )


# The extensions a folder is searched for: every one Pillow opens (.png, .jpg, .jfif, .tif,
# .webp, .jp2, .ico, .pgm, ...); a file named outright is read whatever its name.
IMAGE_EXTENSIONS = _readable_extensions()

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_BORDER_FRACTION = 0.06  # of the shorter side: the ring whose median estimates the background


class ImageLoadError(ValueError):
    """An image that cannot be read or is refused.

    Attributes:
        name: The image's path, or the caller's name for it.
        reason: What went wrong.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file, upright (EXIF orientation applied), in its own mode.

    Args:
        path: The file.
        max_pixels: Refuse images of more pixels than this (checked from the header, before
            decoding); None for no limit of our own (Pillow's ``Image.MAX_IMAGE_PIXELS`` still
            applies).

    Raises:
        ImageLoadError: Missing, empty, truncated, not an image, or too large; names the file.
    """
    name = str(path)
    said: list[str] = []  # a TIFF decoder's own messages (`_decoder_messages`)
    if "\x00" in name:  # os and Pillow say "embedded null byte", which read as corrupt data
        raise ImageLoadError(name, "a file name cannot hold a NUL byte (a listing's stray byte?)")
    try:
        with contextlib.ExitStack() as stack:
            if _is_pipe(path):
                source: io.BytesIO | io.BufferedReader = _read_pipe(path, name)
            else:
                # Opened here, not by Pillow: given a path, Pillow memory-maps an uncompressed
                # file of one strip, and for a TIFF of EXIF orientation 5 to 8 (turned a
                # quarter) it maps the pixels at the turned size, scrambling them (Pillow 13).
                source = stack.enter_context(open(path, "rb"))
            stack.enter_context(_warnings_naming(name))
            im = stack.enter_context(Image.open(source))
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    name,
                    f"{width} x {height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} (a decompression bomb?); raise max_pixels "
                    "(--max-pixels) if the image is genuine",
                )
            with _decoder_messages(im, said):
                im.load()
            for message in said:  # read all the same; named, once each, by _warnings_naming
                warnings.warn(f"its decoder says: {message}", stacklevel=2)
            return upright(im, name)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(name, f"refused as a decompression bomb: {e}") from None
    except FileNotFoundError:
        broken = Path(path).is_symlink()
        raise ImageLoadError(name, "broken symbolic link" if broken else "no such file") from None
    except IsADirectoryError:
        unreadable = not os.access(path, os.R_OK | os.X_OK)
        why = "a folder that cannot be read (permission denied)" if unreadable else "is a directory"
        raise ImageLoadError(name, why) from None
    except PermissionError:
        raise ImageLoadError(name, "permission denied") from None
    except UnidentifiedImageError:
        size = _file_size(path)
        if not Path(path).is_file():
            what = "not a regular file (a device or a pipe?) and not an image Pillow can read"
        elif size == 0:
            what = "empty file"
        else:
            what = f"not an image Pillow can read ({size} bytes)"
        raise ImageLoadError(name, what) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, OSError) and e.errno == errno.ELOOP:
            raise ImageLoadError(name, "a symbolic link that loops back on itself") from None
        if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
            raise ImageLoadError(name, "file name too long for the file system") from None
        # Truncated or corrupt data (Pillow raises OSError, and SyntaxError from some plugins).
        detail = f" ({'; '.join(said)})" if said else ""  # decoder error -2 (ZIPDecode: ...)
        raise ImageLoadError(name, f"corrupt image: {e}{detail}") from None
    except MemoryError:
        raise
    except Exception as e:  # a decoder's own: RuntimeError (AVIF), struct.error, TypeError
        raise ImageLoadError(name, f"corrupt image: {type(e).__name__}: {e}") from None


@contextlib.contextmanager
def _decoder_messages(im: Image.Image, said: list[str]) -> Iterator[None]:
    """What a TIFF's decoder, libtiff, prints to the process's stderr while ``im`` is decoded
    (``Fax4Decode: Bad code word at line 26 of strip 0 (x 0).`` for damaged pixels, which are
    read all the same; the detail behind a ``decoder error -2`` Pillow raises), taken off
    stderr and added to ``said`` on exit, each line once, so that the caller can say which
    image it is about: libtiff's own lines do not say, and in a folder's run they land anywhere
    among the readings. Only for a TIFF (the one format whose decoder prints), and only while no
    other Python thread runs, since file descriptor 2 is the whole process's: what another
    thread wrote meanwhile would be taken for the decoder's. Else, or when stderr cannot be
    taken (no file descriptor 2, no temporary file), the decoder prints as before. Python's
    warnings meanwhile (Pillow's) are held and given after, as they would have been shown: shown
    then, they would go to the file descriptor too."""
    held: list[warnings.WarningMessage] = []
    try:
        with contextlib.ExitStack() as stack:
            saved = None
            if im.format == "TIFF" and threading.active_count() == 1:
                try:
                    sys.stderr.flush()
                    capture = stack.enter_context(tempfile.TemporaryFile())
                    saved = os.dup(2)
                except (OSError, ValueError, AttributeError):  # no stderr, no temporary file
                    saved = None
            if saved is None:
                yield
                return
            held = stack.enter_context(warnings.catch_warnings(record=True))
            try:
                os.dup2(capture.fileno(), 2)
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                for line in capture.read().decode("utf-8", "replace").splitlines():
                    # libtiff names the file as Pillow opened it: "tempfile.tif", not its name
                    line = line.strip().removeprefix(f"{_PILLOW_TIFF_NAME}: ")
                    if line and line not in said:
                        said.append(line)
    finally:  # whether it was read or not: the caller's filters and showwarning, on stderr
        for w in held:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


# The name Pillow gives libtiff for a TIFF it reads from a file object (in its C decoder).
_PILLOW_TIFF_NAME = "tempfile.tif"


@contextlib.contextmanager
def _warnings_naming(name: str) -> Iterator[None]:
    """Pillow's warnings while it decodes the file, shown naming it (``Corrupt EXIF data``, a
    truncated chunk: its own do not say which image of a folder they are about), each once,
    whether the file is then read or refused. The caller's filters decide on Pillow's own
    warning (its message, module and category), as without this; only what is shown gains the
    name. Pillow's decompression-bomb warning is left out: our limit (or Pillow's error) decides
    instead."""
    shown: set[tuple[str, type[Warning]]] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        show = warnings.showwarning  # the caller's (recognize prints ``warning: ...`` lines)

        def named(message, category, filename, lineno, file=None, line=None) -> None:
            text = f"{name}: {str(message).strip()}"
            if (text, category) not in shown:
                shown.add((text, category))
                show(category(text), category, filename, lineno, file, line)

        warnings.showwarning = named
        yield


def upright(im: Image.Image, name: str) -> Image.Image:
    """``im`` turned as its EXIF orientation says (`PIL.ImageOps.exif_transpose`). EXIF that
    cannot be read (a damaged header or entry, which Pillow raises on, while the pixels are
    whole) is passed over with a warning naming the image: it is read as stored."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # struct.error, TypeError, SyntaxError, ValueError, OSError...
        log.warning(
            "%s: its EXIF orientation cannot be read (%s: %s); read as stored",
            name,
            type(e).__name__,
            e,
        )
        return im.copy()


def _is_pipe(path: str | os.PathLike) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, unreadable, a NUL in the name: Image.open says so
        return False


def _read_pipe(path: str | os.PathLike, name: str) -> io.BytesIO:
    """A named pipe's bytes, read to its end. Opening one blocks until a process writes to it,
    for ever if none does: it is opened without blocking and given `PIPE_WAIT_S` seconds for
    its first bytes (a writer that has yet to open it is waited for too).

    Raises:
        ImageLoadError: Nothing was written within that time, or more than `PIPE_MAX_BYTES`.
    """
    wait_s = PIPE_WAIT_S
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(wait_s * 1000)):
            raise ImageLoadError(name, f"a named pipe that no process wrote to within {wait_s:g} s")
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > PIPE_MAX_BYTES:
                raise ImageLoadError(
                    name, f"a named pipe giving more than {PIPE_MAX_BYTES:,} bytes: refused"
                )
            chunks.append(chunk)
        return io.BytesIO(b"".join(chunks))
    finally:
        os.close(fd)


# How a line model's training images frame their text: the margins above, below and left and
# right of the ink, as shares of the ink's height (the medians of the smoke config's training
# shards: a hanzi line's ink fills its em, an expression's digits less of theirs). `trim_to_ink`
# frames an image so.
TRIM_MARGINS = {"line": (0.16, 0.12, 0.2), "expr": (0.26, 0.41, 0.38)}
# A single hanzi's ink: centred in its square, its longer side 79% of the square's (the median).
TRIM_SQUARE_FILL = {"hanzi": 0.79}
TRIM_TASKS = (*TRIM_MARGINS, *TRIM_SQUARE_FILL)  # the reader's text is anywhere: not trimmed
# Ink filling this share of an image's height (a hanzi's of its longer side) is framed as the
# training images frame theirs (their ink fills 0.44 to 0.88 of it): left as it is.
TRIM_ROOM = 0.4
TRIM_MEDIAN_TASKS = ("expr",)  # noise textures its background; a line's thin strokes it erases
MIN_INK_CONTRAST = 32  # grey levels between paper and the darkest pixel, under which: no ink


def trim_refusal(task: str | None, model: str) -> str | None:
    """Why a ``task``'s ``model`` (how the message names it) takes no trimming, or None: the
    reader's text is anywhere in its image, as its training drew it (`TRIM_TASKS`)."""
    if task is None or task in TRIM_TASKS:
        return None
    return (
        f"trim frames a line of text or a hanzi, and {model} reads its text anywhere in its "
        "image, as its training drew it: leave it out"
    )


def trim_to_ink(gray: Image.Image, task: str = "line") -> Image.Image:
    """``gray`` (mode ``L``, dark on light) cut to its ink's bounding box and the margins the
    ``task``'s training images have around it (`TRIM_MARGINS`; ``line`` for a task not there),
    taken from the image itself (paper beyond its edges), when it has room around its text: a
    line with room above and below it, scaled to the model's height, had its text shrunk to a
    few pixels and misread. A ``hanzi`` is centred in a square its ink fills as the training
    characters fill theirs (`TRIM_SQUARE_FILL`): one off centre in a larger image was often
    misread.

    Paper is the image's 90th percentile, ink a pixel darker than halfway from it to the darkest
    pixel (for ``expr``, found on a 3x3 median of the image: an expression's noisy background
    is no ink); a row counts when it holds at least 2 ink pixels, so a lone dot of dust does
    not widen the box (a larger speck does). An image is returned as it is when its ink fills
    `TRIM_ROOM` of its height (of its longer side, for a hanzi) or more, framed as the training
    images are (trimming those lost 2 points of line accuracy and 10 of expr accuracy, session
    59's measurement), or when it has no ink (under `MIN_INK_CONTRAST` grey levels between
    paper and darkest pixel).
    """
    if gray.width == 0 or gray.height == 0:
        return gray
    seen = gray.filter(ImageFilter.MedianFilter(3)) if task in TRIM_MEDIAN_TASKS else gray
    a = np.asarray(seen)
    paper, dark = float(np.percentile(a, 90)), float(a.min())
    if paper - dark < MIN_INK_CONTRAST:
        return gray
    ink = a < (paper + dark) / 2
    rows = np.flatnonzero(ink.sum(axis=1) >= 2)  # not of the width: any framing trims alike
    if rows.size == 0:
        return gray
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(ink[top:bottom].any(axis=0))
    left, right = int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    if task in TRIM_SQUARE_FILL:
        if max(height, width) >= TRIM_ROOM * max(gray.size):
            return gray
        size = max(1, round(max(height, width) / TRIM_SQUARE_FILL[task]))
        x, y = left - (size - width) // 2, top - (size - height) // 2
        box = (x, y, x + size, y + size)
    else:
        if height >= TRIM_ROOM * gray.height:
            return gray
        above, below, side = (
            round(m * height) for m in TRIM_MARGINS.get(task, TRIM_MARGINS["line"])
        )
        box = (left - side, top - above, right + side, bottom + below)
    out = Image.new("L", (box[2] - box[0], box[3] - box[1]), round(paper))
    out.paste(gray, (-box[0], -box[1]))  # the image's own background, paper beyond its edges
    return out


def label_proportion_problem(size: tuple[int, int], label: str) -> str | None:
    """Why an image of ``size`` (width, height) is too long to be drawn of ``label``, or None.

    Its long side may be up to `MAX_ASPECT` plus `ASPECT_PER_CHARACTER` per character times its
    short side: a labelled line of any length (`models.pack` takes those over ``--max-aspect``)
    is within this, and a damaged or foreign image is not. Scaled to a model's 32 px, a 100000 x
    1 px strip is 3.2 million px wide: it filled memory, with no sample named."""
    width, height = size
    limit = MAX_ASPECT + ASPECT_PER_CHARACTER * len(label)
    if max(width, height) <= limit * max(1, min(width, height)):
        return None
    return (
        f"its image is {width}x{height} px, longer than a label of {len(label)} characters is "
        f"drawn: more than {limit}:1 ({MAX_ASPECT}:1 and {ASPECT_PER_CHARACTER}:1 per "
        "character)"
    )


def decode_png(data: bytes, where: str) -> Image.Image:
    """Decode an image held in memory (a shard's ``.png`` member), fully loaded, in its own mode.

    Args:
        data: The encoded image.
        where: What the caller calls it (``shard S: sample 'K'``), for the error.

    Raises:
        ImageLoadError: The bytes are not an image Pillow decodes (empty, truncated, corrupt),
            or one Pillow refuses as a decompression bomb (a few kB whose header claims
            20000 x 20000 px); its message is ``{where}: cannot decode .png: {reason}`` (Pillow's,
            or ``not an image Pillow can read (N bytes)`` where Pillow's names its buffer).
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now (Image.open reads only the header), inside this try
        return img
    except UnidentifiedImageError:
        # Pillow's message names its buffer ("cannot identify image file <_io.BytesIO object
        # at 0x7f...>"), which tells the reader nothing ``where`` does not, better
        what = "empty member" if not data else f"not an image Pillow can read ({len(data)} bytes)"
        raise ImageLoadError(where, f"cannot decode .png: {what}") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as e:
        # SyntaxError: some Pillow plugins raise it on a malformed header. DecompressionBombError
        # (from the header, before any pixel is decoded) is none of the others.
        raise ImageLoadError(where, f"cannot decode .png: {e}") from e


def _file_size(path: str | os.PathLike) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def _integer_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer samples -> uint8, scaled from the bit depth their largest value fits, 8, 12 or 16:
    as they are when every value fits in 0..255; a 12-bit scan in a 16-bit file (0..4095) by
    255/4095, so it keeps its contrast instead of reading nearly black; 16-bit data by 1/257
    (an 8-bit image stored as 16 bits, x257, comes back exactly). Only those three depths, so a
    bright pixel shifts no page's grey unless it crosses 4095. Negative values are 0, values
    past 65535 65535."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    top = int(v.max()) if v.size else 0
    if top <= 255:
        return v.astype(np.uint8)
    full = 4095 if top <= 4095 else 65535
    return ((v * 255 + full // 2) // full).astype(np.uint8)


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Samples of any numeric dtype -> uint8 (see the module docstring for the rules)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer) and arr.size and int(arr.max()) == 1:
        # 0s and 1s alone: a mask (read as 0..255 it would be black, and read as nothing)
        return (np.clip(arr, 0, 1) * 255).astype(np.uint8)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        return _integer_to_uint8(arr)
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float64)
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            # a NaN is no grey level: read as black or white, it would give a confident reading
            raise ValueError(f"{bad:,} of its {a.size:,} samples are NaN or infinite")
        if a.size and a.max() <= FLOAT_UNIT_MAX:
            a = a * 255.0  # 0..1, with a resampling's overshoot (clipped below)
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported array dtype {arr.dtype}")


def array_to_image(arr: np.ndarray) -> Image.Image:
    """A numpy image (``H, W`` or ``H, W, C``, C in 1..4) -> a PIL image (``L``, ``LA``,
    ``RGB`` or ``RGBA``), samples scaled to 8 bits.

    Raises:
        ValueError: Another shape, an empty image or a non-numeric dtype.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        mode = "L"
    elif arr.ndim == 3 and arr.shape[2] in (2, 3, 4):
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    else:
        raise ValueError(f"expected an array H,W or H,W,C with C in 1..4, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image (shape {arr.shape})")
    return Image.fromarray(np.ascontiguousarray(_array_to_uint8(arr)), mode=mode)


def _composite(rgba: Image.Image) -> Image.Image:
    """An RGBA image flattened to ``L`` on white, or on black when its opaque pixels are light
    (white text on a transparent background would vanish on white)."""
    luma, alpha = (np.asarray(band, dtype=np.float64) for band in rgba.convert("LA").split())
    weight = alpha.sum()
    light = weight > 0 and float((luma * alpha).sum() / weight) > 127.5
    page = (0, 0, 0, 255) if light else (255, 255, 255, 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, page), rgba).convert("L")


def to_gray(img: Image.Image) -> Image.Image:
    """Any PIL image -> mode ``L`` of the same size (see the module docstring for each mode).

    Raises:
        ValueError: A mode Pillow cannot convert, or an empty image.
    """
    if img.width == 0 or img.height == 0:
        raise ValueError(f"empty image ({img.width} x {img.height})")
    mode = img.mode
    if mode == "L":
        return img
    if mode.startswith("I;16") or mode == "I":
        return Image.fromarray(_integer_to_uint8(np.asarray(img)), mode="L")
    if mode == "F":
        return Image.fromarray(_array_to_uint8(np.asarray(img)), mode="L")
    if mode == "La":  # premultiplied: Pillow converts it to LA alone
        img = img.convert("LA")
    if mode == "P" or mode in _ALPHA_MODES:
        return _composite(img.convert("RGBA"))
    if mode in ("1", "RGB"):
        return img.convert("L")
    return img.convert("RGB").convert("L")


def is_light_on_dark(gray: np.ndarray) -> bool:
    """Whether a grayscale image shows light text on a dark background.

    The background is estimated as the median of a border ring (6% of the shorter side, at
    least 1 px); the image is light-on-dark when that is darker than the mean brightness.

    Args:
        gray: ``H, W`` uint8 samples.
    """
    g = np.asarray(gray, dtype=np.float64)
    h, w = g.shape
    b = max(1, round(_BORDER_FRACTION * min(h, w)))
    if 2 * b >= min(h, w):
        border = g.ravel()
    else:
        border = np.concatenate(
            [g[:b].ravel(), g[-b:].ravel(), g[b:-b, :b].ravel(), g[b:-b, -b:].ravel()]
        )
    return float(np.median(border)) < float(g.mean())


def normalize_polarity(gray: Image.Image, polarity: str = "auto") -> tuple[Image.Image, bool]:
    """Make a mode ``L`` image dark-on-light.

    Args:
        gray: Mode ``L`` image.
        polarity: One of `POLARITIES`: ``auto`` (`is_light_on_dark`), ``dark-on-light`` (keep),
            ``light-on-dark`` (invert).

    Returns:
        The dark-on-light image and whether it was inverted.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"unknown polarity {polarity!r}; valid: {', '.join(POLARITIES)}")
    invert = polarity == "light-on-dark" or (
        polarity == "auto" and is_light_on_dark(np.asarray(gray))
    )
    return (ImageOps.invert(gray), True) if invert else (gray, False)


ASPECT_ADVICE = (
    "crop it to a line of text or a character (or, for a genuinely longer line, raise "
    "max_aspect: --max-aspect)"
)


def check_aspect(
    width: int, height: int, max_aspect: int | None = MAX_ASPECT, advice: str = ASPECT_ADVICE
) -> str | None:
    """Why an image of this size is refused (one side over ``max_aspect`` times the other; None:
    no limit), with ``advice``, or None."""
    if not max_aspect:  # None or 0: no limit (as --max-aspect 0)
        return None
    if min(width, height) > 0 and max(width, height) > max_aspect * min(width, height):
        return f"{width}x{height} px: one side is over {max_aspect} times the other; {advice}"
    return None


def load_gray(
    source: ImageSource,
    *,
    polarity: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect: int | None = MAX_ASPECT,
    name: str | None = None,
) -> Image.Image:
    """Any image -> mode ``L``, dark text on a light background, its own size.

    Args:
        source: A path, a PIL image (its EXIF orientation is applied) or a numpy array.
        polarity: One of `POLARITIES` (see `normalize_polarity`).
        max_pixels: Files of more pixels are refused (see `open_image`).
        max_aspect: Images whose one side is more than this many times the other are refused
            (`check_aspect`; None or 0: no limit).
        name: How errors name the image (default: its path, or ``<array>``/``<PIL image>``).

    Raises:
        ImageLoadError: The image cannot be read or converted; names it.
    """
    if isinstance(source, str | os.PathLike):
        label = name or str(source)
        img = open_image(source, max_pixels=max_pixels)
    elif isinstance(source, Image.Image):
        label = name or "<PIL image>"
        try:
            source.load()  # a lazily opened image is decoded here, inside the try
        except MemoryError:
            raise
        except Exception as e:
            # Pillow raises a bare AssertionError for an image whose file was closed.
            why = str(e) or "closed, or not loaded before its file was closed?"
            raise ImageLoadError(label, f"cannot read the PIL image: {why}") from None
        img = upright(source, label)
    elif isinstance(source, np.ndarray):
        label = name or "<array>"
        try:
            img = array_to_image(source)
        except ValueError as e:
            raise ImageLoadError(label, str(e)) from None
    else:
        raise ImageLoadError(
            name or repr(type(source).__name__),
            f"expected a path, a PIL image or a numpy array, got {type(source).__name__}",
        )
    aspect_problem = check_aspect(*img.size, max_aspect)
    if aspect_problem:
        raise ImageLoadError(label, aspect_problem)
    try:
        gray = to_gray(img)
    except (ValueError, OSError) as e:
        raise ImageLoadError(label, f"cannot convert mode {img.mode} to grayscale: {e}") from None
    return normalize_polarity(gray, polarity)[0]


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a list of image paths.

    Files are kept as given, whatever their extension, and so are paths that do not exist (so
    that loading reports them and the others go on); folders are walked recursively, in sorted
    order, for files with an image extension (`IMAGE_EXTENSIONS`, case-insensitive), following
    symbolic links to folders (each folder once, so a link loop ends) and keeping a broken link
    with an image extension (it gets its error line like any unreadable file). Hidden entries
    of a walked folder (names starting with ``.``: macOS's ``._scan.jpg`` resource forks, a
    ``.git`` or ``.ipynb_checkpoints`` folder) are skipped, as ``ls`` and shell globs skip them.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        try:
            is_dir = p.is_dir()
        except OSError:  # a name too long for the file system: loading names the error
            is_dir = False
        if is_dir:
            out.extend(_walk_images(p, set()))
        else:
            out.append(p)
    return out


def _walk_images(folder: Path, seen: set[str]) -> list[Path]:
    """The image files under ``folder``, in sorted order, each folder's entries once."""
    real = os.path.realpath(folder)
    if real in seen:
        return []
    seen.add(real)
    found: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return [folder]  # unreadable: reported when loading it fails ("is a directory" or why)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            wanted = entry.suffix.lower() in IMAGE_EXTENSIONS and (
                entry.is_file() or entry.is_symlink()
            )
        except OSError:  # a folder that can be listed but not entered: loading names the error
            wanted, is_dir = entry.suffix.lower() in IMAGE_EXTENSIONS, False
        if is_dir:
            found.extend(_walk_images(entry, seen))
        elif wanted:
            found.append(entry)
    return found
