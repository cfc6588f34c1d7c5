"""Charsets: the ordered sets of characters a task's labels are drawn from.

A charset is an artefact of the DAG (``results/charsets/{task}.txt``, one character per line),
built here from codecs and user files (optionally ranked by a word-frequency corpus, the line
task's), never a literal copied into model code. Every character is
NFKC-normalised, like every label: a character whose NFKC form is several characters (``…`` ->
``...``) contributes those characters, and a full-width form (``，`` U+FF0C) becomes its canonical
form (``,``). User text (``chars`` and files) is normalised as a whole before it is split, so a
decomposed letter (NFD, as macOS and some editors write ``É`` as ``E`` + U+0301) is one character,
as it is in a label. Order is kept (first occurrence wins), so class indices are stable.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from synth.atomic import write_text_atomic

log = logging.getLogger(__name__)

DIGITS = "0123456789"
ASCII_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EXPR_CHARS = "0123456789+-*()"
# Common Chinese punctuation, then the printable ASCII punctuation (before NFKC).
CJK_PUNCT = "，。、；：？！“”‘’（）《》—…·"
ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
SOURCES = ("gb2312_level1", "gb2312", "line", "chars")
SPACE = " "  # the one whitespace a charset can hold (`build_charset`'s ``space``)
SPACE_HINT = "a charset holds the space only when its task asks for it: tasks.line.charset.space"
_LISTED = 10  # characters a message names; the rest are counted
_CATEGORY_C = {
    "Cc": "control",
    "Cf": "format",
    "Co": "private use",
    "Cs": "surrogate",
    "Cn": f"unassigned in this Python's Unicode {unicodedata.unidata_version}",
}


def nfkc(text: str) -> str:
    """The one label normalisation of the project (NFKC, nothing dropped)."""
    return unicodedata.normalize("NFKC", text)


def gb2312_hanzi(level1_only: bool = True) -> list[str]:
    """GB2312 hanzi in code order, decoded with Python's gb2312 codec.

    Level 1 is rows 0xB0-0xD7 (3755 characters: 0xD7FA-0xD7FE are unassigned), level 2 rows
    0xD8-0xF7 (3008 more, 6763 in all).

    Args:
        level1_only: only the 3755 frequent characters (first 啊, last 座).

    Returns:
        The characters, one string each.
    """
    last_row = 0xD7 if level1_only else 0xF7
    chars = []
    for hi in range(0xB0, last_row + 1):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue  # the five unassigned cells at the end of row 0xD7
    return chars


def unique_nfkc(chars: Iterable[str]) -> list[str]:
    """NFKC-normalise, split into single characters, drop whitespace and duplicates, keep order.

    Each item is normalised alone, so items are whole characters (a source's); text, where a
    letter and its combining mark may be two code points, goes through :func:`text_chars`.
    """
    out: dict[str, None] = {}
    for item in chars:
        for c in nfkc(item):
            if not c.isspace() and unicodedata.category(c)[0] != "C":
                out.setdefault(c, None)
    return list(out)


def compatibility_forms(text: str) -> list[str]:
    """What NFKC makes of ``text``'s characters that it replaces by others, each once, in order:
    ``'²' (U+00B2) as '2'``, ``'ﬁ' (U+FB01) as 'fi'``, a full-width ``'，'`` as ``','``. Composing
    a letter and its mark (NFC's work too) and whitespace are not listed."""
    out = []
    # Each distinct character once: a charset file may be a whole corpus, read at every start.
    for c in dict.fromkeys(unicodedata.normalize("NFC", text)):
        k = unicodedata.normalize("NFKC", c)
        if k != c and not c.isspace():
            out.append(f"{c!r} (U+{ord(c):04X}) as {k!r}")
    return out


def code_points(text: str) -> str:
    """``'q̃' (U+0071 U+0303)``: a character or sequence as messages name it (invisible and
    confusable characters are common in charset files)."""
    return f"{text!r} ({' '.join(f'U+{ord(c):04X}' for c in text)})"


def listing(items: Sequence[str]) -> str:
    """The first :data:`_LISTED` items, then how many more."""
    more = len(items) - _LISTED
    return ", ".join(items[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def text_chars(text: str, where: str, lines: bool = False) -> list[str]:
    """The characters of a charset's user text (``chars``, a file), in order, each once.

    The text is NFKC-normalised as a whole, then split into code points: normalising code points
    one by one would keep a decomposed ``É`` (``E`` + U+0301) as two classes. Whitespace is left
    out, and so is Unicode category C (control, format, private-use, unassigned: nothing a font
    draws or a label holds), with a warning naming each by code point. A character that occurs
    twice (after NFKC) is kept once, with a warning naming it (in ``chars``), or a note at INFO
    (in a file, which may be running text: a line corpus repeats its characters by nature).

    Args:
        text: The text.
        where: What it is, for messages (``charset chars``, ``charset file x.txt``).
        lines: Name line numbers in messages (a file's text).

    Raises:
        ValueError: A combining mark is left after NFKC (names each, with ``where``): a letter
            with a mark that has no precomposed form (``q̃``), or a lone mark.
    """
    out: dict[str, int] = {}  # character -> occurrences
    marked: list[str] = []
    dropped: dict[str, int] = {}  # category C character -> its first line
    # Lines as an editor counts them, at "\n" alone (a "\r" before it is whitespace, left out):
    # str.splitlines also splits at form feeds (text taken from a PDF), U+0085 and U+2028.
    for n, line in enumerate(nfkc(text).split("\n"), 1):
        i = 0
        while i < len(line):
            # A code point and the combining marks after it; NFKC has composed every pair
            # that has a single code point.
            j = i + 1
            while j < len(line) and unicodedata.category(line[j])[0] == "M":
                j += 1
            cluster, i = line[i:j], j
            if len(cluster) > 1 or unicodedata.category(cluster)[0] == "M":
                marked.append((f"line {n}: " if lines else "") + code_points(cluster))
            elif unicodedata.category(cluster)[0] == "C" and not cluster.isspace():
                dropped.setdefault(cluster, n)
            elif not cluster.isspace():
                out[cluster] = out.get(cluster, 0) + 1
    if marked:
        # Refused rather than split: a charset is a list of single code points (a class each,
        # models.families), and the samplers draw classes independently, so a combining mark
        # of its own would be drawn alone or on any other character (a hanzi with a tilde), and
        # the base letter alone is not what the text asked for.
        raise ValueError(
            f"{where}: a combining mark stays separate after NFKC (no single code point holds "
            f"it with its letter): {listing(marked)}; a charset holds single code points, one "
            "class each, and a class of a mark would be drawn alone: leave these out"
        )
    if dropped:
        named = [
            f"U+{ord(c):04X} ({unicodedata.category(c)}, {_CATEGORY_C[unicodedata.category(c)]}"
            + (f", line {n})" if lines else ")")
            for c, n in dropped.items()
        ]
        log.warning(
            "%s: %d character(s) left out (a charset holds no control, format, private-use or "
            "unassigned character): %s",
            where,
            len(named),
            listing(named),
        )
    if changed := compatibility_forms(text):
        # A class is the NFKC form: the model reads '²' images out as '2'.
        log.log(
            logging.INFO if lines else logging.WARNING,
            "%s: NFKC reads %s (its classes are those forms)",
            where,
            listing(changed),
        )
    repeated = [code_points(c) for c, k in out.items() if k > 1]
    if repeated:
        # A warning in chars (a typo in the config); in a file, which may be running text (the
        # line corpus added to the charset) and repeats its characters by nature, a note.
        log.log(
            logging.INFO if lines else logging.WARNING,
            "%s: %s repeated after NFKC; each kept once",
            where,
            listing(repeated),
        )
    return list(out)


def jieba_dict_path() -> str:
    """The word-frequency dictionary shipped with the installed jieba package (``word freq
    tag``): the line task's corpus."""
    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")


def is_wide(ch: str) -> bool:
    """A character written without spaces around it (CJK ideographs, kana, full-width forms)."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def label_spaces(text: str) -> str:
    """A label's whitespace as every line label holds it (the synthetic ones, `synth.text`, and
    Tesseract's readings): each run of whitespace one space, none at either end, none next to a
    wide character (`drop_spaces_by_wide`). ``text`` is a label (NFKC)."""
    return drop_spaces_by_wide(SPACE.join(text.split()))


def drop_spaces_by_wide(text: str, forms: bool = False) -> str:
    """``text`` without the spaces next to a wide character (`is_wide`): CJK typesetting puts
    none between words, so a line label keeps a space only between words of an alphabet, and a
    Tesseract reading is held to the same rule. Memory: about one copy of ``text``.

    With ``forms``, ``text`` is text as drawn (a line corpus's own characters, `synth.text`),
    and each neighbour of a space counts as its NFKC form, as in the label: a full-width ``，``
    before a Latin word keeps the space, as the label's ``,`` does.
    """
    out, last = [], 0
    i = text.find(SPACE)
    while i >= 0:
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if forms:
            before, after = nfkc(before)[-1:], nfkc(after)[:1]
        if (before and is_wide(before)) or (after and is_wide(after)):
            out.append(text[last:i])
            last = i + 1
        i = text.find(SPACE, i + 1)
    out.append(text[last:])
    return "".join(out)


def is_hanzi(c: str) -> bool:
    """A CJK unified ideograph of the basic block (every GB2312 hanzi is one)."""
    return "\u4e00" <= c <= "\u9fff"


def read_corpus(path: str | os.PathLike) -> list[tuple[str, float]]:
    """The ``(word, frequency)`` pairs of a word-frequency corpus (``word freq [tag]`` lines, as
    in jieba's dictionary), words NFKC-normalised, in file order; blank lines are skipped.

    Raises:
        FileNotFoundError: No such file (names it).
        ValueError: A line without a numeric frequency (names the file and the line number).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"corpus {path} does not exist") from None
    entries = []
    for n, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            entries.append((nfkc(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            raise ValueError(
                f"corpus {path} line {n}: expected 'word frequency [tag]', got {line.strip()!r}"
            ) from None
    return entries


def corpus_char_frequencies(path: str | os.PathLike) -> dict[str, float]:
    """How often each character occurs in a word-frequency corpus: the sum of the frequencies
    of the words it occurs in, once per occurrence (see :func:`read_corpus`)."""
    freq: dict[str, float] = {}
    for word, weight in read_corpus(path):
        for c in word:
            freq[c] = freq.get(c, 0.0) + weight
    return freq


def most_frequent_hanzi(
    chars: Sequence[str], n: int, corpus: str | os.PathLike | None = None
) -> list[str]:
    """Keep the ``n`` hanzi of ``chars`` that occur most in ``corpus`` (default jieba's
    dictionary) and every character that is not a hanzi, in the order of ``chars``.

    A CPU-sized line model learns a thousand frequent characters (88% of the corpus's running
    text) far sooner than all 3755 of GB2312 level 1. Ties keep the order of ``chars``.
    """
    freq = corpus_char_frequencies(corpus or jieba_dict_path())
    hanzi = [c for c in chars if is_hanzi(c)]
    ranked = sorted(range(len(hanzi)), key=lambda i: -freq.get(hanzi[i], 0.0))
    keep = {hanzi[i] for i in ranked[:n]}
    return [c for c in chars if not is_hanzi(c) or c in keep]


def read_chars_file(path: str | os.PathLike, where: str = "charset") -> list[str]:
    """Characters of a UTF-8 file (one or more per line; whitespace, blank lines and a BOM
    ignored), in order, each once (see :func:`text_chars`). Messages name it as
    ``{where} file {path}``.

    Raises:
        FileNotFoundError: No such file (names it).
        ValueError: A folder, not UTF-8, or a combining mark left after NFKC (names the file
            and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{where} file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{where} file {path} is a folder, not a text file") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{where} file {path} is not UTF-8: {e}") from None
    return text_chars(text, f"{where} file {path}", lines=True)


def extra_chars(
    chars: str = "", files: Sequence[str | os.PathLike] = (), where: str = "charset"
) -> list[str]:
    """The characters a charset's own text adds to its source: ``chars``, then each file's (see
    :func:`text_chars`), not yet made unique across them.

    This part alone warns (whitespace, control and unassigned characters left out, a character
    repeated in ``chars``; one repeated in a file is a note at INFO) or fails (a lone combining
    mark), so the workflow runs it for every task when it starts, naming the task
    (``where = "tasks.<task>.charset"``): its warnings print once per run, while the jobs that
    build the charset keep theirs in their logs (`synth.joblog`).

    Raises:
        FileNotFoundError, ValueError: As :func:`read_chars_file` and :func:`text_chars`.
    """
    spaces = sorted({c for c in chars if c.isspace()})
    if spaces:
        log.warning(
            "%s chars: whitespace %s left out (a charset holds none)",
            where,
            listing([code_points(c) for c in spaces]),
        )
    extra = text_chars(chars, f"{where} chars")
    for f in files:
        extra += read_chars_file(f, where)
    return extra


def build_charset(
    source: str = "chars",
    chars: str = "",
    files: Sequence[str | os.PathLike] = (),
    limit: int = 0,
    most_frequent: int = 0,
    corpus: str | os.PathLike | None = None,
    space: bool = False,
) -> list[str]:
    """Build a task's charset.

    Args:
        source: ``gb2312_level1`` (3755 hanzi), ``gb2312`` (6763), ``line`` (level-1 hanzi, digits,
            ASCII letters, Chinese and ASCII punctuation) or ``chars`` (only ``chars`` and
            ``files``).
        chars: extra characters (for ``chars``, the whole set).
        files: UTF-8 files whose characters are added.
        limit: keep only the first ``limit`` characters of the source (0 = all); ``chars`` and
            ``files`` are added after, whole (``chars``, whose source is empty, refuses it).
        most_frequent: keep only the source's ``most_frequent`` hanzi that occur most in
            ``corpus`` (0 = all; see :func:`most_frequent_hanzi`); ``chars`` and ``files`` are
            added after, whole.
        corpus: a ``word freq [tag]`` file for ``most_frequent``; default jieba's dictionary.
        space: add the space (U+0020) as the last character, so that line labels keep the
            spaces between words (PaddleOCR's ``use_space_char``); whitespace is otherwise left
            out of every charset.

    Returns:
        The NFKC-normalised characters, unique, in order.

    Raises:
        ValueError: An unknown source, an empty charset, a ``limit`` on ``chars``, or a
            combining mark in ``chars`` or ``files`` that NFKC leaves on its own (see
            :func:`text_chars`).
    """
    if source == "gb2312_level1":
        base = gb2312_hanzi(True)
    elif source == "gb2312":
        base = gb2312_hanzi(False)
    elif source == "line":
        base = gb2312_hanzi(True) + list(DIGITS + ASCII_LETTERS + CJK_PUNCT + ASCII_PUNCT)
    elif source == "chars":
        base = []
    else:
        raise ValueError(f"unknown charset source {source!r}; valid: {', '.join(SOURCES)}")
    if limit and source == "chars":
        raise ValueError(
            "charset limit shrinks the source, and source 'chars' has none (its characters are "
            "all chars): set limit: 0"
        )
    if most_frequent:
        base = most_frequent_hanzi(base, most_frequent, corpus)
    base = unique_nfkc(base)
    if limit:
        base = base[:limit]
    out = list(dict.fromkeys(base + extra_chars(chars, files)))
    if not out:
        raise ValueError(f"charset (source={source!r}) is empty")
    return [*out, SPACE] if space else out


def write_charset(chars: Sequence[str], path: str | os.PathLike) -> None:
    """Write one character per line, atomically."""
    write_text_atomic(path, "".join(c + "\n" for c in chars))


class CharsetError(ValueError):
    """A charset file that is not one (its path and what is wrong named)."""


def read_charset(path: str | os.PathLike) -> list[str]:
    """Read a charset file written by :func:`write_charset` (one character per line), or by an
    editor: a byte-order mark and Windows line ends (CRLF) are taken as the config's
    ``charset.files`` take them, not as characters.

    Raises:
        CharsetError: The file is not UTF-8, a line holds other than one character, a character
            comes twice, or there is none (a model of it would have no class, or two of one).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        lines = text.replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError as e:
        raise CharsetError(f"charset {path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    chars = [line for line in lines if line != ""]
    bad = [code_points(c) for c in chars if len(c) != 1]
    if bad:
        raise CharsetError(
            f"charset {path}: lines must hold one character each, got {listing(bad)}"
        )
    if not chars:
        raise CharsetError(f"charset {path}: empty (no character)")
    twice = [code_points(c) for c in dict.fromkeys(chars) if chars.count(c) > 1]
    if twice:
        raise CharsetError(f"charset {path}: {listing(twice)} more than once")
    return chars
