"""Charsets: GB2312 sizes and order, the line set, NFKC handling, files, limits."""

from __future__ import annotations

import unicodedata

import pytest

from synth.charset import build_charset, gb2312_hanzi, read_charset, unique_nfkc, write_charset


def test_gb2312_level1_is_3755_in_code_order():
    chars = gb2312_hanzi(level1_only=True)
    assert len(chars) == 3755
    assert chars[0] == "啊"
    assert chars[-1] == "座"
    assert len(set(chars)) == 3755
    codes = [c.encode("gb2312") for c in chars]
    assert codes == sorted(codes)
    assert all(0xB0 <= b[0] <= 0xD7 for b in codes)


def test_gb2312_full_is_6763():
    chars = build_charset("gb2312")
    assert len(chars) == 6763
    assert chars[:3755] == gb2312_hanzi(True)


def test_line_charset_has_hanzi_digits_latin_punctuation_all_nfkc():
    chars = build_charset("line")
    assert chars[:3755] == gb2312_hanzi(True)
    for c in "0123456789AZaz。、《》“”—·,;:?!()":
        assert c in chars, c
    # Full-width forms are folded by NFKC: the label of "，" is ",", so the set holds ",".
    assert "，" not in chars and "（" not in chars
    assert all(unicodedata.normalize("NFKC", c) == c for c in chars)
    assert len(chars) == len(set(chars))


def test_nfkc_splits_and_dedups_keeping_order():
    assert unique_nfkc(["ＡＢ", "A", "…", " \t", "x"]) == ["A", "B", ".", "x"]


def test_chars_files_and_limit(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("鑫 Ω\n１２\n", encoding="utf-8")
    chars = build_charset("chars", chars="0123456789+-*()", files=[extra])
    assert chars == [*"0123456789+-*()", "鑫", "Ω"]
    assert build_charset("gb2312_level1", limit=10) == gb2312_hanzi()[:10]


def test_charset_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="gb2313"):
        build_charset("gb2313")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        build_charset("chars", files=[tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match="empty"):
        build_charset("chars")


def test_charset_file_round_trip(tmp_path):
    chars = build_charset("line")
    path = tmp_path / "sub" / "line.txt"
    write_charset(chars, path)
    assert read_charset(path) == chars
    assert path.read_text(encoding="utf-8").count("\n") == len(chars)
    assert [p.name for p in path.parent.iterdir()] == ["line.txt"]  # no temporary left behind
