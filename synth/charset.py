"""Charsets: the ordered sets of characters a task's labels are drawn from.

A charset is an artefact of the DAG (``results/charsets/{task}.txt``, one character per line),
built here from codecs and user files, never a literal copied into model code. Every character is
NFKC-normalised, like every label: a character whose NFKC form is several characters (``…`` ->
``...``) contributes those characters, and a full-width form (``，`` U+FF0C) becomes its canonical
form (``,``). Order is kept (first occurrence wins), so class indices are stable.
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
    """NFKC-normalise, split into single characters, drop whitespace and duplicates, keep order."""
    out: dict[str, None] = {}
    for item in chars:
        for c in nfkc(item):
            if not c.isspace() and unicodedata.category(c)[0] != "C":
                out.setdefault(c, None)
    return list(out)


def read_chars_file(path: str | os.PathLike) -> list[str]:
    """Characters of a UTF-8 file (one or more per line; whitespace ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"charset file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"charset file {path} is not UTF-8: {e}") from None
    return list(text)


def build_charset(
    source: str = "chars",
    chars: str = "",
    files: Sequence[str | os.PathLike] = (),
    limit: int = 0,
) -> list[str]:
    """Build a task's charset.

    Args:
        source: ``gb2312_level1`` (3755 hanzi), ``gb2312`` (6763), ``line`` (level-1 hanzi, digits,
            ASCII letters, Chinese and ASCII punctuation) or ``chars`` (only ``chars`` and
            ``files``).
        chars: extra characters (for ``chars``, the whole set).
        files: UTF-8 files whose characters are added.
        limit: keep only the first ``limit`` characters (0 = all).

    Returns:
        The NFKC-normalised characters, unique, in order.
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
    extra = list(chars)
    for f in files:
        extra += read_chars_file(f)
    out = unique_nfkc(base + extra)
    if limit:
        out = out[:limit]
    if not out:
        raise ValueError(f"charset (source={source!r}) is empty")
    return out


def write_charset(chars: Sequence[str], path: str | os.PathLike) -> None:
    """Write one character per line, atomically."""
    write_text_atomic(path, "".join(c + "\n" for c in chars))


def read_charset(path: str | os.PathLike) -> list[str]:
    """Read a charset file written by :func:`write_charset` (one character per line)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    chars = [line for line in lines if line != ""]
    bad = [c for c in chars if len(c) != 1]
    if bad:
        raise ValueError(f"charset {path}: lines must hold one character each, got {bad[:5]!r}")
    return chars
