"""Charsets: GB2312 sizes and order, the line set, NFKC handling, files, limits."""

from __future__ import annotations

import logging
import re
import unicodedata

import pytest

from synth.charset import (
    CharsetError,
    build_charset,
    gb2312_hanzi,
    is_hanzi,
    read_charset,
    unique_nfkc,
    write_charset,
)


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
    with pytest.raises(
        ValueError,
        match=r"source 'chars' has none \(its characters are all chars\): set limit: 0",
    ):
        build_charset("chars", chars="0123456789", limit=5)
    # The limit shrinks the source; what chars and files add is kept whole.
    assert build_charset("gb2312_level1", chars="龘", files=[extra], limit=3) == [
        *gb2312_hanzi()[:3],
        "龘",
        "鑫",
        "Ω",
        "1",
        "2",
    ]


def test_whitespace_and_repeats_in_chars_are_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert build_charset("chars", chars="AB A\tC") == ["A", "B", "C"]
    assert "whitespace '\\t' (U+0009), ' ' (U+0020) left out" in caplog.text
    assert "'A' (U+0041) repeated after NFKC; each kept once" in caplog.text


def test_repeats_in_a_file_are_kept_once_with_a_note_naming_the_file(tmp_path, caplog):
    path = tmp_path / "extra.txt"
    # A BOM and blank lines are fine; "，" is "," after NFKC, so "," is there twice.
    path.write_text("\ufeffa b\n\n,\nb\n，\n\n", encoding="utf-8")
    with caplog.at_level(logging.INFO):
        assert build_charset("chars", files=[path]) == ["a", "b", ","]
    # INFO, not a warning: a file may be running text (a line corpus), which repeats by nature
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "INFO",
            f"charset file {path}: NFKC reads '，' (U+FF0C) as ',' (its classes are those forms)",
        ),
        (
            "INFO",
            f"charset file {path}: 'b' (U+0062), ',' (U+002C) repeated after NFKC; each kept once",
        ),
    ]
    caplog.clear()
    path.write_text("\ufeffa b\n\n,\n\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert build_charset("chars", files=[path]) == ["a", "b", ","]
    assert caplog.records == []


def test_charset_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="gb2313"):
        build_charset("gb2313")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        build_charset("chars", files=[tmp_path / "nope.txt"])
    (tmp_path / "mychars").mkdir()
    with pytest.raises(ValueError, match=r"file \S*mychars is a folder, not a text file"):
        build_charset("chars", files=[tmp_path / "mychars"])
    with pytest.raises(ValueError, match=r"^charset \(source='chars'\) is empty$"):
        build_charset("chars")


def test_charset_file_round_trip(tmp_path):
    chars = build_charset("line")
    path = tmp_path / "sub" / "line.txt"
    write_charset(chars, path)
    assert read_charset(path) == chars
    assert path.read_text(encoding="utf-8").count("\n") == len(chars)
    assert [p.name for p in path.parent.iterdir()] == ["line.txt"]  # no temporary left behind


def test_a_charset_file_an_editor_saved_reads_as_its_characters(tmp_path):
    # Notepad's UTF-8: a byte-order mark and CRLF line ends, refused as "got '\ufeff0'", "'1\r'".
    # A space line (the line charset's last class) stays one.
    path = tmp_path / "mine.txt"
    path.write_bytes("\ufeff0\r\n1\r\n \r\n啊\r\n".encode())
    assert read_charset(path) == ["0", "1", " ", "啊"]


def test_a_charset_line_of_more_than_one_character_is_named_by_code_point(tmp_path):
    path = tmp_path / "old.txt"
    path.write_text("a\nq\u0303\nb\u200b\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_charset(path)
    assert str(e.value) == (
        f"charset {path}: lines must hold one character each, "
        "got 'q\u0303' (U+0071 U+0303), 'b\\u200b' (U+0062 U+200B)"
    )


def test_an_empty_charset_or_one_with_a_character_twice_is_named(tmp_path):
    """Training on either raised a bare ValueError (a traceback from the command); pack and
    bench_tesseract took them silently (an empty one meant no whitelist)."""
    path = tmp_path / "charset.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(CharsetError, match=rf"^charset {re.escape(str(path))}: empty"):
        read_charset(path)
    path.write_text("啊\n一\n啊\n", encoding="utf-8")
    with pytest.raises(CharsetError) as e:
        read_charset(path)
    assert str(e.value) == f"charset {path}: '啊' (U+554A) more than once"


def test_most_frequent_keeps_the_corpus_commonest_hanzi_in_source_order(tmp_path):
    corpus = tmp_path / "dict.txt"
    # 的 occurs in two words (100 + 7), 国 in one (50), 啊 once (3): the two commonest are 的, 国.
    corpus.write_text("的 100 u\n中国 50 ns\n目的 7 n\n啊 3 e\nABC 999 eng\n", encoding="utf-8")
    chars = build_charset("line", most_frequent=2, corpus=corpus)
    hanzi = [c for c in chars if is_hanzi(c)]
    assert hanzi == ["的", "国"]  # the source's (GB2312 code) order, not the frequency order
    # Digits, Latin and punctuation stay whole, and extra chars are added after the ranking.
    assert "0" in chars and "Z" in chars and "。" in chars
    assert "啊" in build_charset("line", chars="啊", most_frequent=2, corpus=corpus)


def test_most_frequent_with_jieba_covers_the_common_characters():
    chars = build_charset("line", most_frequent=1000)
    hanzi = [c for c in chars if is_hanzi(c)]
    assert len(hanzi) == 1000
    for c in "的一是不了人我在有他这中大来上国":
        assert c in hanzi, c
    assert len(chars) == 1000 + len(build_charset("line")) - 3755


def test_most_frequent_corpus_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("的 100\n国 lots\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt line 2"):
        build_charset("line", most_frequent=10, corpus=bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        build_charset("line", most_frequent=10, corpus=tmp_path / "missing.txt")


def test_decomposed_text_gives_the_composed_characters(tmp_path):
    # NFD, as macOS and some editors write it: each letter is a base and a combining mark.
    nfd = unicodedata.normalize("NFD", "ÀÉÎÕÜÇ\nÑ\n")
    assert len(nfd) == 16
    path = tmp_path / "accents.txt"
    path.write_text(nfd, encoding="utf-8")
    expected = [*"ÀÉÎÕÜÇÑ"]
    assert build_charset("chars", files=[path]) == expected
    assert build_charset("chars", chars=nfd.replace("\n", "")) == expected


def test_a_combining_mark_without_a_composed_form_is_refused_naming_it(tmp_path):
    # q + U+0303 has no precomposed character: a class for U+0303 would be drawn on its own.
    path = tmp_path / "marks.txt"
    path.write_text("a\nq\u0303\n\u0301\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"marks\.txt") as e:
        build_charset("chars", files=[path])
    assert "line 2: 'q\u0303' (U+0071 U+0303)" in str(e.value)
    assert "line 3: '\u0301' (U+0301)" in str(e.value)
    with pytest.raises(ValueError, match=r"charset chars: .*\(U\+0071 U\+0303\)"):
        build_charset("chars", chars="aq\u0303")
    # Lines counted as an editor counts them: a form feed (text from a PDF), NEL and U+2028
    # inside a line, and CRLF line ends, move no line number on.
    path.write_bytes("page one\fpage two\r\nline\u0085two\u2028too\r\nq\u0303\r\n".encode())
    with pytest.raises(ValueError) as e:
        build_charset("chars", files=[path])
    assert "line 3: 'q\u0303' (U+0071 U+0303)" in str(e.value), str(e.value)


def test_control_format_private_and_unassigned_characters_are_left_out_with_a_warning(
    tmp_path, caplog
):
    # U+0378 is unassigned in every Unicode version; U+E000 private use; U+200B a format
    # character (zero width space); U+0007 a control character.
    path = tmp_path / "odd.txt"
    path.write_text("a\ue000\nb\u200b\n\u0378\u0007\ue000\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert build_charset("chars", chars="x\ue001", files=[path]) == ["x", "a", "b"]
    chars_warning, file_warning = (
        r.getMessage() for r in caplog.records if "left out" in r.getMessage()
    )
    assert file_warning.startswith(f"charset file {path}: 4 character(s) left out")
    for entry in (
        "U+E000 (Co, private use, line 1)",
        "U+200B (Cf, format, line 2)",
        "U+0378 (Cn, unassigned in this Python's Unicode",
        "U+0007 (Cc, control, line 3)",
    ):
        assert entry in file_warning, entry
    assert chars_warning == (
        "charset chars: 1 character(s) left out (a charset holds no control, format, "
        "private-use or unassigned character): U+E001 (Co, private use)"
    )


def test_a_long_list_of_left_out_characters_is_cut(caplog):
    with caplog.at_level(logging.WARNING):
        build_charset("chars", chars="a" + "".join(map(chr, range(0xE000, 0xE00C))))
    assert "12 character(s) left out" in caplog.text
    assert "U+E009 (Co, private use) and 2 more" in caplog.text
    assert "U+E00A" not in caplog.text


def test_characters_nfkc_replaces_are_named_where_the_user_typed_them(tmp_path, caplog):
    """``chars: "x²ﬁ"`` gives the classes x, 2, f, i: a warning says what NFKC made of each
    (composing É from E + U+0301 is not a replacement and is not named)."""
    with caplog.at_level(logging.WARNING):
        assert build_charset("chars", chars="x²ﬁÉ") == ["x", "2", "f", "i", "É"]
    assert caplog.messages == [
        "charset chars: NFKC reads '²' (U+00B2) as '2', 'ﬁ' (U+FB01) as 'fi' "
        "(its classes are those forms)"
    ]
