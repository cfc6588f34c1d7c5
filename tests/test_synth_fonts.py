"""Fonts: coverage of real fonts, empty glyphs, corrupt files, exclusions, the uncovered policy."""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, font_with_damaged_outlines, made_locale
from fontTools.ttLib import TTCollection, TTFont

from synth.charset import build_charset, gb2312_hanzi
from synth.fonts import (
    _CFF_SHORT,
    FontError,
    FontFile,
    apply_uncovered_policy,
    covered_charset,
    excluded_by,
    expand_braces,
    font_file_problem,
    merge_coverage,
    read_coverage,
    resolve_font_files,
    scan_files,
    scan_fonts,
    split_roles,
    write_coverage,
)
from synth.schema import load_config_file

HANZI = gb2312_hanzi()
# The shipped configs that name fonts of their own (the others extend config.yaml as it is).
SHIPPED_FONT_CONFIGS = ["configs/config.yaml", "configs/gpu.yaml", "configs/unseen_fonts.yaml"]
EXPR = list("0123456789+-*()")


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_coverage_table_of_real_fonts(tmp_path, cjk_font, latin_font, heldout_font):
    charsets = {"hanzi": HANZI, "expr": EXPR}
    records = scan_fonts([str(cjk_font), str(latin_font)], [str(heldout_font)], HANZI + EXPR)
    out = tmp_path / "coverage.tsv"
    write_coverage(records, charsets, out)
    rows = _rows(out)
    by = {(r["path"], r["face"]): r for r in rows}
    wqy = by[(str(cjk_font), "0")]
    assert wqy["family"] == "WenQuanYi Micro Hei" and wqy["role"] == "train"
    assert wqy["status"] == "ok" and wqy["hanzi_covered"] == "3755" and wqy["hanzi_missing"] == ""
    dejavu = by[(str(latin_font), "0")]
    assert dejavu["hanzi_covered"] == "0" and dejavu["hanzi_missing"] == "".join(HANZI)
    assert dejavu["expr_covered"] == "15" and dejavu["expr_missing"] == ""
    ukai = [r for r in rows if r["path"] == str(heldout_font)]
    assert {r["role"] for r in ukai} == {"test"} and len(ukai) == 4  # every face of the .ttc
    faces = read_coverage(out, "hanzi", HANZI, "train")
    assert {f.family for f in faces} == {
        "WenQuanYi Micro Hei",
        "WenQuanYi Micro Hei Mono",
        "DejaVu Sans",
    }
    assert next(f for f in faces if f.family == "DejaVu Sans").covered == frozenset()


def test_per_task_and_role_tables_merge_into_the_overview(
    tmp_path, cjk_font, latin_font, heldout_font
):
    """The workflow scans each role's files for each task's charset; the merged overview has
    the columns and rows of one table written from a scan of everything."""
    charsets = {"hanzi": HANZI[:50], "expr": EXPR}
    train, test = split_roles([str(cjk_font), str(latin_font)], [str(heldout_font)])
    tables = []
    for task, chars in charsets.items():
        for role, files in (("train", train), ("test", test)):
            tables.append(tmp_path / f"{task}-{role}.tsv")
            write_coverage(scan_files(files, role, chars), {task: chars}, tables[-1])
    merged = tmp_path / "coverage.tsv"
    merge_coverage(tables, merged)
    whole = tmp_path / "whole.tsv"
    write_coverage(
        scan_fonts([str(cjk_font), str(latin_font)], [str(heldout_font)], HANZI[:50] + EXPR),
        charsets,
        whole,
    )
    assert merged.read_text() == whole.read_text()
    assert len(_rows(merged)) == 3 + 4  # WenQuanYi Micro Hei (2 faces), DejaVu Sans; UKai's 4


def test_another_version_or_a_renamed_copy_of_a_held_out_font_is_held_out(
    tmp_path, cjk_font, latin_font, heldout_font, caplog
):
    """A training file with a held-out face under other bytes is held out when the workflow
    starts, naming both files and the face: another version (the same family and style), or a
    copy whose names were changed (the same outline table)."""
    from fontTools.ttLib import TTCollection

    held_out_face = TTCollection(str(heldout_font)).fonts[0]
    other_version = tmp_path / "ukai-cn.ttf"  # one face taken out of the collection
    held_out_face.save(other_version)
    for record in held_out_face["name"].names:
        if record.nameID in (1, 3, 4, 6, 16):
            record.string = "My Kai"
    renamed = tmp_path / "my-kai.ttf"
    held_out_face.save(renamed)
    paths = [str(cjk_font), str(latin_font)]
    with caplog.at_level("WARNING"):
        train, test = split_roles([*paths, str(other_version), str(renamed)], [str(heldout_font)])
    assert [f.path for f in train] == sorted(paths)
    assert [f.path for f in test] == [str(heldout_font)]
    assert (
        f"font {other_version} has the family and style names of the held-out font {heldout_font} "
        f"({TTCollection(str(heldout_font)).fonts[0]['name'].getBestFullName()}): another "
        "version of it; kept out of training" in caplog.text
    )
    assert (
        f"font {renamed} has the outlines of the held-out font {heldout_font} (My Kai "
    ) in caplog.text
    assert "a copy of it under another name; kept out of training" in caplog.text
    # Without them, nothing is held out and nothing is said.
    caplog.clear()
    with caplog.at_level("WARNING"):
        train, _ = split_roles(paths, [str(heldout_font)])
    assert [f.path for f in train] == sorted(paths) and "held out" not in caplog.text


def _glyf_overwritten(source: Path, out: Path) -> Path:
    """``source`` with its glyf table's bytes replaced by random ones and its table directory,
    checksums included, left as it was: a damaged file that reads as the same outlines."""
    import numpy as np

    data = bytearray(source.read_bytes())
    for i in range(struct.unpack_from(">H", data, 4)[0]):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"glyf":
            data[offset : offset + length] = np.random.default_rng(0).bytes(length)
    out.write_bytes(bytes(data))
    return out


def test_a_damaged_file_that_kept_its_checksums_is_no_copy(tmp_path, latin_font, caplog):
    """The copy checks match the table directory's lengths and checksums, then the tables'
    bytes: a file whose outlines were overwritten, its directory left as it was, was named a
    copy of the font it was damaged from (of a held-out one under another name, too)."""
    from fontTools.ttLib import TTFont

    damaged = _glyf_overwritten(latin_font, tmp_path / "Damaged.ttf")
    with caplog.at_level("WARNING"):
        train, _ = split_roles([str(latin_font), str(damaged)], [])
    assert [f.path for f in train] == sorted([str(latin_font), str(damaged)])
    assert "outlines and character map" not in caplog.text
    renamed = TTFont(str(latin_font))
    for record in renamed["name"].names:
        if record.nameID in (1, 3, 4, 6, 16):
            record.string = "Not DejaVu"
    renamed.save(str(tmp_path / "renamed.ttf"))
    other = _glyf_overwritten(tmp_path / "renamed.ttf", tmp_path / "Other.ttf")
    caplog.clear()
    with caplog.at_level("WARNING"):
        train, _ = split_roles([str(other)], [str(latin_font)])
    assert [f.path for f in train] == [str(other)] and "held-out font" not in caplog.text
    # the copy itself, undamaged, is still held out
    with caplog.at_level("WARNING"):
        train, _ = split_roles([str(tmp_path / "renamed.ttf")], [str(latin_font)])
    assert train == [] and "a copy of it under another name" in caplog.text


def test_fonts_without_names_are_not_taken_for_one_another(tmp_path, latin_font, caplog):
    """Two unrelated fonts whose name tables are empty share no family and style: neither is
    held out for the other. Two held-out files of one name get a warning, since the per-file
    figures know a file by its name."""
    from fontTools.ttLib import TTFont

    unnamed = []
    for i, source in enumerate((latin_font, latin_font.with_name("DejaVuSans-Bold.ttf"))):
        font = TTFont(str(source))
        font["name"].names = []
        unnamed.append(tmp_path / f"unnamed-{i}.ttf")
        font.save(unnamed[-1])
    with caplog.at_level("WARNING"):
        train, _ = split_roles([str(unnamed[1])], [str(unnamed[0])])
    assert [f.path for f in train] == [str(unnamed[1])] and "held out" not in caplog.text

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    twins = [tmp_path / d / "same.ttf" for d in ("a", "b")]
    for twin, source in zip(twins, unnamed, strict=True):
        twin.write_bytes(source.read_bytes())
    caplog.clear()
    with caplog.at_level("WARNING"):
        split_roles([str(latin_font)], [str(t) for t in twins])
    assert (
        f"held-out fonts {twins[0]} and {twins[1]} share a file name: the per-file figures "
        "(per_font_file) count them as one"
    ) in caplog.text
    caplog.clear()  # training files too: test_seen's per-file figures
    with caplog.at_level("WARNING"):
        split_roles([str(t) for t in twins], [])
    assert f"training fonts {twins[0]} and {twins[1]} share a file name" in caplog.text


def test_a_copy_of_a_held_out_font_is_held_out_and_a_repeated_training_font_counts_once(
    tmp_path, cjk_font, latin_font, heldout_font, caplog
):
    import shutil

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for source, name in ((heldout_font, "my-kai.ttc"), (latin_font, "again.ttf")):
        shutil.copy(source, fonts / name)
    shutil.copy(heldout_font, tmp_path / "kai-again.ttc")
    with caplog.at_level("WARNING"):
        train, test = split_roles(
            [str(cjk_font), str(latin_font), str(fonts / "*")],
            [str(heldout_font), str(tmp_path / "kai-again.ttc")],
        )
    kept = {f.path for f in train}
    latin = {str(latin_font), str(fonts / "again.ttf")}
    assert str(cjk_font) in kept and len(kept & latin) == 1 and len(kept) == 2
    [held_out] = test  # a second held-out copy counts once too
    assert held_out.path in (str(heldout_font), str(tmp_path / "kai-again.ttc"))
    assert "left out, so it counts once" in caplog.text
    assert (
        f"font {fonts / 'my-kai.ttc'} has the same bytes as the held-out font {held_out.path}: "
        "kept out of training" in caplog.text
    )
    [dropped] = latin - kept
    [twin] = kept & latin
    assert (
        f"font {dropped} has the same bytes as the training font {twin}: "
        "left out, so it counts once" in caplog.text
    )


def test_a_face_saved_out_of_a_training_collection_counts_once(
    tmp_path, latin_font, heldout_font, caplog
):
    """A training .ttf that a training .ttc holds under other bytes (the same outline and cmap
    tables) is left out, the collection kept, whichever comes first; a file sharing only some
    of its faces is kept, with a warning naming the face drawn twice. A face of the collection
    with its character map changed is another font."""
    from fontTools.ttLib import TTCollection, TTFont

    kai = TTCollection(str(heldout_font))
    one_face = tmp_path / "a-ukai-cn.ttf"  # sorts before the collection
    kai.fonts[0].save(one_face)
    remapped = TTFont(one_face)
    cmap = remapped["cmap"].getcmap(3, 1).cmap
    cmap[ord("A")], cmap[ord("B")] = cmap[ord("B")], cmap[ord("A")]
    remapped.save(tmp_path / "remapped.ttf")
    bold = latin_font.with_name("DejaVuSans-Bold.ttf")
    pair = tmp_path / "dejavu-pair.ttc"
    collection = TTCollection()
    collection.fonts = [
        TTFont(str(bold)),
        TTFont(str(latin_font.with_name("DejaVuSans-Oblique.ttf"))),
    ]
    collection.save(str(pair))
    sans = TTCollection()  # shares its first face (DejaVu Sans Bold) with the pair, not its second
    sans.fonts = [TTFont(str(bold)), TTFont(str(latin_font))]
    sans.save(str(tmp_path / "dejavu-sans.ttc"))
    # the pair's Bold beside a face with no cmap to compare (a bitmap face, say): its own
    unmapped = TTFont(str(latin_font.with_name("DejaVuSansMono.ttf")))
    del unmapped["cmap"]
    odd = TTCollection()
    odd.fonts = [TTFont(str(bold)), unmapped]
    odd.save(str(tmp_path / "dejavu-zodd.ttc"))

    paths = [str(p) for p in (one_face, heldout_font, tmp_path / "remapped.ttf", bold, pair)]
    paths += [str(tmp_path / "dejavu-zodd.ttc")]
    with caplog.at_level("WARNING"):
        train, _ = split_roles([*paths, str(tmp_path / "dejavu-sans.ttc")], [])
    kept = [f.path for f in train]
    assert str(one_face) not in kept and str(bold) not in kept
    assert {str(heldout_font), str(tmp_path / "remapped.ttf"), str(pair)} <= set(kept)
    assert str(tmp_path / "dejavu-sans.ttc") in kept and str(tmp_path / "dejavu-zodd.ttc") in kept
    assert f"font {tmp_path / 'dejavu-zodd.ttc'} has a face (DejaVu Sans Bold)" in caplog.text
    assert (
        f"font {one_face} has the outlines and character map of the training font {heldout_font} "
        f"({kai.fonts[0]['name'].getBestFullName()}): left out, so its face counts once"
    ) in caplog.text
    assert f"font {bold} has the outlines and character map of the training font {pair}" in (
        caplog.text
    )
    assert (
        f"font {tmp_path / 'dejavu-sans.ttc'} has a face (DejaVu Sans Bold) with the outlines and "
        f"character map of the training font {pair}: that face counts twice"
    ) in caplog.text
    assert "remapped" not in caplog.text
    # Alone, each is trained with and nothing is said.
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert [f.path for f in split_roles([str(one_face)], [])[0]] == [str(one_face)]
    assert caplog.text == ""


def test_exclude_families_by_regex(heldout_font):
    records = scan_fonts([], [str(heldout_font)], EXPR, [r"\b(HK|TW)\b"])
    status = {r.family: r.status for r in records}
    assert status["AR PL UKai CN"] == "ok"
    assert status["AR PL UKai TW"] == "excluded" and status["AR PL UKai HK"] == "excluded"
    excluded = next(r for r in records if r.family == "AR PL UKai TW")
    assert excluded.reason == r"name matches \b(HK|TW)\b"


def test_exclude_one_face_of_a_family_by_its_full_name(heldout_font):
    """A pattern can name a face (family and style) and keep the family's other faces."""
    records = scan_fonts([], [str(heldout_font)], EXPR, [r"^AR PL UKai CN Book$"])
    status = {r.name: r.status for r in records}
    assert status["AR PL UKai CN Book"] == "excluded"
    assert status["AR PL UKai TW Book"] == status["AR PL UKai HK Book"] == "ok"
    # Patterns written for family names keep matching them (anchored at the family's end).
    records = scan_fonts([], [str(heldout_font)], EXPR, [r"UKai CN$"])
    assert {r.status for r in records} == {"excluded", "ok"}


CWTEX = Path("/usr/share/fonts/truetype/cwtex")


def test_a_misdrawn_character_is_missing_from_the_faces_it_names_alone(caplog):
    """``fonts.misdrawn``: cwTeXMing draws 沽 as 瀑, so it covers 瀑 and not 沽; cwTeXKai, which
    draws both, is not named and keeps both; the job's log says what was counted missing."""
    files = [str(CWTEX / "cwming.ttf"), str(CWTEX / "cwkai.ttf")]
    chars = list("沽瀑沾")
    plain = {r.family: r.covered for r in scan_fonts(files, [], chars)}
    assert plain["cwTeXMing"] == plain["cwTeXKai"] == set(chars)
    with caplog.at_level(logging.INFO, logger="synth.fonts"):
        records = scan_fonts(files, [], chars, (), {"^cwTeXMing$": "沽X"})
    covered = {r.family: r.covered for r in records}
    assert covered == {"cwTeXMing": {"瀑", "沾"}, "cwTeXKai": set(chars)}
    assert "fonts.misdrawn counts '沽' U+6CBD as missing" in caplog.text
    assert "cwkai" not in caplog.text
    # by the full name too, as exclude_families matches it
    records = scan_fonts(files, [], chars, (), {"Kai Medium$": "沾"})
    assert {r.family: r.covered for r in records}["cwTeXKai"] == {"沽", "瀑"}


def test_the_shipped_configs_misdrawn_characters_are_drawn_as_others():
    """What the shipped configs list in ``fonts.misdrawn`` is the font's fault, seen in its
    pixels: cwTeXMing's 沽 is drawn as its 瀑 (the same strokes, a pixel apart), while the other
    cwTeX faces' two differ as two characters do."""
    from PIL import Image, ImageDraw

    from synth.render import load_font

    def drawn(path: Path, char: str) -> np.ndarray:
        img = Image.new("L", (80, 80), 0)
        ImageDraw.Draw(img).text((8, 0), char, font=load_font(str(path), 0, 64), fill=255)
        return np.asarray(img, dtype=np.float64) / 255

    def apart(path: Path, a: str, b: str) -> float:
        x, y = drawn(path, a), drawn(path, b)
        return float(np.abs(x - y).sum() / max(x.sum(), y.sum()))

    for config in ("configs/config.yaml", "configs/gpu.yaml"):
        misdrawn = load_config_file(REPO / config)["fonts"]["misdrawn"]
        assert misdrawn == {"^cwTeXMing$": "沽"}, config
    # a pixel's shift apart (0.30); the other cwTeX faces' two, 0.86 to 1.27
    assert apart(CWTEX / "cwming.ttf", "沽", "瀑") < 0.4
    for other in ("cwkai", "cwfs", "cwheib"):
        assert apart(CWTEX / f"{other}.ttf", "沽", "瀑") > 0.8, other


def test_a_font_with_only_a_symbol_character_map_covers_nothing(tmp_path, latin_font):
    """Wingdings-style fonts map their glyphs from the private-use codes of a (3, 0) Symbol
    subtable, which no Unicode text reaches: they draw none of a charset's characters."""
    from fontTools.ttLib.tables._c_m_a_p import CmapSubtable

    font = TTFont(latin_font)
    unicode_map = font.getBestCmap()
    symbol = CmapSubtable.newSubtable(4)
    symbol.platformID, symbol.platEncID, symbol.language = 3, 0, 0
    symbol.cmap = {0xF000 + ord(c): unicode_map[ord(c)] for c in EXPR}
    font["cmap"].tables = [symbol]
    path = tmp_path / "symbol.ttf"
    font.save(path)
    (record,) = scan_fonts([str(path)], [], EXPR)
    assert record.status == "ok" and record.covered == frozenset()


def test_empty_glyph_counts_as_missing(tmp_path, latin_font):
    # A cmap entry pointing to an empty glyph: map "A" to the (empty) space glyph.
    font = TTFont(latin_font)
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap[ord("A")] = table.cmap[ord(" ")]
    broken = tmp_path / "blankA.ttf"
    font.save(broken)
    (record,) = scan_fonts([str(broken)], [], "AB")
    assert record.covered == frozenset("B")


def test_glyphs_that_draw_nothing_count_as_missing(tmp_path, latin_font):
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    font = TTFont(latin_font)
    glyf, cmap = font["glyf"], font.getBestCmap()
    # "6": one contour whose points all coincide; "8": a composite of the (empty) space glyph
    pen = TTGlyphPen(None)
    pen.moveTo((100, 100))
    pen.lineTo((100, 100))
    pen.lineTo((100, 100))
    pen.closePath()
    glyf[cmap[ord("6")]] = pen.glyph()
    pen = TTGlyphPen(glyf)
    pen.addComponent(cmap[ord(" ")], (1, 0, 0, 1, 0, 0))
    glyf[cmap[ord("8")]] = pen.glyph()
    blank = tmp_path / "blank68.ttf"
    font.save(blank)
    (record,) = scan_fonts([str(blank)], [], "678")
    assert record.covered == frozenset("7")


def _rectangle(pen, x0, y0, x1, y1):
    pen.moveTo((x0, y0))
    pen.lineTo((x1, y0))
    pen.lineTo((x1, y1))
    pen.lineTo((x0, y1))
    pen.closePath()


def _hairline(pen):
    pen.moveTo((100, 100))
    pen.lineTo((400, 100))
    pen.closePath()


def _outline(pen):
    # a letter-like outline with curves and a counter: bytecode well past the short threshold
    pen.moveTo((100, 0))
    pen.lineTo((100, 700))
    pen.curveTo((150, 750), (300, 760), (400, 700))
    pen.curveTo((480, 650), (500, 500), (450, 400))
    pen.lineTo((500, 0))
    pen.closePath()
    _rectangle(pen, 200, 100, 380, 300)


# What each character of the CFF test font maps to: a glyph name and how its charstring is made
# (a T2 program, or a drawing made with T2CharStringPen).
CFF_GLYPHS = {
    "A": ("endchar", ["endchar"]),  # an empty charstring
    "B": ("stems", [100, 50, "hstem", 200, 40, "vstem", "endchar"]),  # hints, no moveto
    # hints and a mask switching both stems on (one mask byte per 8 stems), still no moveto
    "C": ("hintmask", [100, 50, "hstem", 200, 40, "vstem", "hintmask", b"\xc0", "endchar"]),
    "D": ("hairline", _hairline),  # a path, but of no area
    "E": ("small", lambda pen: _rectangle(pen, 100, 100, 140, 130)),  # short, but draws
    "F": ("outline", _outline),
    # stem hints alone, long enough to be taken as an outline without running it: FreeType
    # draws nothing for it
    "G": (
        "longhints",
        [*range(120, 220, 10), "hstemhm", *range(120, 180, 10), "vstemhm", "endchar"],
    ),
}


@pytest.fixture(scope="module")
def cff_font(tmp_path_factory) -> Path:
    """A real OpenType-CFF font (FreeType opens it too) with the glyphs of `CFF_GLYPHS`."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.misc.psCharStrings import T2CharString
    from fontTools.pens.t2CharStringPen import T2CharStringPen

    charstrings = {}
    notdef = (".notdef", lambda pen: _rectangle(pen, 50, 0, 450, 700))
    for name, how in (notdef, *CFF_GLYPHS.values()):
        if callable(how):
            pen = T2CharStringPen(600, None)
            how(pen)
            charstrings[name] = pen.getCharString()
        else:
            charstrings[name] = T2CharString(program=how)
    fb = FontBuilder(1000, isTTF=False)
    fb.setupGlyphOrder(list(charstrings))
    fb.setupCharacterMap({ord(c): name for c, (name, _) in CFF_GLYPHS.items()})
    fb.setupCFF("CffTest-Regular", {"FullName": "CffTest Regular"}, charstrings, {})
    fb.setupHorizontalMetrics({name: (600, 0) for name in charstrings})
    fb.setupHorizontalHeader(ascent=800, descent=200)
    fb.setupNameTable({"familyName": "CffTest", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    path = tmp_path_factory.mktemp("cff") / "CffTest.otf"
    fb.save(str(path))
    return path


def _cff_bytecode_length(path: Path, char: str) -> int:
    font = TTFont(path)
    cff = font["CFF "].cff
    return len(cff[cff.fontNames[0]].CharStrings[font.getBestCmap()[ord(char)]].bytecode)


@pytest.mark.parametrize("char", list("ABCD"), ids=lambda c: CFF_GLYPHS[c][0])
def test_short_cff_charstrings_that_draw_nothing_count_as_missing(cff_font, char):
    # short enough to be run, not taken on trust (else this would not test the short branch)
    assert _cff_bytecode_length(cff_font, char) < _CFF_SHORT
    (record,) = scan_fonts([str(cff_font)], [], char + "E")
    assert record.status == "ok", record.reason
    assert record.covered == frozenset("E")


def test_a_short_cff_charstring_that_draws_counts_as_covered(cff_font):
    assert _cff_bytecode_length(cff_font, "E") < _CFF_SHORT
    (record,) = scan_fonts([str(cff_font)], [], "E")
    assert record.status == "ok" and record.covered == frozenset("E")


def test_a_long_cff_charstring_counts_as_covered(cff_font):
    assert _cff_bytecode_length(cff_font, "F") >= _CFF_SHORT
    records = scan_fonts([str(cff_font)], [], "ABCDEF")
    assert [r.covered for r in records] == [frozenset("EF")]


def test_a_long_cff_charstring_that_draws_nothing_counts_as_missing(cff_font):
    # Long enough to pass the outline read unrun; FreeType, which draws the samples, finds no
    # ink: a sample of it would be blank under its label.
    assert _cff_bytecode_length(cff_font, "G") >= _CFF_SHORT
    (record,) = scan_fonts([str(cff_font)], [], "FG")
    assert record.status == "ok" and record.covered == frozenset("F")


def test_glyphs_freetype_cannot_draw_count_as_missing_and_are_named(tmp_path, latin_font, caplog):
    # Outlines of garbage behind sound glyph boxes: counted as missing, with one warning naming
    # the face and the characters, not drawn by the shard job (where they stopped it).
    bad = font_with_damaged_outlines(latin_font, "0123456789", tmp_path / "damaged.ttf")
    with caplog.at_level(logging.WARNING, logger="synth.fonts"):
        (record,) = scan_fonts([str(bad)], [], EXPR)
    assert record.status == "ok" and record.covered == frozenset("+-*()")
    assert f"font file {bad} face 0: FreeType cannot draw 10 characters ('0' U+0030" in caplog.text


def test_a_face_with_blank_glyphs_for_a_task_covers_none_of_it_and_is_not_damaged(
    tmp_path, latin_font
):
    # Placeholders: the task's characters mapped to glyphs of no outline, the rest whole. The
    # face covers none of the task (it was refused as a damaged font, and named explicitly,
    # stopped the run); a face whose every glyph is blank is still damaged (below).
    from fontTools.ttLib.tables._g_l_y_f import Glyph

    font = TTFont(str(latin_font))
    glyf, cmap = font["glyf"], font.getBestCmap()
    for ch in EXPR:
        glyf[cmap[ord(ch)]] = Glyph()
    blank = tmp_path / "BlankDigits.ttf"
    font.save(blank)
    (record,) = scan_fonts([str(blank)], [], EXPR)
    assert record.status == "ok" and record.covered == frozenset()
    (letters,) = scan_fonts([str(blank)], [], "AB")
    assert letters.covered == frozenset("AB")


def _font_damaged_inside(path: Path) -> Path:
    """A file whose table directory is sound but whose one table ('name', 3 bytes) is not."""
    data = b"\xff\xfe\xfd"
    header = struct.pack(">4sHHHH", b"\x00\x01\x00\x00", 1, 16, 0, 0)
    path.write_bytes(header + struct.pack(">4sIII", b"name", 0, 12 + 16, len(data)) + data)
    return path


def test_a_font_damaged_inside_is_reported_with_path_and_reason(tmp_path, cjk_font, caplog):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    bad = _font_damaged_inside(fonts / "garbage.ttf")
    assert font_file_problem(bad) is None  # only reading its tables finds the damage
    (fonts / "README.md").write_text("not a font, not matched")
    charsets = {"expr": EXPR}
    with caplog.at_level(logging.WARNING):
        records = scan_fonts([str(cjk_font), f"{fonts}/*"], [], EXPR)
    assert f"font file {bad} cannot be read (error: unpack requires" in caplog.text
    (err,) = [r for r in records if r.status == "error"]
    assert err.path == str(bad) and err.reason
    out = tmp_path / "coverage.tsv"
    write_coverage(records, charsets, out)
    row = next(r for r in _rows(out) if r["path"] == str(bad))
    assert row["status"] == "error" and row["reason"] == err.reason
    assert all(f.path != str(bad) for f in read_coverage(out, "expr", EXPR, "train"))
    # Named explicitly (not a glob), the same file is a clear error naming it.
    with pytest.raises(FontError, match=r"garbage\.ttf"):
        scan_fonts([str(bad)], [], EXPR)


def test_what_fonttools_says_of_a_damaged_name_table_is_said_once_naming_the_file(
    tmp_path, latin_font, caplog
):
    # DejaVu Sans with its name table overwritten: fontTools logs an ERROR per name record it
    # skips (65,535 here, none naming the file) each time the table is read, and the workflow
    # reads it when it starts and in each coverage job. The face itself draws.
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    data = bytearray(latin_font.read_bytes())
    name = TTFont(str(latin_font)).reader.tables["name"]
    data[name.offset : name.offset + name.length] = b"\xff" * name.length
    bad = fonts / "badname.ttf"
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        split_roles([f"{fonts}/*"], [])
        (record,) = scan_fonts([f"{fonts}/*"], [], EXPR)
    assert record.status == "ok" and set(EXPR) - set("+-*()") <= record.covered
    said = [r for r in caplog.records if r.name.startswith("fontTools")]
    # a line per kind of message each time the file is read (three times here)
    assert said and len(said) <= 10, f"{len(said)} fontTools records"
    assert all(r.getMessage().startswith(f"font file {bad}: ") for r in said), said[0]
    assert any("malformed name record #0 (65534 more like it)" in r.getMessage() for r in said)


def test_a_face_whose_name_table_gives_no_family_is_excluded_by_its_file_name(
    tmp_path, latin_font, cjk_font, caplog
):
    # Its family read as "": no exclude_families pattern could leave it out, of every task or
    # of one. It goes by its file name's stem.
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    data = bytearray(latin_font.read_bytes())
    name = TTFont(str(latin_font)).reader.tables["name"]
    data[name.offset : name.offset + name.length] = b"\xff" * name.length
    (fonts / "Scan-Regular.ttf").write_bytes(bytes(data))
    shutil.copy(cjk_font, fonts / "Whole.ttc")
    with caplog.at_level(logging.ERROR, logger="fontTools"):
        kept = scan_fonts([f"{fonts}/*"], [], EXPR)
        left, *whole = scan_fonts([f"{fonts}/*"], [], EXPR, exclude_families=["^Scan-"])
    assert [r.family for r in kept if r.path.endswith("Scan-Regular.ttf")] == [""]
    assert (left.status, left.reason) == ("excluded", "name matches ^Scan-"), left
    assert whole and all(r.status == "ok" and r.family.startswith("WenQuanYi") for r in whole)
    out = tmp_path / "coverage.tsv"
    write_coverage(kept, {"expr": EXPR}, out)
    assert len(read_coverage(out, "expr", EXPR, "train")) == len(whole) + 1
    # a task's own list too
    faces = read_coverage(out, "expr", EXPR, "train", ["^Scan-"])
    assert sorted(f.path for f in faces) == sorted(r.path for r in whole)


@pytest.mark.parametrize("fill", ["zeros", "random"])
def test_a_font_whose_glyphs_were_overwritten_is_an_error_not_a_font_that_covers_nothing(
    tmp_path, latin_font, caplog, fill
):
    # DejaVu Sans with its glyf table zeroed, or overwritten with random bytes: the directory,
    # cmap and loca read, and every glyph reads as one of no outline, or as random boxes
    # FreeType draws nothing of (these were an "ok" face covering nothing). It maps the task's
    # characters, so it is damaged (a Latin font among hanzi, which maps none of them, covers
    # nothing and is fine).
    import numpy as np

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    data = bytearray(latin_font.read_bytes())
    for i in range(struct.unpack_from(">H", data, 4)[0]):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"glyf":
            junk = bytes(length) if fill == "zeros" else np.random.default_rng(0).bytes(length)
            data[offset : offset + length] = junk
    bad = fonts / f"{fill}.ttf"
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        (record,) = scan_fonts([f"{fonts}/*"], [], EXPR)
    assert record.status == "error" and record.covered == frozenset()
    assert f"its character map gives {len(EXPR)} of the task's characters" in record.reason
    assert f"font file {bad} cannot be read" in caplog.text
    with pytest.raises(FontError, match=rf"{fill}\.ttf cannot be read: .* damaged glyf"):
        scan_fonts([str(bad)], [], EXPR)
    if fill == "random":
        # The same face second in a collection after a whole one: its other glyphs are its
        # own, not the first face's (they were read from face 0, and the face passed as whole).
        from fontTools.ttLib import TTCollection

        collection = TTCollection()
        collection.fonts = [TTFont(str(latin_font)), TTFont(str(bad))]
        both = tmp_path / "both" / "Both.ttc"
        both.parent.mkdir()
        collection.save(str(both))
        records = scan_fonts([f"{both.parent}/*"], [], EXPR)
        assert [(r.index, r.status) for r in records] == [(0, "ok"), (1, "error")]


def _with_notdef_copy(font_path: Path, chars: str, out: Path) -> Path:
    """A copy of a TrueType font whose ``chars`` map to a new glyph that is a copy of its
    .notdef glyph (the missing-glyph box), written to ``out``."""
    import copy

    font = TTFont(str(font_path))
    glyf = font["glyf"]
    glyf["boxcopy"] = copy.deepcopy(glyf[".notdef"])  # added to the font's glyph order too
    font["hmtx"]["boxcopy"] = font["hmtx"][".notdef"]
    for table in font["cmap"].tables:
        for ch in chars:
            if ord(ch) in table.cmap:
                table.cmap[ord(ch)] = "boxcopy"
    font.save(str(out))
    return out


def test_a_character_mapped_to_a_copy_of_the_notdef_box_is_missing(tmp_path, latin_font, caplog):
    """A glyph that is the .notdef box under another name has ink, and its samples showed the
    box under the label: FreeType's drawing of it is compared with the face's .notdef."""
    boxed = _with_notdef_copy(latin_font, "6+", tmp_path / "Boxed.ttf")
    with caplog.at_level(logging.WARNING, logger="synth.fonts"):
        (record,) = scan_fonts([str(boxed)], [], EXPR)
    assert record.status == "ok" and record.covered == frozenset(EXPR) - set("6+")
    assert (
        f"font file {boxed} face 0: 2 characters are drawn as the face's .notdef glyph "
        "(the missing-glyph box) ('+' U+002B '6' U+0036) at 24 px" in caplog.text
    )
    # The face's own glyphs are not taken for its box.
    (whole,) = scan_fonts([str(latin_font)], [], EXPR)
    assert whole.covered == frozenset(EXPR)


def test_a_blank_embedded_bitmap_counts_as_missing(tmp_path, caplog):
    """FreeType draws a face's embedded bitmap instead of its outline at exactly the bitmap's
    size (WenQuanYi Zen Hei's third face has strikes at 12 to 16 px, the short task draws at 10
    to 14): a blank bitmap drew a blank in the sample where the outline check saw ink."""
    from conftest import WQY_ZENHEI, _require
    from fontTools import subset
    from PIL import ImageFont

    opts = subset.Options()
    opts.font_number = 2
    opts.notdef_outline = True
    opts.drop_tables = [t for t in opts.drop_tables if t not in ("EBDT", "EBLC")]
    font = subset.load_font(str(_require(WQY_ZENHEI)), opts)
    subsetter = subset.Subsetter(opts)
    subsetter.populate(text="08+")
    subsetter.subset(font)
    name = font.getBestCmap()[ord("8")]
    for strike in font["EBDT"].strikeData:
        strike[name].imageData = bytes(len(strike[name].imageData))
    path = tmp_path / "BlankEight.ttf"
    font.save(str(path))
    drawn = ImageFont.truetype(str(path), 12)
    assert drawn.getmask("8").getbbox() is None and drawn.getmask("0").getbbox() is not None
    assert ImageFont.truetype(str(path), 24).getmask("8").getbbox() is not None  # the outline
    with caplog.at_level(logging.WARNING, logger="synth.fonts"):
        (record,) = scan_fonts([str(path)], [], "08+")
    assert record.status == "ok" and record.covered == frozenset("0+")
    assert (
        f"font file {path} face 0: 1 characters draw no ink (an embedded bitmap, drawn instead "
        "of the outline at its size) ('8' U+0038) at 12 px: counted as missing" in caplog.text
    )


def _colour_layer_font(path: Path, chars: str) -> Path:
    """A COLR font mapping ``chars`` to blank base glyphs whose colour layers draw."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    def glyph(draw: bool):
        pen = TTGlyphPen(None)
        if draw:
            pen.moveTo((100, 0))
            pen.lineTo((100, 700))
            pen.lineTo((500, 700))
            pen.lineTo((500, 0))
            pen.closePath()
        return pen.glyph()

    names = {c: f"u{ord(c):04X}" for c in chars}
    order = [".notdef", *names.values(), *(f"{n}.layer" for n in names.values())]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(order)
    fb.setupCharacterMap({ord(c): n for c, n in names.items()})
    fb.setupGlyf({n: glyph(n.endswith(".layer")) for n in order})
    fb.setupHorizontalMetrics({n: (600, 0) for n in order})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Colour Digits", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    fb.setupCOLR({n: [(f"{n}.layer", 0)] for n in names.values()})
    fb.setupCPAL([[(1.0, 0.0, 0.0, 1.0)]])
    fb.save(str(path))
    return path


def test_a_colour_layer_font_is_one_row_and_said_to_be_one(tmp_path, caplog):
    """A COLR font's base glyphs are blank (its colour layers draw): named as such, not as a
    damaged font, and its one face is one row of the overview, an error, though the tasks whose
    characters it does not map list it as covering nothing."""
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    colour = _colour_layer_font(fonts / "Colour.ttf", "0123456789")
    with caplog.at_level(logging.WARNING):
        [files] = [resolve_font_files([f"{fonts}/*"])]
    tables = []
    for task, chars in {"expr": EXPR, "hanzi": HANZI[:20]}.items():
        tables.append(tmp_path / f"{task}.tsv")
        write_coverage(scan_files(files, "train", chars), {task: chars}, tables[-1])
    merged = tmp_path / "coverage.tsv"
    merge_coverage(tables, merged)
    (row,) = _rows(merged)
    assert row["path"] == str(colour) and row["face"] == "0" and row["status"] == "error"
    assert row["family"] == "Colour Digits"
    assert "colour-layer glyphs only (COLR table), whose base glyphs are blank" in row["reason"]
    with pytest.raises(FontError, match=r"Colour\.ttf cannot be read: .* colour-layer glyphs"):
        scan_fonts([str(colour)], [], EXPR)
    (hanzi,) = scan_fonts([f"{fonts}/*"], [], "中文")  # maps none of these: covers nothing
    assert hanzi.status == "ok" and hanzi.covered == frozenset()


def _collection_with_a_bad_face(path: Path, latin_font: Path) -> Path:
    """A real two-face collection (DejaVu Sans and DejaVu Sans Bold) whose face 1 has a cmap of
    its own with a subtable offset far past the table's end: the directory is sound, face 0 is
    whole, and only reading face 1's cmap finds the damage."""
    from fontTools.ttLib import TTCollection

    collection = TTCollection()
    bold = latin_font.with_name("DejaVuSans-Bold.ttf")
    collection.fonts = [TTFont(str(latin_font)), TTFont(str(bold))]
    collection.save(str(path))
    data = bytearray(path.read_bytes())
    face1 = struct.unpack_from(">I", data, 16)[0]  # 'ttcf', version, count, then the offsets
    for i in range(struct.unpack_from(">H", data, face1 + 4)[0]):
        tag, _, offset, _ = struct.unpack_from(">4sIII", data, face1 + 12 + 16 * i)
        if tag == b"cmap":
            struct.pack_into(">I", data, offset + 8, 0x00FFFFF0)  # its first subtable's offset
    path.write_bytes(data)
    return path


def test_a_collection_keeps_its_good_faces_and_names_the_bad_one(tmp_path, latin_font, caplog):
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    bad = _collection_with_a_bad_face(fonts / "two.ttc", latin_font)
    assert font_file_problem(bad) is None  # only reading face 1's cmap finds the damage
    with caplog.at_level(logging.WARNING):
        records = scan_fonts([f"{fonts}/*.ttc"], [], EXPR)
    good, broken = records
    assert (good.index, good.status, good.family, good.style) == (0, "ok", "DejaVu Sans", "Book")
    assert good.covered == frozenset(EXPR)
    assert (broken.index, broken.status, broken.style) == (1, "error", "Bold")
    assert broken.reason.startswith("TTLibError: cmap subtable offset")
    assert (
        f"font file {bad}: face 1 (DejaVu Sans Bold) cannot be read (TTLibError: cmap subtable "
        "offset" in caplog.text
    )
    assert "left out, the collection's other faces kept" in caplog.text
    out = tmp_path / "coverage.tsv"
    write_coverage(records, {"expr": EXPR}, out)
    assert [(r["face"], r["status"]) for r in _rows(out)] == [("0", "ok"), ("1", "error")]
    assert [f.index for f in read_coverage(out, "expr", EXPR, "train")] == [0]
    # Held out, its good face still holds out a training copy of it (another version, by name).
    train, _ = split_roles([str(latin_font)], [str(bad)], warn=False)
    assert train == []
    # Named explicitly (not a glob), the file is an error naming the face.
    with pytest.raises(
        FontError, match=r"two\.ttc: face 1 \(DejaVu Sans Bold\) cannot be read: TTLibError: cmap"
    ):
        scan_fonts([str(bad)], [], EXPR)


def _not_fonts(latin: bytes, collection: bytes) -> dict[str, tuple[bytes, str]]:
    """Files that land in a fonts folder by mistake: name -> (bytes, what the reason says)."""
    return {
        "empty.ttf": (b"", "0 bytes: too short to be a font"),
        "download.ttf": (b"<!DOCTYPE html><html>404</html>", "starts with b'<!DOCTYP'"),
        "cut.ttf": (latin[:5000], "cut short: table"),
        "header-only.otf": (latin[:40], "cut short inside its table directory (40 bytes)"),
        "cut.ttc": (collection[: len(collection) // 2], "cut short: table"),
        "renamed.ttf": (b"wOF2" + latin[4:200], "a WOFF2 web font"),
        "archive.ttf": (b"PK\x03\x04" + latin[4:200], "starts with b'PK\\x03\\x04"),
    }


def test_a_file_that_is_not_a_font_is_left_out_when_the_patterns_are_resolved(
    tmp_path, latin_font, cjk_font, caplog
):
    """Left out before any font is opened, with the file and the reason named, so the workflow
    never makes it a job's input; named explicitly, it is an error naming it."""
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    (fonts / "Good.ttf").write_bytes(latin_font.read_bytes())
    cases = _not_fonts(latin_font.read_bytes(), cjk_font.read_bytes())
    for name, (data, _) in cases.items():
        (fonts / name).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="synth.fonts.files"):
        found = resolve_font_files([f"{fonts}/*"])
    assert [Path(f.path).name for f in found] == ["Good.ttf"]
    for name, (_, reason) in cases.items():
        line = next(m for m in caplog.messages if f"{fonts / name} " in m)
        assert "is not a font this project reads" in line and reason in line, line
        with pytest.raises(
            FontError, match=rf"{re.escape(name)} is not a font .*{re.escape(reason)}"
        ):
            resolve_font_files([str(fonts / name)])
    assert "matches no font" not in caplog.text
    assert font_file_problem(fonts / "Good.ttf") is None


@pytest.mark.parametrize("config", SHIPPED_FONT_CONFIGS)
def test_every_font_the_shipped_configs_match_passes_the_structure_check(config):
    """No real font is taken for a broken file (every face of every collection checked)."""
    fonts = load_config_file(config)["fonts"]
    patterns = [p for p in fonts["paths"] + fonts["test_fonts"] if not p.startswith("fonts/")]
    files = {p for pattern in patterns for alt in expand_braces(pattern) for p in glob.glob(alt)}
    files = {p for p in files if Path(p).suffix.lower() in (".ttf", ".otf", ".ttc", ".otc")}
    assert len(files) > 20
    assert {p: font_file_problem(p) for p in files if font_file_problem(p)} == {}


def test_missing_explicit_font_is_an_error_and_empty_glob_a_warning(tmp_path, caplog):
    with pytest.raises(FontError, match=r"nothere\.ttf does not exist"):
        resolve_font_files([str(tmp_path / "nothere.ttf")])
    # something there that is no file is said to be what it is, named or matched
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "pipe.ttf")
    (odd / "link.ttf").symlink_to(odd / "gone.ttf")
    for name, why in [
        ("pipe.ttf", r"is not a regular file \(a pipe, a device or a socket\)"),
        ("link.ttf", "is a broken link"),
    ]:
        with pytest.raises(FontError, match=rf"{name} {why}"):
            resolve_font_files([str(odd / name)], key="fonts.paths")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert resolve_font_files([f"{odd}/*.ttf"]) == []
        assert re.search(rf"{name} {why}; skipped", caplog.text)
    with caplog.at_level(logging.WARNING):
        assert resolve_font_files([f"{tmp_path}/*.ttf"]) == []
    assert "matches no font" in caplog.text


def test_brace_alternatives_expand_like_the_shell(tmp_path, latin_font, caplog):
    latin_bytes = latin_font.read_bytes()
    assert expand_braces("a/F-{Light,Bold}.ttf") == ["a/F-Light.ttf", "a/F-Bold.ttf"]
    assert expand_braces("{a,b}{1,2}") == ["a1", "a2", "b1", "b2"]
    assert expand_braces("x{a,{b,c}}y") == ["xay", "xby", "xcy"]
    assert expand_braces("plain{}.ttf") == ["plain{}.ttf"]
    assert expand_braces("open{a,b") == ["open{a,b"]
    for name in ("F-Light.ttf", "F-Bold.ttf", "F-Thin.ttf", "F-Light.txt"):
        (tmp_path / name).write_bytes(latin_bytes)
    found = resolve_font_files([f"{tmp_path}/F-{{Light,Bold,Black}}.{{ttf,txt}}"])
    assert [p.path for p in found] == [str(tmp_path / "F-Bold.ttf"), str(tmp_path / "F-Light.ttf")]
    assert not any(p.explicit for p in found)
    with caplog.at_level(logging.WARNING):
        assert resolve_font_files([f"{tmp_path}/G-{{Light,Bold}}.ttf"]) == []
    assert "matches no font" in caplog.text


def test_a_path_with_brackets_names_its_file_or_folder(tmp_path, latin_font, caplog):
    """Google Fonts' variable fonts are named ``Inter[opsz,wght].ttf``: listed by its path, such
    a file was read as a glob of one character class, matched nothing and was skipped with a
    warning, and a folder named with brackets gave none of its fonts."""
    named = tmp_path / "Inter[opsz,wght].ttf"
    named.write_bytes(latin_font.read_bytes())
    folder = tmp_path / "Fonts [2024]"
    folder.mkdir()
    (folder / "Lato.ttf").write_bytes(latin_font.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert resolve_font_files([str(named)]) == [FontFile(str(named), True)]
        assert resolve_font_files([str(folder)]) == [FontFile(str(folder / "Lato.ttf"), False)]
        # a glob inside such a folder: the folder's name as it is, the rest a glob
        assert resolve_font_files([f"{folder}/*.ttf"]) == [
            FontFile(str(folder / "Lato.ttf"), False)
        ]
        # a glob stays a glob: [opsz,wght] is one of those characters
        assert resolve_font_files([f"{tmp_path}/Inter*.ttf"]) == [FontFile(str(named), False)]
    assert "matches no font" not in caplog.text


def test_held_out_wins_over_training(heldout_font):
    records = scan_fonts([str(heldout_font)], [str(heldout_font)], EXPR)
    assert {r.role for r in records} == {"test"}


def test_a_held_out_font_covers_nothing_for_training(latin_font, cjk_font):
    charset = build_charset("chars", chars="AB啊")
    # listed in both: held out, so the hanzi is covered by no training font
    with pytest.raises(ValueError, match="啊"):
        covered_charset(
            charset, [str(latin_font), str(cjk_font)], (), "error", "line", [str(cjk_font)]
        )
    assert (
        covered_charset(charset, [str(latin_font), str(cjk_font)], (), "error", "line") == charset
    )


def test_a_font_replaced_behind_snakemakes_back_stops_its_shards(tmp_path, latin_font, cjk_font):
    import os
    import shutil

    font = tmp_path / "fonts" / "Mine.ttf"
    font.parent.mkdir()
    shutil.copy(latin_font, font)
    out = tmp_path / "coverage.tsv"
    write_coverage(scan_fonts([str(font)], [], EXPR), {"expr": EXPR}, out)
    assert len(read_coverage(out, "expr", EXPR, "train")) == 1
    # touched, or copied again as it was (cp without -p): the same bytes, the same font; Snakemake
    # compares a small input's content and reruns nothing, so neither may this
    stat = font.stat()
    shutil.copy(latin_font, font)
    os.utime(font, ns=(stat.st_atime_ns + 10**9, stat.st_mtime_ns + 10**9))
    assert len(read_coverage(out, "expr", EXPR, "train")) == 1
    # the same size, other bytes
    data = bytearray(font.read_bytes())
    data[-1] ^= 0xFF
    font.write_bytes(bytes(data))
    with pytest.raises(FontError, match=r"Mine\.ttf changed after"):
        read_coverage(out, "expr", EXPR, "train")
    # another font copied over it, keeping the old mtime (cp -p, an unzipped older download)
    shutil.copy(cjk_font, font)
    os.utime(font, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(FontError, match=r"Mine\.ttf changed after .*--forcerun coverage"):
        read_coverage(out, "expr", EXPR, "train")


# The font files a glob resolves to, in order, each as its path's bytes: argv = pattern.
_RESOLVED = """
import os, sys
from synth.fonts import resolve_font_files
print(" ".join(os.fsencode(f.path).hex() for f in resolve_font_files([sys.argv[1]])))
"""


def test_font_files_are_in_the_order_of_their_paths_bytes_in_any_locale(tmp_path, latin_font):
    """The faces that draw each sample are taken in the order of their files' paths, as bytes:
    Python reads file names in the locale's encoding, and under zh_CN.GB18030 the UTF-8 names
    华文楷体, 华文仿宋 and 微软雅黑 read as other characters, in another order (their shards
    drew other faces for some samples)."""
    gb18030 = made_locale(tmp_path / "locales", "zh_CN", "GB18030")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for name in ("华文楷体.ttf", "华文仿宋.ttf", "微软雅黑.ttf"):
        shutil.copy(latin_font, fonts / name)
    orders = []
    for env in (
        {"LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"},
        gb18030,
    ):
        proc = subprocess.run(
            [sys.executable, "-c", _RESOLVED, "fonts/*.ttf"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        orders.append([bytes.fromhex(h).decode() for h in proc.stdout.split()])
    assert orders[0] == ["fonts/华文仿宋.ttf", "fonts/华文楷体.ttf", "fonts/微软雅黑.ttf"]
    assert orders[1] == orders[0]


def test_fonts_in_subfolders_are_found_and_broken_links_skipped(tmp_path, latin_font, caplog):
    import os
    import shutil

    (tmp_path / "fonts" / "Family").mkdir(parents=True)
    shutil.copy(latin_font, tmp_path / "fonts" / "Family" / "Nested.ttf")
    os.symlink(tmp_path / "nowhere.ttf", tmp_path / "fonts" / "broken.ttf")
    (tmp_path / "fonts" / "Family" / "Web.woff2").write_bytes(b"wOF2")
    (tmp_path / "fonts" / "Family" / "OFL.txt").write_text("licence")
    (tmp_path / "fonts" / "Family" / "Term.pcf.gz").write_bytes(b"\x1f\x8b")
    (tmp_path / "fonts" / "Family" / "Term.otb").write_bytes(b"\x00\x01\x00\x00")
    with caplog.at_level(logging.WARNING):
        found = resolve_font_files([f"{tmp_path}/fonts/*"])
    assert [Path(f.path).name for f in found] == ["Nested.ttf"]
    assert "broken.ttf is a broken link; skipped" in caplog.text
    # a font format that is not read is named; a licence beside the fonts is not
    assert "Web.woff2: .woff2 files are not read (convert it to .ttf or .otf)" in caplog.text
    assert "Term.pcf.gz: .pcf.gz files are not read" in caplog.text
    assert "Term.otb: .otb files are not read" in caplog.text
    assert "OFL.txt" not in caplog.text


def test_one_file_reached_by_two_paths_is_read_once_whatever_the_patterns_order(
    tmp_path, latin_font, cjk_font, caplog
):
    """A system font linked into fonts/ and listed by its own path too: the patterns' order
    chose which path was kept, and the paths' order orders the faces that draw each sample, so
    swapping two patterns changed every shard. Now the file is read once under one path (the
    one named outright, else the first in sorted order), with a note."""
    import os

    (tmp_path / "fonts").mkdir()
    link = tmp_path / "fonts" / latin_font.name
    os.symlink(latin_font, link)
    os.symlink(cjk_font, tmp_path / "fonts" / cjk_font.name)
    patterns = [f"{tmp_path}/fonts/*", str(latin_font.parent / "DejaVuSans.tt[f]")]
    with caplog.at_level(logging.WARNING):
        one = resolve_font_files(patterns)
    other = resolve_font_files(patterns[::-1])
    assert one == other and len(one) == 2
    assert str(link) in [f.path for f in one]  # '/tmp/...' sorts before '/usr/...'
    assert f"font {latin_font} is the same file as {link} (a link, or another spelling" in (
        caplog.text
    )
    # a path named outright is the one kept, wherever it stands in the list
    both = resolve_font_files([str(link), f"{latin_font.parent}/DejaVuSans.tt[f]"])
    assert [(f.path, f.explicit) for f in both] == [(str(link), True)]


def test_uncovered_characters_error_or_drop(latin_font, cjk_font):
    charset = build_charset("chars", chars="AB啊座")
    latin = [r for r in scan_fonts([str(latin_font)], [], charset) if r.status == "ok"]
    with pytest.raises(ValueError, match=r"^line: 2 characters covered .*: 啊 \(U\+554A\) 座"):
        apply_uncovered_policy(charset, latin, "error", "line")
    with pytest.raises(ValueError, match=r"1 character covered .*: 啊 \(U\+554A\) \(add"):
        apply_uncovered_policy(charset[:3], latin, "error", "line")
    assert apply_uncovered_policy(charset, latin, "drop", "line") == ["A", "B"]
    both = [r for r in scan_fonts([str(latin_font), str(cjk_font)], [], charset)]
    assert apply_uncovered_policy(charset, both, "error", "line") == charset


def test_a_character_missing_through_fonts_misdrawn_is_said_so(caplog):
    """When the only face that draws a character draws it wrongly (``fonts.misdrawn``), the
    uncovered-characters error and warning say that misdrawn counted it missing, not only that
    no font has it."""
    misdrawn = {"^cwTeXMing$": "沽"}
    records = scan_fonts([str(CWTEX / "cwming.ttf")], [], list("沽瀑"), (), misdrawn)
    with pytest.raises(ValueError, match=r"沽 \(U\+6CBD\) \(沽 counted missing where fonts\.mis"):
        apply_uncovered_policy(list("沽瀑"), records, "error", "hanzi", misdrawn)
    with caplog.at_level(logging.WARNING):
        assert apply_uncovered_policy(list("沽瀑"), records, "drop", "hanzi", misdrawn) == ["瀑"]
    assert "counted missing where fonts.misdrawn names them" in caplog.text
    with pytest.raises(ValueError) as plain:  # misdrawn not given: no such words
        apply_uncovered_policy(list("沽瀑"), records, "error", "hanzi")
    assert "misdrawn" not in str(plain.value)


def test_every_face_of_the_cjk_fonts_gets_a_record(cjk_fonts):
    # Three files, a collection among them: one record per face, each covering most of the
    # line charset (how long a scan takes is no test's business: bench/ measures speed).
    from fontTools.ttLib import TTCollection

    chars = build_charset("line")
    records = scan_fonts([str(p) for p in cjk_fonts], [], chars)
    faces = sum(len(TTCollection(str(p)).fonts) if p.suffix == ".ttc" else 1 for p in cjk_fonts)
    assert len(records) == faces >= 12
    assert all(r.status == "ok" and len(r.covered) > len(chars) // 2 for r in records), [
        (r.path, r.index, r.status, len(r.covered)) for r in records
    ]


@pytest.mark.parametrize("config", SHIPPED_FONT_CONFIGS)
def test_every_default_font_pattern_finds_fonts_after_setup(config):
    # The configs and workflow/setup/install_system.sh stay in step: every system font the
    # shipped configs name is installed by the set-up (fonts/ is the user's own folder).
    fonts = load_config_file(config)["fonts"]
    patterns = [p for p in fonts["paths"] + fonts["test_fonts"] if not p.startswith("fonts/")]
    empty = [p for p in patterns if not resolve_font_files([p])]
    assert not empty, f"{config}: no font file matches {empty}; see install_system.sh"


@pytest.mark.parametrize("config", SHIPPED_FONT_CONFIGS)
def test_the_shipped_configs_keep_the_simplified_chinese_faces_of_regional_collections(config):
    # Noto CJK's collections hold a JP, KR, SC, TC and HK face of each design, one cmap drawing
    # some characters differently, and AR PL's a CN, HK and TW face: fonts.exclude_families
    # keeps the simplified (SC, CN) faces alone, one at least of each collection, and keeps
    # TW-Kai, whose family name starts with a region code.
    fonts = load_config_file(config)["fonts"]
    patterns = [re.compile(p) for p in fonts["exclude_families"]]
    region = re.compile(r"\s(JP|KR|SC|TC|HK|TW|CN)\b")
    patterns_of = [p for p in fonts["paths"] + fonts["test_fonts"] if not p.startswith("fonts/")]
    regional = 0
    for f in resolve_font_files(patterns_of, warn=False):
        with open(f.path, "rb") as file:
            if file.read(4) != b"ttcf":
                name = TTFont(f.path, lazy=True)["name"]
                family = name.getBestFamilyName()
                assert excluded_by(patterns, family, name.getBestSubFamilyName()) is None, family
                continue
        faces = [
            (face["name"].getBestFamilyName(), face["name"].getBestSubFamilyName())
            for face in TTCollection(f.path, lazy=True).fonts
        ]
        kept = {family for family, style in faces if not excluded_by(patterns, family, style)}
        codes = {m.group(1) for family, _ in faces if (m := region.search(family))}
        if not codes:
            continue
        regional += 1
        assert kept, f"{f.path}: every face left out"
        assert all(region.search(family).group(1) in ("SC", "CN") for family in kept), (
            f.path,
            kept,
        )
    assert regional >= 3


def test_a_face_that_draws_none_of_a_charset_is_named(cjk_font, latin_font, caplog):
    hanzi = list("中文识别")
    faces = [r for r in scan_fonts([str(cjk_font), str(latin_font)], [], hanzi) if r.status == "ok"]
    with caplog.at_level("INFO", logger="synth.fonts"):
        assert apply_uncovered_policy(hanzi, faces, "error", "tasks.hanzi.charset") == hanzi
    assert (
        f"tasks.hanzi.charset: 1 training face draws none of its characters, so no sample of "
        f"the task: DejaVu Sans Book ({latin_font})" in caplog.text
    )


def test_a_missing_explicit_font_names_the_key_that_lists_it(tmp_path, latin_font):
    """A held-out file that does not exist is named under fonts.test_fonts, a training one under
    fonts.paths: the user edits one list, not both (the workflow names the file that set it)."""
    real = str(latin_font)
    with pytest.raises(FontError, match=r"nothere\.ttf does not exist \(fonts\.test_fonts\)") as e:
        split_roles([real], [str(tmp_path / "nothere.ttf")])
    assert e.value.key == "fonts.test_fonts"
    with pytest.raises(FontError, match=r"nothere\.ttf does not exist \(fonts\.paths\)") as e:
        split_roles([str(tmp_path / "nothere.ttf")], [real])
    assert e.value.key == "fonts.paths"
    (tmp_path / "page.ttf").write_text("<html>not a font</html>")
    with pytest.raises(FontError, match=r"page\.ttf is not a font .*\(fonts\.test_fonts\)"):
        split_roles([real], [str(tmp_path / "page.ttf")])


def test_font_files_come_in_one_order_whatever_the_file_system_lists(
    tmp_path, latin_font, monkeypatch
):
    """Shards are the same bytes on every machine: the font list (hence each shard's faces and
    draws) does not follow the order a directory is listed in, nor the config's order."""
    latin_bytes = latin_font.read_bytes()
    for name in ("b.ttf", "a.ttf", "sub/d.ttf", "sub/c.ttf", "e.otf"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(latin_bytes)
    patterns = [str(tmp_path / "*.ttf"), str(tmp_path / "sub"), str(tmp_path / "e.otf")]
    listed = [p.path for p in resolve_font_files(patterns)]
    assert listed == sorted(listed) and len(listed) == 5

    real_glob, real_rglob = glob.glob, Path.rglob
    monkeypatch.setattr(glob, "glob", lambda *a, **k: real_glob(*a, **k)[::-1])
    monkeypatch.setattr(Path, "rglob", lambda self, p: list(real_rglob(self, p))[::-1])
    assert [p.path for p in resolve_font_files(patterns[::-1])] == listed


def test_a_bitmap_only_font_is_said_to_be_one(tmp_path, latin_font):
    # An sfnt of embedded bitmaps and no outlines (as X11 fonts converted to .ttf are): "neither
    # a glyf nor a CFF table" did not say what the file is.
    from fontTools.ttLib.tables.DefaultTable import DefaultTable

    font = TTFont(latin_font)
    for tag in ("glyf", "loca"):
        del font[tag]
    for tag in ("EBLC", "EBDT"):  # present, as the table directory tells (their data not read)
        font[tag] = DefaultTable(tag)
        font[tag].data = b"\x00\x02\x00\x00"
    bitmap = tmp_path / "bitmap.ttf"
    font.save(bitmap)
    with pytest.raises(FontError, match=r"bitmap\.ttf cannot be read: .*bitmap glyphs only \(EBDT"):
        scan_fonts([str(bitmap)], [], EXPR)
