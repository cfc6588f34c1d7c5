"""Loading users' images: every mode to 8-bit L, EXIF orientation, polarity, errors naming the file,
decompression bombs refused."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models import images
from models.images import (
    ImageLoadError,
    decode_png,
    find_images,
    is_light_on_dark,
    label_proportion_problem,
    load_gray,
    normalize_polarity,
    trim_to_ink,
)

SIZE = (48, 20)  # width, height
INK = (8, 5, 20, 10)  # a black bar on white: left, top, right, bottom


def _page() -> Image.Image:
    """A white 48 x 20 page with a black bar (the "ink")."""
    im = Image.new("L", SIZE, 255)
    ImageDraw.Draw(im).rectangle(INK, fill=0)
    return im


def _check_page(gray: Image.Image) -> None:
    """Mode L, the page's size, dark ink on a light page."""
    assert gray.mode == "L"
    assert gray.size == SIZE
    arr = np.asarray(gray)
    assert arr[0, 0] >= 240, "background should be light"
    assert arr[7, 10] <= 15, "ink should be dark"


def _transparent_ink(mode: str) -> Image.Image:
    """Black opaque ink on a fully transparent page (mode LA or RGBA): the page must come out
    white, not black."""
    alpha = Image.new("L", SIZE, 0)
    ImageDraw.Draw(alpha).rectangle(INK, fill=255)
    base = Image.new("L", SIZE, 0).convert(mode[:-1])
    base.putalpha(alpha)
    return base


def _palette_with_transparent_page() -> Image.Image:
    im = Image.new("P", SIZE, 0)
    im.putpalette([0, 0, 0, 0, 0, 0] + [0] * (256 * 3 - 6))  # both entries black
    ImageDraw.Draw(im).rectangle(INK, fill=1)
    im.info["transparency"] = 0  # entry 0, the page, is transparent
    return im


def _sixteen_bit(mode: str) -> Image.Image:
    arr = np.where(np.asarray(_page()) > 0, 65535, 0).astype(np.uint16)
    im = Image.fromarray(arr)  # I;16
    return im if mode == "I;16" else im.convert("I")


MODES = {
    "RGB": lambda: _page().convert("RGB"),
    "RGBA": lambda: _transparent_ink("RGBA"),
    "LA": lambda: _transparent_ink("LA"),
    "P": lambda: _page().convert("P"),
    "P-transparent": _palette_with_transparent_page,
    "I;16": lambda: _sixteen_bit("I;16"),
    "I": lambda: _sixteen_bit("I"),
    "CMYK": lambda: _page().convert("RGB").convert("CMYK"),
    "1": lambda: _page().convert("1"),
    "F": lambda: _page().convert("F"),
}
# A file format that stores each mode as such (PNG has no CMYK, I or F).
FORMATS = {"CMYK": "tiff", "I": "tiff", "F": "tiff"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_loads_to_l_from_memory_and_from_file(tmp_path, mode):
    im = MODES[mode]()
    _check_page(load_gray(im))
    path = tmp_path / f"page.{FORMATS.get(mode, 'png')}"
    im.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == im.mode or mode == "P-transparent"  # saved in its own mode
    _check_page(load_gray(path))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # uint8 H, W
        lambda a: a.astype(np.uint16) * 257,  # 16-bit
        lambda a: a.astype(np.float32) / 255.0,  # float in [0, 1]
        lambda a: a.astype(np.float64),  # float in [0, 255]
        lambda a: a > 127,  # bool
        lambda a: np.stack([a] * 3, axis=-1),  # H, W, 3
        lambda a: a[:, :, None],  # H, W, 1
        lambda a: np.dstack([a, a, a, np.full_like(a, 255)]),  # H, W, 4
        lambda a: np.dstack([np.zeros_like(a), 255 - a]),  # H, W, 2: ink only where opaque
    ],
    ids=["u8", "u16", "f01", "f255", "bool", "hw3", "hw1", "hw4", "hw2-alpha"],
)
def test_numpy_arrays(make):
    _check_page(load_gray(make(np.asarray(_page()))))


@pytest.mark.parametrize(
    "make",
    [
        # a 0..1 image resampled (bicubic) overshoots both ends a little: read as 0..255 it was
        # black, one pixel at 1.03 making the whole page levels 0 and 1
        lambda a: np.clip(a.astype(np.float32) / 255.0 * 1.06 - 0.03, -0.03, 1.03),
        lambda a: (a > 127).astype(np.uint8),  # a mask of 0s and 1s, as uint8
        lambda a: (a > 127).astype(np.int64),
    ],
    ids=["f01-overshoot", "mask-u8", "mask-i64"],
)
def test_arrays_of_0_to_1_read_as_pages_not_black(make):
    _check_page(load_gray(make(np.asarray(_page()))))


def test_premultiplied_alpha_loads_as_the_module_says():
    # No file format stores La; Pillow gives it in memory, and converts it to LA alone.
    _check_page(load_gray(_transparent_ink("LA").convert("La")))
    _check_page(load_gray(_transparent_ink("RGBA").convert("RGBa")))


def test_white_text_on_transparent_background_stays_visible():
    alpha = Image.new("L", SIZE, 0)
    ImageDraw.Draw(alpha).rectangle(INK, fill=255)
    white_ink = Image.new("RGB", SIZE, (255, 255, 255))
    white_ink.putalpha(alpha)  # white, opaque only where the ink is
    _check_page(load_gray(white_ink))
    _check_page(load_gray(white_ink.convert("LA")))


def test_bad_arrays_are_named():
    with pytest.raises(ImageLoadError, match=r"image 3: .*shape"):
        load_gray(np.zeros((2, 3, 4, 5), np.uint8), name="image 3")
    with pytest.raises(ImageLoadError, match="empty image"):
        load_gray(np.zeros((0, 5), np.uint8))


def test_exif_rotated_jpeg_is_transposed(tmp_path):
    im = _page().convert("RGB")  # 48 x 20, landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "photo.jpg"
    im.save(path, exif=exif, quality=95)
    gray = load_gray(path)
    assert gray.size == (SIZE[1], SIZE[0])
    # The bar (x 8..20, y 5..10 as stored) is near the top after a clockwise turn: display
    # pixel (x, y) shows stored pixel (y, H - 1 - x).
    arr = np.asarray(gray)
    assert arr[14, 12] < 60
    assert arr[40, 3] > 200


# The transposition that stores an upright image under each EXIF orientation (its inverse is
# what a viewer applies).
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw"])
@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_a_tiff_of_every_orientation_reads_upright_pixel_for_pixel(
    tmp_path, orientation, compression
):
    # An uncompressed TIFF turned a quarter (5 to 8) came out scrambled: Pillow, given the path,
    # memory-mapped its pixels at the turned size before turning them.
    path = tmp_path / "scan.tif"
    _page().transpose(STORED_AS[orientation]).save(
        path, tiffinfo={0x0112: orientation}, compression=compression
    )
    gray = load_gray(path)
    assert np.array_equal(np.asarray(gray), np.asarray(_page()))


def _damaged_exif(kind: str) -> bytes:
    """EXIF whose orientation entry reads but whose XResolution (a rational) is typed ASCII
    (``"type"``: Pillow raised TypeError), or whose header is cut (``"header"``)."""
    ifd = struct.pack(">H", 2) + struct.pack(">HHI", 0x0112, 3, 1) + struct.pack(">HH", 6, 0)
    ifd += struct.pack(">HHI", 0x011A, 2, 4) + b"abc\0" + struct.pack(">I", 0)
    exif = b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd
    return exif if kind == "type" else exif[:2] + b"\x00" + exif[3:]


@pytest.mark.parametrize(("kind", "fmt"), [("type", "jpeg"), ("header", "png")])
def test_damaged_exif_is_passed_over_with_a_warning_and_the_pixels_read(
    tmp_path, caplog, kind, fmt
):
    # Pillow decodes the pixels; exif_transpose raised TypeError (a traceback that lost every
    # other file's reading) or SyntaxError ("corrupt image: not a TIFF file", refused).
    path = tmp_path / f"photo.{fmt}"
    _page().convert("RGB").save(path, fmt.upper(), exif=_damaged_exif(kind))
    with caplog.at_level("WARNING", logger="models.images"):
        gray = load_gray(path)
    assert gray.size == SIZE  # as stored
    _check_page(gray)
    assert f"{path}: its EXIF orientation cannot be read (" in caplog.text


def cut_short_tiff(path):
    """A TIFF cut short at half its bytes, at ``path``: Pillow warns "Corrupt EXIF data" (twice),
    then cannot read it."""
    whole = io.BytesIO()
    Image.fromarray(np.arange(40 * 200, dtype=np.uint8).reshape(40, 200)).save(
        whole, "TIFF", compression="tiff_lzw"
    )
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return path


def test_pillows_own_warnings_name_the_file_each_once(tmp_path):
    # A TIFF cut short: Pillow warns "Corrupt EXIF data" (twice) without saying which file of a
    # folder, then cannot read it. Its warnings come back naming the file, once each.
    path = cut_short_tiff(tmp_path / "scan.tif")
    with pytest.warns(UserWarning) as caught, pytest.raises(ImageLoadError, match=str(path)):
        load_gray(path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"{path}: Corrupt EXIF data"), messages


def damaged_tiff(path, compression):
    """A TIFF whose compressed pixels have bytes overwritten, at ``path``: a ``group4`` one libtiff
    reads all the same, printing ``Fax4Decode: Bad code word ...`` on stderr; a
    ``tiff_adobe_deflate`` one it cannot read (``ZIPDecode: Decoding error ...``)."""
    page = np.full((40, 200), 255, np.uint8)
    page[10:30, 20:180:7] = 0
    whole = io.BytesIO()
    image = Image.fromarray(page)
    (image.convert("1") if compression == "group4" else image).save(
        whole, "TIFF", compression=compression
    )
    data = bytearray(whole.getvalue())
    data[16:24] = b"\xaa" * 8  # the pixels follow the 8-byte header
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def one_thread(monkeypatch):
    """As the recognition command runs: no other Python thread (pytest's may have some)."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def test_a_tiff_decoders_messages_come_back_naming_the_file(tmp_path, capfd, one_thread):
    # libtiff prints to the process's stderr, without the file's name, anywhere among a folder's
    # readings: its lines come back as a warning naming the file, or in the error's reason.
    read = damaged_tiff(tmp_path / "fax.tif", "group4")
    with pytest.warns(UserWarning) as caught:
        gray = load_gray(read)
    assert gray.size == (200, 40)
    messages = [str(w.message) for w in caught]
    said = f"{read}: its decoder says: Fax4Decode: Bad code word"
    assert messages and all(m.startswith(said) for m in messages), messages
    assert len(set(messages)) == len(messages)  # each once
    failed = damaged_tiff(tmp_path / "zip.tif", "tiff_adobe_deflate")
    with pytest.raises(ImageLoadError) as refused, warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning besides the error
        load_gray(failed)
    assert refused.value.name == str(failed)
    assert refused.value.reason.startswith("corrupt image: decoder error"), refused.value.reason
    assert "(ZIPDecode: Decoding error" in refused.value.reason, refused.value.reason
    assert "Decode" not in capfd.readouterr().err  # nothing of libtiff's own left on stderr
    # what the process wrote to stderr before and after a decode is left where it was
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_pillows_warnings_while_a_tiff_decodes_are_shown_as_before(tmp_path):
    # While the decoder's stderr is taken, a Python warning shown then would be taken with it
    # (and given as the decoder's words): it is held and shown after, named, whether the file
    # is read or not. In a process of its own, as the command runs: pytest's capture would keep
    # the warning's text off file descriptor 2.
    script = textwrap.dedent(
        """
        import sys, warnings
        from PIL import TiffImagePlugin
        from models.images import ImageLoadError, load_gray
        load = TiffImagePlugin.TiffImageFile.load
        def warning_load(self):
            warnings.warn("a warning of Pillow's while it decodes", UserWarning)
            return load(self)
        TiffImagePlugin.TiffImageFile.load = warning_load
        warnings.simplefilter("always")
        def shown(message, category, filename, lineno, file=None, line=None):
            sys.stderr.write(f"{category.__name__}: {message}\\n")  # as models.recognize
        warnings.showwarning = shown
        for path in sys.argv[1:]:
            try:
                load_gray(path)
                print("read", path)
            except ImageLoadError as e:
                print("error", e.reason)
        """
    )
    read = damaged_tiff(tmp_path / "fax.tif", "group4")
    failed = damaged_tiff(tmp_path / "zip.tif", "tiff_adobe_deflate")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(read), str(failed)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    for path in (read, failed):
        assert f"UserWarning: {path}: a warning of Pillow's while it decodes" in err, err
    assert any(
        line.startswith(f"UserWarning: {read}: its decoder says: Fax4Decode") for line in err
    )
    assert not [line for line in err if "says" in line and "a warning of" in line], err
    out = proc.stdout.splitlines()
    assert out[0] == f"read {read}" and out[1].startswith("error corrupt image: decoder error")
    assert "(ZIPDecode" in out[1] and "a warning of" not in out[1], out


def test_a_tiff_decoder_prints_as_before_while_another_thread_runs(tmp_path, capfd):
    # File descriptor 2 is the whole process's: while another thread might write to it, what is
    # written is not taken for the decoder's.
    read = damaged_tiff(tmp_path / "fax.tif", "group4")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_gray(read).size == (200, 40)
    finally:
        stop.set()
        other.join()
    assert "Fax4Decode: Bad code word" in capfd.readouterr().err


@pytest.mark.parametrize(
    "silenced",
    [{"message": "Corrupt EXIF data"}, {"module": "PIL"}],
    ids=["message", "module"],
)
def test_pillows_warnings_a_filter_silences_stay_silent(tmp_path, silenced):
    # The file's name goes in front of Pillow's text, not past the caller's filters: re-raised
    # from our module with the name first, a filter on Pillow's message or module let it through.
    path = cut_short_tiff(tmp_path / "scan.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", **silenced)
        with pytest.raises(ImageLoadError, match=str(path)):
            load_gray(path)
    assert [str(w.message) for w in caught] == []


def test_a_decoders_own_error_is_an_image_load_error_naming_the_file(tmp_path, monkeypatch):
    # A corrupt AVIF raised RuntimeError from im.load(), struct.error from others: past the
    # caught kinds, a traceback.
    path = tmp_path / "page.png"
    _page().save(path)

    def fail(self):
        raise RuntimeError("Failed to decode frame 0: Decoding of color planes failed")

    monkeypatch.setattr(Image.Image, "load", fail)
    with pytest.raises(ImageLoadError, match=rf"{path}: corrupt image: RuntimeError: Failed"):
        load_gray(path)


def _text_line(font_path, dark_on_light: bool = True) -> Image.Image:
    font = ImageFont.truetype(str(font_path), 28)
    im = Image.new("L", (200, 40), 235)
    ImageDraw.Draw(im).text((8, 4), "中文识别 123", font=font, fill=20)
    return im if dark_on_light else Image.eval(im, lambda v: 255 - v)


def test_light_on_dark_is_detected_and_inverted(cjk_font):
    normal = _text_line(cjk_font)
    negative = _text_line(cjk_font, dark_on_light=False)
    assert not is_light_on_dark(np.asarray(normal))
    assert is_light_on_dark(np.asarray(negative))
    fixed, inverted = normalize_polarity(negative, "auto")
    assert inverted
    assert np.array_equal(np.asarray(fixed), np.asarray(normal))
    same, inverted = normalize_polarity(normal, "auto")
    assert not inverted and same is normal
    # RGB white-on-blue, as a screenshot would be
    rgb = Image.merge("RGB", [negative, negative, Image.new("L", negative.size, 160)])
    assert np.asarray(load_gray(rgb))[0, 0] > 150


def test_polarity_can_be_forced(cjk_font):
    normal = _text_line(cjk_font)
    negative = _text_line(cjk_font, dark_on_light=False)
    assert np.array_equal(
        np.asarray(load_gray(negative, polarity="dark-on-light")), np.asarray(negative)
    )
    assert np.array_equal(
        np.asarray(load_gray(normal, polarity="light-on-dark")), np.asarray(negative)
    )
    with pytest.raises(ValueError, match=r"unknown polarity 'upside-down'.*auto"):
        normalize_polarity(normal, "upside-down")


def test_a_scan_framed_by_a_thin_dark_line_is_not_taken_for_light_on_dark(cjk_font):
    # the background is the median of a ring 6% of the shorter side deep, not the outer pixel
    font = ImageFont.truetype(str(cjk_font), 60)
    im = Image.new("L", (400, 100), 235)
    draw = ImageDraw.Draw(im)
    draw.text((20, 15), "中文识别", font=font, fill=20)
    draw.rectangle((0, 0, 399, 99), outline=20)  # a 1-px frame
    assert not is_light_on_dark(np.asarray(im))
    assert normalize_polarity(im)[1] is False


def test_uniform_and_tiny_images_are_not_inverted():
    assert not is_light_on_dark(np.full((10, 10), 0, np.uint8))
    assert not is_light_on_dark(np.full((1, 1), 255, np.uint8))
    assert is_light_on_dark(np.array([[0, 0, 0], [0, 255, 0], [0, 0, 0]], np.uint8))


def test_bad_files_raise_errors_naming_them(tmp_path):
    good = tmp_path / "good.png"
    _page().save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n", encoding="utf-8")
    cases = {
        truncated: "corrupt image",
        empty: "empty file",
        text: "not an image",
        tmp_path / "missing.png": "no such file",
        tmp_path: "is a directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_gray(path)
        assert info.value.name == str(path)
        assert str(path) in str(info.value)
    _check_page(load_gray(good))


def test_an_image_as_long_as_its_label_allows_is_read_and_a_pixel_longer_is_not():
    # 200:1 and 20:1 per character: a 3-character label's image may be 260 times as long
    assert label_proportion_problem((260 * 32, 32), "abc") is None
    assert label_proportion_problem((32, 260 * 32), "abc") is None
    assert "more than 260:1" in label_proportion_problem((260 * 32 + 1, 32), "abc")


def test_decode_png_loads_the_bytes_or_names_the_sample():
    where = "shard s.tar: sample 'k'"
    buf = io.BytesIO()
    _page().save(buf, format="PNG")
    data = buf.getvalue()
    _check_page(decode_png(data, where))
    # A truncated image has a valid header: it fails only when decoded, still inside decode_png.
    # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" is not passed on.
    for bad, reason in (
        (b"", r"empty member$"),
        (b"garbage", r"not an image Pillow can read \(7 bytes\)$"),
        (data[: len(data) // 2], ""),
    ):
        with pytest.raises(
            ImageLoadError, match=r"^shard s\.tar: sample 'k': cannot decode \.png: " + reason
        ) as info:
            decode_png(bad, where)
        assert info.value.name == where
        assert "BytesIO" not in str(info.value)


def bomb_png(side: int = 20_000) -> bytes:
    """A real decompression bomb: a valid 1-bit PNG of ``side`` x ``side`` white pixels (400
    million at the default) in about 50 kB, compressed a row at a time."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    row = b"\x00" + b"\xff" * ((side + 7) // 8)  # filter byte, then the row's bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
    return png + chunk(b"IEND", b"")


def test_decode_png_refuses_a_decompression_bomb_naming_the_sample():
    data = bomb_png()
    assert len(data) < 100_000
    where = "shard s.tar: sample 'k'"
    with pytest.raises(
        ImageLoadError,
        match=r"^shard s\.tar: sample 'k': cannot decode \.png: .*400000000 pixels.*bomb",
    ):
        decode_png(data, where)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (4000, 3000), 1).save(bomb)  # 12 MP in a few kB
    assert bomb.stat().st_size < 10_000
    with pytest.raises(ImageLoadError, match=r"bomb\.png: 4000 x 3000 = 12,000,000 pixels .*limit"):
        load_gray(bomb, max_pixels=1_000_000)
    assert load_gray(bomb, max_pixels=20_000_000).size == (4000, 3000)
    # Pillow's own limit, when ours is lifted, gives the same kind of error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageLoadError, match=r"bomb\.png: refused as a decompression bomb"):
        load_gray(bomb, max_pixels=None)


def test_find_images_walks_folders_sorted(tmp_path):
    rels = ("b/2.png", "b/1.JPG", "a.tif", "c/d/e.webp", "c/readme.txt", "z.gif", "c/f.eps")
    for rel in (*rels, "../more/g.jfif", "../more/h.jp2", "../more/i.ico", "../more/j.pgm"):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    explicit = tmp_path / "notes.txt"
    found = find_images([tmp_path / "in", explicit])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == [
        "in/a.tif",
        "in/b/1.JPG",
        "in/b/2.png",
        "in/c/d/e.webp",
        "in/z.gif",
        "notes.txt",
    ]
    # every extension Pillow opens is walked, beyond the common ones; PostScript, which needs
    # Ghostscript, is not
    found = [p.name for p in find_images([tmp_path / "more"])]
    assert found == ["g.jfif", "h.jp2", "i.ico", "j.pgm"]


def test_find_images_skips_hidden_entries_of_a_walked_folder(tmp_path):
    # A folder copied from a Mac holds a ._NAME resource fork beside each image: each got an error
    # line and made the command exit 2. A hidden file named outright is still read.
    for rel in ("scan.jpg", "._scan.jpg", ".ipynb_checkpoints/scan.jpg", ".git/x.png"):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    hidden = tmp_path / "in" / "._scan.jpg"
    assert find_images([tmp_path / "in", hidden]) == [tmp_path / "in" / "scan.jpg", hidden]


def test_integer_images_scale_from_the_bit_depth_they_fit():
    ink = np.asarray(_page()) > 0  # True on the page, False on the ink
    for top in (4095, 65535):  # a 12-bit scan in a 16-bit file, full 16 bits
        arr = np.where(ink, top, 0).astype(np.uint16)
        _check_page(load_gray(arr))
        _check_page(load_gray(Image.fromarray(arr)))  # I;16
        assert np.asarray(load_gray(arr)).max() == 255
    small = np.where(ink, 200, 10).astype(np.uint16)  # fits in 8 bits: as it is
    assert sorted(np.unique(np.asarray(load_gray(small, polarity="dark-on-light")))) == [10, 200]
    # one bright pixel does not move the page's grey (the depth is 16 bits either way)
    page = np.where(ink, 30000, 2000).astype(np.uint16)
    lit = page.copy()
    lit[0, 0] = 33000
    grey = [int(np.asarray(load_gray(a, polarity="dark-on-light"))[5, 5]) for a in (page, lit)]
    assert grey == [117, 117]
    # an 8-bit image stored as 16 bits comes back exactly, whatever its brightest level
    eight = np.where(ink, 240, 20).astype(np.uint8)
    assert np.array_equal(np.asarray(load_gray(eight.astype(np.uint16) * 257)), eight)


def test_a_closed_or_truncated_pil_image_is_an_image_load_error(tmp_path):
    path = tmp_path / "page.png"
    _page().save(path)
    with Image.open(path) as im:
        pass  # closed before it was loaded
    with pytest.raises(ImageLoadError, match=r"^<PIL image>: cannot read the PIL image"):
        load_gray(im)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8)).save(noise)
    cut = tmp_path / "cut.png"
    cut.write_bytes(noise.read_bytes()[:20_000])  # of about 40 kB: the header is intact
    with pytest.raises(ImageLoadError, match=r"^image 2: cannot read the PIL image: .*truncated"):
        load_gray(Image.open(cut), name="image 2")


def test_links_devices_and_the_aspect_limit(tmp_path):
    folder = tmp_path / "in"
    (folder / "real").mkdir(parents=True)
    _page().save(folder / "real" / "a.png")
    (folder / "linked").symlink_to(folder / "real", target_is_directory=True)
    (folder / "real" / "loop").symlink_to(folder, target_is_directory=True)  # a link loop
    (folder / "broken.png").symlink_to(tmp_path / "gone.png")
    found = [p.relative_to(folder).as_posix() for p in find_images([folder])]
    # sorted, and "linked" comes before "real": the folder both name is walked once, as the
    # first of them the sorted walk meets (the link back up ends there too)
    assert found == ["broken.png", "linked/a.png"]
    with pytest.raises(ImageLoadError, match="broken symbolic link"):
        load_gray(folder / "broken.png")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_gray("/dev/zero")
    wide = np.full((10, 2500), 255, np.uint8)
    with pytest.raises(ImageLoadError, match="over 200 times the other"):
        load_gray(wide)
    assert load_gray(wide, max_aspect=300).size == (2500, 10)
    assert load_gray(wide, max_aspect=None).size == (2500, 10)
    assert load_gray(wide, max_aspect=0).size == (2500, 10)  # 0: no limit, as --max-aspect 0
    # "over 200 times": a line exactly 200 times as wide as high is read, one pixel more is not
    assert load_gray(np.full((10, 2000), 255, np.uint8)).size == (2000, 10)
    with pytest.raises(ImageLoadError, match="2001x10 px: one side is over 200 times"):
        load_gray(np.full((10, 2001), 255, np.uint8))
    (folder / "loop.png").symlink_to(folder / "loop.png")
    with pytest.raises(ImageLoadError, match="a symbolic link that loops"):
        load_gray(folder / "loop.png")


def test_a_named_pipe_is_read_when_written_to_and_named_when_not(tmp_path, monkeypatch):
    """A FIFO (or bash's ``<(...)``) is read to its end; one no process writes to is an error
    after images.PIPE_WAIT_S, not a wait without end (opening it blocks until a writer comes)."""
    page = tmp_path / "page.png"
    _page().save(page)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    # the writer opens it after the reader has started waiting: its open blocks until then
    writer = threading.Thread(target=lambda: (time.sleep(0.3), fifo.write_bytes(page.read_bytes())))
    writer.start()
    try:
        got = load_gray(fifo)
    finally:
        writer.join(timeout=10)
    assert np.array_equal(np.asarray(got), np.asarray(load_gray(page)))
    monkeypatch.setattr(images, "PIPE_WAIT_S", 0.2)
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=rf"{fifo}: a named pipe that no process wrote to"):
        load_gray(fifo)
    assert time.monotonic() - started < 5


def test_a_name_too_long_for_the_file_system_is_named_not_a_crash(tmp_path):
    too_long = tmp_path / ("a" * 300 + ".png")
    assert find_images([too_long]) == [too_long]  # kept, so loading it reports it
    with pytest.raises(ImageLoadError, match="file name too long"):
        load_gray(too_long)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_only_the_first_frame_of_an_animation_or_a_multi_page_file_is_read(tmp_path, fmt):
    # README, "Reading your own images": of an animation or a multi-page TIFF only the first
    # frame is read. The two frames draw their bar at opposite ends of the page.
    first = _page()
    second = Image.new("L", SIZE, 255)
    ImageDraw.Draw(second).rectangle((30, 5, 42, 10), fill=0)
    path = tmp_path / f"pages.{fmt.lower()}"
    first.save(path, format=fmt, save_all=True, append_images=[second])
    with Image.open(path) as im:
        assert im.n_frames == 2  # both frames were written
        im.seek(1)
        assert np.array_equal(np.asarray(im.convert("L")), np.asarray(second))
    gray = load_gray(path)
    _check_page(gray)
    assert np.array_equal(np.asarray(gray), np.asarray(first))


def test_trim_cuts_to_the_ink_and_frames_it_as_the_training_lines():
    # a 100 x 20 px line of ink at rows 40-59 of a 200 x 100 px page of grey 240, a lone dot
    # of dust far below it (one pixel: a row needs two)
    page = np.full((100, 200), 240, np.uint8)
    page[40:60, 50:150] = 20
    page[90, 10] = 0
    trimmed = np.asarray(trim_to_ink(Image.fromarray(page), "line"))
    # line: 0.16, 0.12 and 0.2 of the ink's 20 px above, below and at either side
    assert trimmed.shape == (3 + 20 + 2, 4 + 100 + 4)
    assert (trimmed[3:23, 4:104] == 20).all()
    margin = np.ones(trimmed.shape, bool)
    margin[3:23, 4:104] = False
    assert (trimmed[margin] == 240).all()
    # an expression's digits fill less of their em: more room around them
    assert np.asarray(trim_to_ink(Image.fromarray(page), "expr")).shape == (5 + 20 + 8, 108 + 8)
    # the same line framed any other way trims to the same image
    loose = np.full((300, 500), 240, np.uint8)
    loose[200:220, 300:400] = 20
    assert np.array_equal(np.asarray(trim_to_ink(Image.fromarray(loose), "line")), trimmed)


def test_trim_centres_a_hanzi_in_a_square_it_fills_as_the_training_ones():
    # a 30 x 40 px character off centre in a 300 x 200 px page: centred in a 51 px square (its
    # longer side 79% of it)
    page = np.full((200, 300), 250, np.uint8)
    page[150:190, 10:40] = 0
    trimmed = np.asarray(trim_to_ink(Image.fromarray(page), "hanzi"))
    assert trimmed.shape == (51, 51)
    assert (trimmed[5:45, 10:40] == 0).all() and (trimmed == 0).sum() == 30 * 40


def test_trim_leaves_a_line_framed_as_the_training_ones_as_it_is():
    # ink over 40% of the height or more: trimming such images cost 2 points of a line model's
    # accuracy and 10 of an expr model's (session 59). A line of short glyphs alone has room
    # around its ink, and is trimmed: an "=" blown up to the full height can misread.
    page = np.full((40, 200), 240, np.uint8)
    page[12:28, 10:190] = 20  # 16 px of ink in 40: as it is
    image = Image.fromarray(page)
    assert trim_to_ink(image) is image
    page[12:28, :] = 240
    page[18:22, 10:30] = 20  # a 4 px "=" alone
    assert trim_to_ink(Image.fromarray(page)).height == 1 + 4 + 0


def test_trim_finds_an_expressions_ink_under_its_noise():
    # a textured captcha-like background: its darkest pixels are noise, and the box was the
    # whole image; a 3x3 median finds the text, and the margins come from the image itself
    rng = np.random.default_rng(0)
    page = rng.integers(200, 256, (120, 200)).astype(np.uint8)
    page[rng.random(page.shape) < 0.01] = 0  # salt
    page[50:70, 60:140] = 10
    trimmed = trim_to_ink(Image.fromarray(page), "expr")
    assert trimmed.size == (80 + 2 * 8, 5 + 20 + 8)
    assert np.array_equal(np.asarray(trimmed), page[45:78, 52:148])


@pytest.mark.parametrize("fill", ["blank", "faint", "smudge", "empty"])
def test_trim_leaves_an_image_without_ink_as_it_is(fill):
    smudge = np.full((40, 200), 250, np.uint8)
    smudge[16:22, 50:100] = 230  # 20 levels darker, rows of it: no ink all the same
    page = {
        "blank": np.full((40, 200), 255, np.uint8),
        "faint": np.where(np.eye(40, 200, dtype=bool), 230, 250).astype(np.uint8),  # 20 levels
        "smudge": smudge,
        "empty": np.zeros((0, 0), np.uint8),
    }[fill]
    image = Image.fromarray(page)
    assert trim_to_ink(image) is image
