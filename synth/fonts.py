"""Font faces: which files to use, what each face covers, and the coverage table.

A face is one (file, index) pair: a ``.ttc`` collection contributes every face. What a face
*covers* is the set of characters its best cmap maps to a glyph that draws something: a cmap entry
pointing to an empty glyph (a TrueType glyph with no data, a CFF charstring without bounds) counts
as missing, because drawing it would give a blank where the label says there is a character. The
check reads the glyph tables first, then has FreeType draw each character they pass, as a sample
is drawn (`_inked`: at 24 px and at each size the face has embedded bitmaps for); one drawn blank,
or as the face's own .notdef box, counts as missing too. The default config's 183 faces against
the 3755 hanzi take about 48 s of CPU (three CJK files, 13 faces: about 3 s).

A file a glob matches that is not a font at all (an HTML page saved as ``.ttf``, a file cut short,
a web font renamed) is left out when the patterns are resolved, with a warning: its table
directory is checked against the file (`font_file_problem`), which costs one small read. The
workflow resolves the patterns when it starts, so such a file is no job's input and adding one
reruns nothing. A font whose directory is sound but whose tables fontTools or FreeType cannot
read is left out by the coverage scan, with its path and the reason; in a collection, only the
face that cannot be read is left out (named by index and name), and its other faces are kept.
A file the user named explicitly (a path, not a glob) is an error instead, in both cases.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import itertools
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from braceexpand import UnbalancedBracesError, braceexpand
from fontTools.ttLib import TTCollection, TTFont, TTLibError
from PIL import Image

from synth.atomic import missing_why, sha256_file, write_text_atomic
from synth.charset import SPACE
from synth.render import load_font

log = logging.getLogger(__name__)
# What resolving the font patterns skipped (a pattern matching nothing, a file that is not a
# font): the workflow resolves them when it starts and prints these once, so its jobs, which
# resolve them again, keep them in their log files (`synth.joblog`).
files_log = logging.getLogger(f"{__name__}.files")

FONT_SUFFIXES = {".ttf", ".otf", ".ttc", ".otc"}
# Font files that a glob may match but that are not read (web fonts, Type 1, bitmap formats):
# skipped with a warning, not silently like the README or licence beside them.
UNREAD_FONT_SUFFIXES = {
    *(".woff", ".woff2", ".pfa", ".pfb", ".t1", ".pcf", ".bdf", ".fon", ".dfont", ".otb"),
    *(".pcf.gz", ".bdf.gz"),  # X11's compressed bitmap fonts
}
GLOB_CHARS = set("*?[")
# What fontTools and FreeType raise on a damaged file (fontTools has no single base class for it).
FONT_ERRORS = (
    TTLibError,
    OSError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    EOFError,
)
# Charstrings at least this long are taken as outlines unrun (FreeType then checks for ink,
# `_inked`); shorter ones (hints alone, a path of no area) are run to find their bounds.
_CFF_SHORT = 32


class FontError(ValueError):
    """A font the user named explicitly cannot be used; ``key`` is the config key that lists it
    (``fonts.paths`` or ``fonts.test_fonts``) when that is known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# The first four bytes of a TrueType (0x00010000, Apple's "true") or CFF OpenType ("OTTO") face.
_SFNT_TAGS = frozenset({b"\x00\x01\x00\x00", b"true", b"OTTO"})
_NOT_READ_TAGS = {b"wOFF": "a WOFF web font", b"wOF2": "a WOFF2 web font", b"%!PS": "a Type 1 font"}


def font_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a font file this project reads, or None when its structure is sound.

    Checks what can be checked without parsing a table: the file starts with a TrueType,
    OpenType or collection tag, and every table each face's directory lists lies inside the
    file. That catches what lands in a fonts folder by mistake (an empty or truncated download,
    an HTML error page, an archive or a web font with a ``.ttf`` name) in one read of a few
    hundred bytes per face; a table damaged inside is left to the coverage scan.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12:
                return f"{size} bytes: too short to be a font"
            tag = head[:4]
            if tag == b"ttcf":
                count = struct.unpack(">I", head[8:12])[0]
                if not 0 < count <= 4096 or 12 + 4 * count > size:
                    return f"a font collection whose header lists {count} faces in {size} bytes"
                offsets = struct.unpack(f">{count}I", f.read(4 * count))
            elif tag in _SFNT_TAGS:
                offsets = (0,)
            else:
                return _NOT_READ_TAGS.get(tag) or (
                    f"not a TrueType or OpenType font (it starts with {head[:8]!r})"
                )
            for face, offset in enumerate(offsets):
                f.seek(offset)
                header = f.read(12)
                if len(header) < 12 or header[:4] not in _SFNT_TAGS:
                    return f"face {face}: no font header at byte {offset}"
                tables = struct.unpack(">H", header[4:6])[0]
                directory = f.read(16 * tables)
                if len(directory) < 16 * tables:
                    return f"face {face}: cut short inside its table directory ({size} bytes)"
                for i in range(tables):
                    name, _, start, length = struct.unpack(
                        ">4sIII", directory[16 * i : 16 * i + 16]
                    )
                    if start + length > size:
                        return (
                            f"cut short: table {name.decode('latin-1')!r} of face {face} ends at "
                            f"byte {start + length}, the file has {size}"
                        )
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


@dataclass(frozen=True)
class FontFile:
    """A font file to scan; ``explicit`` when the user named it (not matched by a glob)."""

    path: str
    explicit: bool


@dataclass(frozen=True)
class FaceRecord:
    """One row of the coverage table.

    Attributes:
        path: the font file, as resolved from the config.
        index: face index inside the file (0 for a plain .ttf/.otf).
        family: family name from the name table ('' when unreadable).
        style: subfamily name.
        role: ``train`` or ``test`` (held out).
        status: ``ok``, ``excluded`` (matched ``exclude_families``: see `excluded_by`) or ``error``.
        reason: why the face is excluded or unreadable.
        covered: characters (of those scanned) the face draws.
    """

    path: str
    index: int
    family: str
    style: str
    role: str
    status: str = "ok"
    reason: str = ""
    covered: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()


@dataclass(frozen=True)
class Face:
    """A usable face: enough to render with it and to know what it can draw."""

    path: str
    index: int
    family: str
    style: str
    covered: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()

    def covers(self, text: str) -> bool:
        return self.covered.issuperset(text)


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style alternatives (``a/{b,c}.ttf`` gives ``a/b.ttf`` and ``a/c.ttf``; ranges
    like ``{1..3}`` too), with `braceexpand`; unbalanced braces are kept as literal text."""
    try:
        return list(braceexpand(pattern))
    except UnbalancedBracesError:
        return [pattern]


def resolve_font_files(
    patterns: Sequence[str], warn: bool = True, key: str | None = None
) -> list[FontFile]:
    """Expand globs, brace alternatives, directories and paths into sorted, unique font files.

    A glob (``*``, ``?``, ``[...]`` or ``{a,b}``) that matches nothing is skipped; so is a match
    that is not a font (`font_file_problem`: empty, cut short, an HTML page, a web font renamed),
    a file of a format not read (``.woff``, Type 1) and a broken link, each with a warning on
    `files_log` naming the file or pattern (none when ``warn`` is false). An explicit path that
    does not exist, or is not a font, is a :class:`FontError` naming ``key``, the config key
    that lists ``patterns`` (``fonts.paths`` or ``fonts.test_fonts``; both when not given). Glob
    and directory matches keep only font suffixes (.ttf .otf .ttc .otc); a folder a glob matches
    is searched recursively. A pattern that is the path of a file or a folder is that file or
    folder, whatever its name holds (a file is then named outright): Google Fonts' variable
    fonts are named ``Inter[opsz,wght].ttf``, which as a glob would match nothing.
    """

    def note(message: str, *args: object) -> None:
        if warn:
            files_log.warning(message, *args)

    out: dict[str, list[FontFile]] = {}  # by resolved path: every path that reached it
    for pattern in patterns:
        alternatives = expand_braces(pattern)
        globbed = len(alternatives) > 1 or GLOB_CHARS & set(pattern)
        if (globbed and not Path(pattern).is_file()) or Path(pattern).is_dir():
            # a folder's own name is no pattern: "Fonts [2024]/" holds its fonts, and so does
            # "Fonts [2024]/*.ttf" match them
            bases = [_literal_folders(a) for a in alternatives]
            found = {p for base in bases for p in glob.glob(base)}
            # A folder among the matches (a family unzipped into fonts/) is searched too.
            found |= {
                str(q) for p in found if Path(p).is_dir() for q in Path(p).rglob("*") if q.is_file()
            }
            matched = False
            for p in sorted(found):
                suffix = Path(p).suffix.lower()
                unread = {suffix, "".join(Path(p).suffixes[-2:]).lower()} & UNREAD_FONT_SUFFIXES
                if unread:
                    note(
                        "font %s: %s files are not read (convert it to .ttf or .otf); skipped",
                        p,
                        max(unread, key=len),
                    )
                if suffix not in FONT_SUFFIXES or Path(p).is_dir():
                    continue
                matched = True
                if not Path(p).is_file():  # a link to nothing, a pipe
                    note("font %s %s; skipped", p, missing_why(p))
                elif problem := font_file_problem(p):
                    note("font file %s is not a font this project reads (%s); left out", p, problem)
                else:
                    out.setdefault(str(Path(p).resolve()), []).append(FontFile(p, False))
            if not matched:
                tilde = " (~ is not expanded here: write the path out)" * pattern.startswith("~")
                note("font pattern %s matches no font file%s; skipped", pattern, tilde)
        else:
            named = key or "fonts.paths / test_fonts"
            if not Path(pattern).is_file():
                raise FontError(f"font file {pattern} {missing_why(pattern)} ({named})", key)
            if problem := font_file_problem(pattern):
                raise FontError(
                    f"font file {pattern} is not a font this project reads: {problem} ({named})",
                    key,
                )
            out.setdefault(str(Path(pattern).resolve()), []).append(FontFile(pattern, True))
    # In the order of the paths' bytes, not of the strings the locale decodes them to: under
    # zh_CN.GB18030 the UTF-8 names 华文楷体 and 微软雅黑 read as other characters, in another order
    return sorted(
        (_one_spelling(found, note) for found in out.values()), key=lambda f: os.fsencode(f.path)
    )


def _one_spelling(found: list[FontFile], note: Callable[..., None]) -> FontFile:
    """One file the patterns reach by several paths (a link, ``..``): the path named outright,
    else the first in sorted order (of the paths' bytes), whichever pattern came first; the
    files' order (their paths', which orders the faces that draw each sample) then follows the
    file, not the order of the patterns. Different paths get a note naming them."""
    explicit = sorted((f.path for f in found if f.explicit), key=os.fsencode)
    chosen = (
        FontFile(explicit[0], True)
        if explicit
        else FontFile(min((f.path for f in found), key=os.fsencode), False)
    )
    others = sorted({f.path for f in found} - {chosen.path})
    if others:
        note(
            "font %s is the same file as %s (a link, or another spelling of its path): read "
            "once, as the latter",
            ", ".join(others),
            chosen.path,
        )
    return chosen


class _Held(logging.Handler):
    """fontTools's log records, by logger, level and message template, while a file is read."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[tuple[str, int, object], list[logging.LogRecord]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.kinds.setdefault((record.name, record.levelno, record.msg), []).append(record)


_reading: list[str] = []  # the font file being read (`_fonttools_says`), when one is


@contextmanager
def _fonttools_says(path: str) -> Iterator[None]:
    """What fontTools logs while it reads the font file ``path``, each kind of message once,
    naming the file, under fontTools's own logger names (so `synth.joblog` keeps its warnings off
    the console as before): fontTools names no file, and a damaged name table has it log one
    ERROR per record ("skipping malformed name record #N", up to 65,535 of them), each time the
    table is read (the workflow's start, each coverage job). Kinds are told apart by the
    message's template, so those are one line, with how many more there were."""
    if _reading:  # already inside a read of a file (nested helpers): that one says them
        yield
        return
    logger = logging.getLogger("fontTools")
    held, propagate = _Held(), logger.propagate
    logger.addHandler(held)
    logger.propagate = False
    _reading.append(path)
    try:
        yield
    finally:
        _reading.pop()
        logger.removeHandler(held)
        logger.propagate = propagate
        for (name, level, _), records in held.kinds.items():
            more = f" ({len(records) - 1} more like it)" if len(records) > 1 else ""
            logging.getLogger(name).log(
                level, "font file %s: %s%s", path, records[0].getMessage(), more
            )


def _open_faces(path: str) -> list[TTFont]:
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"ttcf":
        return list(TTCollection(path, lazy=True).fonts)
    return [TTFont(path, lazy=True)]


def face_count(path: str) -> int:
    """How many faces the font file ``path`` holds (a collection's, or 1).

    Raises:
        `FONT_ERRORS`: The file cannot be read as a font.
    """
    with _fonttools_says(path):
        return len(_open_faces(path))


def _drawn_chars(font: TTFont, chars: Iterable[str]) -> set[str]:
    """Characters the face maps to a glyph that draws something, and the whitespace it maps
    (a space draws nothing: its glyph's advance is what it puts on the page)."""
    cmap = font.getBestCmap() or {}
    mapped = [(c, cmap[ord(c)]) for c in chars if ord(c) in cmap]
    spaces = {c for c, _ in mapped if c.isspace()}
    if spaces:
        return spaces | _drawn_chars(font, [c for c, _ in mapped if not c.isspace()])
    if "glyf" in font:
        glyf = font["glyf"]
        raw = getattr(glyf, "glyphs", None)
        out = set()
        for c, name in mapped:
            g = raw.get(name) if raw is not None else None
            if g is None:
                g = glyf[name]
            data = getattr(g, "data", None)
            if data is not None:
                # The raw glyph starts with numberOfContours and its bounding box: a glyph with
                # no outline (0 contours, or no data) or one of no area (a degenerate contour,
                # a composite of empty glyphs such as the space) draws nothing.
                if len(data) >= 10:
                    _, x_min, y_min, x_max, y_max = struct.unpack(">hhhhh", data[:10])
                    if x_max > x_min and y_max > y_min:
                        out.add(c)
            elif getattr(g, "numberOfContours", 0) != 0:  # already decompiled
                g.recalcBounds(glyf)
                box = [getattr(g, k, 0) for k in ("xMin", "yMin", "xMax", "yMax")]
                if box[2] > box[0] and box[3] > box[1]:
                    out.add(c)
        return out
    if "CFF " in font or "CFF2" in font:
        table = font["CFF "] if "CFF " in font else font["CFF2"]
        cff = table.cff
        charstrings = cff[cff.fontNames[0]].CharStrings
        out = set()
        for c, name in mapped:
            cs = charstrings[name]
            code = cs.bytecode
            if code is not None and len(code) >= _CFF_SHORT:
                out.add(c)  # long enough to be an outline: not worth running it (speed)
                continue
            # A short charstring may hold only hints, or a path of no area: run it.
            bounds = cs.calcBounds(charstrings)
            if bounds is not None and bounds[2] > bounds[0] and bounds[3] > bounds[1]:
                out.add(c)
        return out
    bitmaps = [t for t in ("EBDT", "CBDT", "sbix", "bdat") if t in font]
    if bitmaps:
        raise TTLibError(f"bitmap glyphs only ({bitmaps[0]} table), no outlines: not read")
    raise TTLibError("neither a glyf nor a CFF table")


def _literal_folders(pattern: str) -> str:
    """``pattern`` as a glob whose longest leading part that is an existing folder is escaped
    (taken as it is named, brackets and all), with ``/*`` added when that is the whole of it."""
    parts = Path(pattern).parts
    for i in range(len(parts), 0, -1):
        head = Path(*parts[:i])
        if head.is_dir():
            return str(Path(glob.escape(str(head)), *(parts[i:] or ["*"])))
    return pattern


def excluded_by(
    patterns: Sequence[re.Pattern], family: str, style: str, path: str = ""
) -> str | None:
    """The first of ``patterns`` found in the family name or the face's full name, or None.

    The full name is the family and the style, ``"Lato Thin"`` for the Thin face of family
    ``Lato``, so a pattern can leave out one weight of a family and keep the others. A face
    whose name table gives no family (or cannot be read) goes by its file's name without the
    suffix (``path``'s stem), which a pattern can then leave out.
    """
    if not family.strip() and path:
        family = Path(path).stem
    full = f"{family} {style}".strip()
    return next((p.pattern for p in patterns if p.search(family) or p.search(full)), None)


def misdrawn_patterns(misdrawn: Mapping[str, str] | None) -> list[tuple[re.Pattern, str]]:
    """``fonts.misdrawn`` (regex -> characters) compiled, for `misdrawn_by`."""
    return [(re.compile(p), c) for p, c in (misdrawn or {}).items()]


def misdrawn_by(
    misdrawn: Sequence[tuple[re.Pattern, str]], family: str, style: str, path: str = ""
) -> set[str]:
    """The characters ``misdrawn`` (regex, characters: ``fonts.misdrawn``) names for a face: of
    every pattern found in its family or full name, as `excluded_by` finds them."""
    return {c for p, chars in misdrawn if excluded_by([p], family, style, path) for c in chars}


def scan_fonts(
    train: Sequence[str],
    test: Sequence[str],
    chars: Iterable[str],
    exclude_families: Sequence[str] = (),
    misdrawn: Mapping[str, str] | None = None,
) -> list[FaceRecord]:
    """Read every face of the training and held-out fonts and what it covers of ``chars``.

    Args:
        train: globs or paths of training fonts (``fonts.paths``).
        test: globs or paths of held-out fonts (``fonts.test_fonts``); a file in both lists is
        held out.
        chars: the characters to check (the union of the charsets).
        exclude_families: regexes searched in the family name and the full name (family and
        style; `excluded_by`); matching faces get status ``excluded``.
        misdrawn: regex -> characters a matching face draws as others (``fonts.misdrawn``):
        counted as missing from it (`misdrawn_by`).

    Returns:
        One record per face (and one per unreadable file, status ``error``), sorted by role and
        path.

    Raises:
        FontError: an explicitly named file is missing or unreadable.
    """
    train_files, test_files = split_roles(train, test)
    return scan_files(train_files, "train", chars, exclude_families, misdrawn) + scan_files(
        test_files, "test", chars, exclude_families, misdrawn
    )


def scan_files(
    files: Sequence[FontFile],
    role: str,
    chars: Iterable[str],
    exclude_families: Sequence[str] = (),
    misdrawn: Mapping[str, str] | None = None,
) -> list[FaceRecord]:
    """Every face of ``files`` (one role's, as `split_roles` resolves them) and what it covers of
    ``chars``: `scan_fonts` for one role, as the workflow's coverage job of a task and role runs it.

    Raises:
        FontError: an explicitly named file is unreadable.
    """
    chars = sorted(set(chars))
    patterns = [re.compile(p) for p in exclude_families]
    wrong = misdrawn_patterns(misdrawn)
    return [r for f in files for r in _scan_file(f, role, chars, patterns, wrong)]


def split_roles(
    train: Sequence[str], test: Sequence[str], warn: bool = True
) -> tuple[list[FontFile], list[FontFile]]:
    """The training and held-out font files; a file in both lists is held out (with a warning
    unless ``warn`` is false, as for the rest of `resolve_font_files`'s warnings).

    A file is known by its bytes, not only its path: a training file with the same bytes as a
    held-out one (a copy under another name) is kept out of training, so the held-out fonts stay
    unseen, and a file with the same bytes as an earlier one of its role is left out, so no face
    counts twice. Only files of equal size are hashed.

    A training file with a face of a held-out file under other bytes (`_HeldOutFaces`: the
    family and style names of a held-out face, another version of it; or its outlines, a copy
    renamed) is kept out of training too (not added to the held-out files), with a warning naming
    both files and the face. A training file whose every face another training file holds
    under other bytes is left out (`_without_copied_faces`). These checks open every training
    file's table directory and name table, once: about 100 ms for the default config's 105
    training files (60 ms without held-out fonts). Two files of one role and one name get a
    warning: the per-file figures (``per_font_file``) know a file by its name.
    """
    same_bytes = _BytesIndex()
    test_files = []
    for f in resolve_font_files(test, warn, "fonts.test_fonts"):
        if (twin := same_bytes.find(f.path)) is not None:
            if warn:
                files_log.warning(
                    "font %s has the same bytes as the held-out font %s: left out, so it "
                    "counts once",
                    f.path,
                    twin,
                )
            continue
        same_bytes.add(f.path)
        test_files.append(f)
    test_paths = {str(Path(f.path).resolve()) for f in test_files}
    if warn:
        _warn_shared_names(test_files, "held-out fonts")
    face_keys = functools.cache(_face_keys)  # each file's, once for both checks
    held_out_faces = _HeldOutFaces(test_files, face_keys)
    train_files = []
    for f in resolve_font_files(train, warn, "fonts.paths"):
        if str(Path(f.path).resolve()) in test_paths:
            if warn:
                files_log.warning(
                    "font %s is both a training and a held-out font; held out", f.path
                )
        elif (twin := same_bytes.find(f.path)) is not None:
            held_out = twin in {t.path for t in test_files}
            if warn:
                files_log.warning(
                    "font %s has the same bytes as %s font %s: %s",
                    f.path,
                    "the held-out" if held_out else "the training",
                    twin,
                    "kept out of training" if held_out else "left out, so it counts once",
                )
        elif (twin := held_out_faces.find(f.path)) is not None:
            if warn:
                files_log.warning(
                    "font %s has %s of the held-out font %s (%s): %s; kept out of training",
                    f.path,
                    *twin,
                )
        else:
            same_bytes.add(f.path)
            train_files.append(f)
    train_files = _without_copied_faces(train_files, face_keys, warn)
    if warn:
        _warn_shared_names(train_files, "training fonts")
    return train_files, test_files


def _without_copied_faces(
    files: list[FontFile], face_keys: Callable[[str], list], warn: bool
) -> list[FontFile]:
    """The training files less those whose every face another training file holds under other
    bytes (the same outline and cmap tables, `_face_keys`: a face saved out of a collection, or
    a collection built from loose files), so that no face is drawn twice as often as the rest.
    A collection is kept before the loose files it holds (files are taken by face count, most
    first, then in order); a file some of whose faces another holds is kept, with a warning
    naming them. A face with no outline table to compare (`MIN_OUTLINE_BYTES`) or no cmap is
    never taken for a copy."""
    keys = {f.path: [(name, k) for name, _, _, k in face_keys(f.path)] for f in files}
    holder: dict[tuple, tuple[str, int]] = {}
    left_out = set()
    for f in sorted(files, key=lambda f: -len(keys[f.path])):  # stable: in order within a count
        faces = [(i, name, k) for i, (name, k) in enumerate(keys[f.path]) if k is not None]
        held = [
            (name, holder[k][0])
            for i, name, k in faces
            if holder.get(k, (f.path,))[0] != f.path
            and _same_tables((f.path, i), holder[k], (k[1], "cmap"))
        ]
        # every face held elsewhere: one that could not be compared is the file's own
        if held and len(held) == len(keys[f.path]):
            left_out.add(f.path)
            if warn:
                files_log.warning(
                    "font %s has the outlines and character map of the training font %s (%s): "
                    "left out, so its %s once",
                    f.path,
                    held[0][1],
                    ", ".join(dict.fromkeys(name for name, _ in held)),
                    "faces count" if len(held) > 1 else "face counts",
                )
            continue
        for name, other in held:
            if warn:
                files_log.warning(
                    "font %s has a face (%s) with the outlines and character map of the training "
                    "font %s: that face counts twice",
                    f.path,
                    name,
                    other,
                )
        for i, _, k in faces:
            holder.setdefault(k, (f.path, i))
    return [f for f in files if f.path not in left_out]


def _same_tables(a: tuple[str, int], b: tuple[str, int], tags: Sequence[str]) -> bool:
    """Whether faces ``a`` and ``b`` (file, index) hold the same bytes in tables ``tags``: the
    check of a match of the table directories' lengths and checksums (`_face_keys`), which a
    file whose tables were overwritten, their checksums left as they were, passes too."""
    try:
        one, other = _open_faces(a[0])[a[1]], _open_faces(b[0])[b[1]]
        return all(one.reader[tag] == other.reader[tag] for tag in tags)
    except FONT_ERRORS:
        return False


def _warn_shared_names(files: Sequence[FontFile], what: str) -> None:
    """Warn of two files of one role with one file name: the per-file figures (``per_font_file``
    of the test split that draws with them) know a file by its name."""
    names: dict[str, str] = {}
    for f in files:
        if (first := names.setdefault(Path(f.path).name, f.path)) != f.path:
            files_log.warning(
                "%s %s and %s share a file name: the per-file figures (per_font_file) count "
                "them as one",
                what,
                first,
                f.path,
            )


class _HeldOutFaces:
    """The held-out faces by name (family and style, casefolded; not a face without a family
    name) and by outlines (the glyph count and the length and checksum of the ``glyf``, ``CFF ``
    or ``CFF2`` table, from the table directory, then the table's bytes, `_same_tables`; not a
    table under `MIN_OUTLINE_BYTES`), to find a training file that holds one of them under other
    bytes."""

    def __init__(self, files: Iterable[FontFile], face_keys: Callable[[str], list]) -> None:
        self._face_keys = face_keys
        self._by_name: dict[tuple[str, str], str] = {}
        self._by_outlines: dict[tuple[int, str, int, int], tuple[str, int]] = {}
        for f in files:
            for i, (_, name_key, outline_key, _) in enumerate(face_keys(f.path)):
                if name_key is not None:
                    self._by_name.setdefault(name_key, f.path)
                if outline_key is not None:
                    self._by_outlines.setdefault(outline_key, (f.path, i))

    def find(self, path: str) -> tuple[str, str, str, str] | None:
        """For the first face of ``path`` that a held-out file has: (what it shares, the held-out
        file, the face's name, what that makes it); None when it has none."""
        if not self._by_name and not self._by_outlines:
            return None
        for i, (name, name_key, outline_key, _) in enumerate(self._face_keys(path)):
            if name_key is not None and (other := self._by_name.get(name_key)) is not None:
                return "the family and style names", other, name, "another version of it"
            held = self._by_outlines.get(outline_key) if outline_key is not None else None
            if held and _same_tables((path, i), held, (outline_key[1],)):
                return "the outlines", held[0], name, "a copy of it under another name"
        return None


# Outline tables shorter than this (a font of a few glyphs, or none: a bitmap-only sfnt's empty
# glyf) are too alike between unrelated fonts to tell a copy by.
MIN_OUTLINE_BYTES = 256


def _face_keys(
    path: str,
) -> list[tuple[str, tuple[str, str] | None, tuple | None, tuple | None]]:
    """(name, name key, outline key, copy key) of each face of a font file, as `_HeldOutFaces`
    (name and outlines) and `_without_copied_faces` (outlines and cmap) compare them; None where
    a face gives none to compare; none for a file or face fontTools cannot read (its coverage
    job says why)."""
    with _fonttools_says(path):
        return _read_face_keys(path)


def _read_face_keys(
    path: str,
) -> list[tuple[str, tuple[str, str] | None, tuple | None, tuple | None]]:
    try:
        faces = _open_faces(path)
    except FONT_ERRORS:
        return []
    keys = []
    for font in faces:
        family, style = _face_names(font)  # empty for a name table that cannot be read
        tables = font.reader.tables
        tag = next((t for t in ("glyf", "CFF ", "CFF2") if t in tables), None)
        outlines = None
        if tag is not None and tables[tag].length >= MIN_OUTLINE_BYTES:
            try:
                glyphs = int(font["maxp"].numGlyphs)
            except FONT_ERRORS:
                glyphs = -1
            outlines = (glyphs, tag, tables[tag].length, tables[tag].checkSum)
        key = (family.casefold(), style.casefold()) if family.strip() else None
        cmap = tables.get("cmap")
        copy = None if outlines is None or cmap is None else (*outlines, cmap.length, cmap.checkSum)
        keys.append((f"{family} {style}".strip(), key, outlines, copy))
    return keys


class _BytesIndex:
    """Files by size, then by sha256 (computed only when two files share a size)."""

    def __init__(self) -> None:
        self._by_size: dict[int, list[str]] = {}
        self._digests: dict[str, str] = {}

    def _digest(self, path: str) -> str:
        if path not in self._digests:
            self._digests[path] = sha256_file(path)
        return self._digests[path]

    def add(self, path: str) -> None:
        self._by_size.setdefault(os.path.getsize(path), []).append(path)

    def find(self, path: str) -> str | None:
        """The first indexed file with the same bytes as ``path``, or None."""
        for other in self._by_size.get(os.path.getsize(path), []):
            if self._digest(other) == self._digest(path):
                return other
        return None


def _scan_file(f: FontFile, role: str, chars: list[str], patterns, misdrawn=()) -> list[FaceRecord]:
    """The records of every face of a file. A collection keeps its good faces when one of its
    faces cannot be read (a damaged table of its own): that face alone is left out, named by
    its index (and name, when its name table reads). A file that cannot be opened is one
    ``error`` record of face -1, a single face that cannot be read one of face 0 (so that the
    merged table gives it one row, `merge_coverage`). Named explicitly, either is a
    `FontError`."""
    with _fonttools_says(f.path):
        return _scan_faces(f, role, chars, patterns, misdrawn)


def _scan_faces(
    f: FontFile, role: str, chars: list[str], patterns, misdrawn=()
) -> list[FaceRecord]:
    try:
        faces = _open_faces(f.path)
    except FONT_ERRORS as e:
        return _unreadable_file(f, role, _reason(e))
    out = []
    for index, font in enumerate(faces):
        try:
            out.append(_scan_face(f, index, font, role, chars, patterns, misdrawn))
        except FONT_ERRORS as e:
            reason = _reason(e)
            family, style = _face_names(font)
            if len(faces) == 1:
                return _unreadable_file(f, role, reason, 0, family, style)
            named = " ".join(n for n in (family, style) if n)
            face = f"face {index} ({named})" if named else f"face {index}"
            if f.explicit:
                raise FontError(f"font file {f.path}: {face} cannot be read: {reason}") from None
            log.warning(
                "font file %s: %s cannot be read (%s); left out, the collection's other faces kept",
                f.path,
                face,
                reason,
            )
            out.append(FaceRecord(f.path, index, family, style, role, "error", reason))
    return out


def _scan_face(
    f: FontFile, index: int, font: TTFont, role: str, chars: list[str], patterns, misdrawn=()
) -> FaceRecord:
    name = font["name"]
    family = name.getBestFamilyName() or ""
    style = name.getBestSubFamilyName() or ""
    hit = excluded_by(patterns, family, style, f.path)
    if hit is not None:
        return FaceRecord(f.path, index, family, style, role, "excluded", f"name matches {hit}")
    drawn = _drawn_chars(font, chars)
    cmap = font.getBestCmap() or {}
    mapped = sum(1 for c in chars if ord(c) in cmap and not c.isspace())
    # FreeType must open it too (a font fontTools accepts can still fail in PIL), and draw ink.
    covered = frozenset(_inked(f.path, index, drawn, font))
    if (
        mapped
        and not any(not c.isspace() for c in covered)
        and not _draws_any(f.path, index, font, cmap, chars)
    ):
        # A glyf or loca table overwritten or cut short reads as glyphs of no outline, or of
        # random bounds that FreeType draws nothing of. A face whose other glyphs draw is whole:
        # it has blank glyphs for this task's characters (placeholders), and covers none of them.
        raise TTLibError(
            f"its character map gives {mapped} of the task's characters, and not one of their "
            f"glyphs draws anything, nor any other of its glyphs: {_blank_why(font)}"
        )
    if wrong := covered & misdrawn_by(misdrawn, family, style, f.path):
        log.info(
            "font file %s face %d (%s): fonts.misdrawn counts %s as missing",
            f.path,
            index,
            f"{family} {style}".strip(),
            " ".join(f"{c!r} U+{ord(c):04X}" for c in sorted(wrong)),
        )
        covered -= wrong
    return FaceRecord(f.path, index, family, style, role, "ok", "", covered)


def _blank_why(font: TTFont) -> str:
    """Why a face whose glyphs all draw nothing is so, as far as its tables say."""
    if "COLR" in font:
        return "colour-layer glyphs only (COLR table), whose base glyphs are blank: not read"
    bitmaps = [t for t in ("EBDT", "CBDT", "sbix", "bdat") if t in font]
    if bitmaps:
        return f"bitmap glyphs only ({bitmaps[0]} table), its outlines blank: not read"
    return "a damaged glyf, loca or CFF table, or a blank font"


def drawn_chars(path: str, index: int, chars: Iterable[str]) -> set[str]:
    """Of ``chars``, those face ``index`` of the font file ``path`` draws, counted as the
    coverage tables count them.

    Raises:
        OSError, fontTools.ttLib.TTLibError: the face cannot be read (`FONT_ERRORS`).
    """
    with _fonttools_says(path):
        font = _open_faces(path)[index]
        return _inked(path, index, _drawn_chars(font, chars), font)


# How many of a face's other characters `_draws_any` looks at.
_OTHER_GLYPHS = 256


def _draws_any(
    path: str, index: int, font: TTFont, cmap: Mapping[int, str], chars: Iterable[str]
) -> bool:
    """Whether any of (up to `_OTHER_GLYPHS` of) the characters outside ``chars`` that face
    ``index`` of ``path`` (read as ``font``) maps draws ink (`_inked`); fontTools' reading
    first, which is enough for most faces."""
    skip = set(chars)
    others = (chr(u) for u in sorted(cmap) if chr(u) not in skip and not chr(u).isspace())
    drawn = _drawn_chars(font, itertools.islice(others, _OTHER_GLYPHS))
    if not drawn:
        return False
    try:
        return bool(_inked(path, index, drawn, font, quiet=True))
    except OSError:
        return False


# The size `_inked` draws each glyph at, besides the face's embedded bitmap sizes.
INK_SIZE = 24
# Code points no font maps in practice (the end of plane 16's private use area, then the
# noncharacters U+FDD0-U+FDEF), one of which `_notdef_probe` draws to see the face's .notdef.
_UNMAPPED = (*range(0x10FFFD, 0x10FFFD - 256, -1), *range(0xFDD0, 0xFDF0))


def _strike_sizes(font: TTFont) -> list[int]:
    """The pixel sizes of the face's embedded bitmap strikes (EBLC, CBLC or bloc, square ones:
    ``ppemX == ppemY``), which FreeType draws instead of the outlines at exactly those sizes; a
    table of a version FreeType does not read, or that cannot be read, gives none (the outlines
    are then what is drawn, and checked)."""
    sizes = set()
    for tag in ("EBLC", "CBLC", "bloc"):
        if tag not in font.reader.tables:
            continue
        try:
            data = font.reader[tag]
            version, count = struct.unpack(">II", data[:8])
            if version not in _STRIKE_TABLE_VERSIONS:
                continue
            for i in range(min(count, 256)):
                record = data[8 + 48 * i : 8 + 48 * (i + 1)]
                if len(record) == 48 and record[44] == record[45]:
                    sizes.add(record[45])
        except FONT_ERRORS:
            continue
    return sorted(s for s in sizes if s > 0)


# EBLC (2.0), CBLC (3.0) and Apple's bloc (2.0): the versions FreeType reads strikes from.
_STRIKE_TABLE_VERSIONS = (0x00020000, 0x00030000)


def _notdef_probe(font: TTFont) -> str | None:
    """A character the face does not map, so FreeType draws its glyph 0 (.notdef) for it."""
    cmap = font.getBestCmap() or {}
    return next((chr(u) for u in _UNMAPPED if u not in cmap), None)


def _notdef_key(pil, probe: str | None) -> tuple | None:
    """`_mask_key` of the face's .notdef glyph, drawn for ``probe``; None when it draws no ink
    or cannot be drawn (a damaged one: then no glyph is taken for it)."""
    if probe is None:
        return None
    try:
        return _mask_key(pil.getmask(probe))
    except OSError:
        return None


def _mask_key(mask) -> tuple | None:
    """What tells two drawn glyphs apart: their ink's box and pixels; None for no ink."""
    box = mask.getbbox()
    if box is None:
        return None
    return box, mask.size, Image.Image()._new(mask).tobytes()


# Why `_inked` counts a character missing, in its warnings.
_WHY = (
    "FreeType cannot draw {} characters",
    "{} characters draw no ink (an embedded bitmap, drawn instead of the outline at its size)",
    "{} characters are drawn as the face's .notdef glyph (the missing-glyph box)",
)


def _inked(
    path: str, index: int, chars: Iterable[str], font: TTFont, quiet: bool = False
) -> set[str]:
    """Of ``chars``, the whitespace and the characters FreeType draws ink for, as Pillow draws a
    sample: what a face covers.

    Each is drawn at `INK_SIZE` px and at every size the face has embedded bitmaps for (a
    strike's bitmap is drawn instead of the outline at exactly its size, and may be blank where
    the outline is not). A character drawn as the face's .notdef glyph (the "missing glyph"
    box, mapped to a copy of it) is missing too.

    `_drawn_chars` reads outlines without running them, for speed: a CFF glyph of hints alone,
    or a path that encloses nothing, passes it and draws nothing on the page. A glyph FreeType
    cannot draw (a damaged outline) is missing, with one warning per face naming them (none
    when ``quiet``), and so are the blank and .notdef ones.

    Raises:
        OSError: FreeType cannot open the face.
    """
    out = {c for c in chars if c.isspace()}
    todo = sorted(c for c in chars if not c.isspace())
    probe = _notdef_probe(font)
    # Why each missing character is missing (an index of `_WHY`), and the sizes it was seen at.
    failed: dict[str, tuple[int, int]] = {}
    for size in dict.fromkeys((INK_SIZE, *_strike_sizes(font))):
        pil = load_font(path, index, size)  # laid out as the samples are: no OpenType features
        notdef = _notdef_key(pil, probe)
        kept = []
        for c in todo:
            try:
                key = _mask_key(pil.getmask(c))
            except OSError:  # FreeType's error reading the glyph
                failed[c] = (0, size)
                continue
            if key is None:
                failed[c] = (1, size)
            elif key == notdef:
                failed[c] = (2, size)
            else:
                kept.append(c)
        todo = kept
    if failed and not quiet:
        for why, text in enumerate(_WHY):
            missed = [c for c, (w, _) in failed.items() if w == why]
            if missed:
                sizes = ", ".join(str(n) for n in sorted({failed[c][1] for c in missed}))
                listed = " ".join(f"{c!r} U+{ord(c):04X}" for c in missed[:5])
                log.warning(
                    "font file %s face %d: %s (%s) at %s px: counted as missing",
                    path,
                    index,
                    text.format(len(missed)),
                    listed + (" ..." if missed[5:] else ""),
                    sizes,
                )
    return out | set(todo)


def _face_names(font: TTFont) -> tuple[str, str]:
    """A face's family and style, or empty strings when its name table cannot be read."""
    try:
        name = font["name"]
        return name.getBestFamilyName() or "", name.getBestSubFamilyName() or ""
    except FONT_ERRORS:
        return "", ""


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".replace("\t", " ").replace("\n", " ")


def _unreadable_file(
    f: FontFile, role: str, reason: str, index: int = -1, family: str = "", style: str = ""
) -> list[FaceRecord]:
    if f.explicit:
        raise FontError(f"font file {f.path} cannot be read: {reason}")
    log.warning("font file %s cannot be read (%s); left out", f.path, reason)
    return [FaceRecord(f.path, index, family, style, role, "error", reason)]


COLUMNS = [
    "path",
    "face",
    "family",
    "style",
    "role",
    "status",
    "reason",
    "bytes",
    "mtime_ns",
    "sha256",
]


def _file_stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def write_coverage(
    records: Sequence[FaceRecord], charsets: Mapping[str, Sequence[str]], path
) -> None:
    """Write the coverage table: one row per face; per charset ``{name}_covered`` and
    ``{name}_missing``.

    ``{name}_missing`` holds the missing characters concatenated (charsets hold no whitespace).
    """
    names = sorted(charsets)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(COLUMNS + [f"{n}_{k}" for n in names for k in ("covered", "missing")])
    digests: dict[str, str] = {}
    for r in records:
        size, mtime, digest = "", "", ""
        if os.path.exists(r.path):
            size, mtime = _file_stamp(r.path)
            if r.path not in digests:
                digests[r.path] = sha256_file(r.path)
            digest = digests[r.path]
        row = [r.path, r.index, r.family, r.style, r.role, r.status, r.reason, size, mtime, digest]
        for n in names:
            if r.status == "ok":
                missing = "".join(c for c in charsets[n] if c not in r.covered)
                row += [len(charsets[n]) - len(missing), missing]
            else:
                row += ["", ""]
        w.writerow(row)
    write_text_atomic(path, buf.getvalue())


def read_coverage(
    path, task: str, charset: Sequence[str], role: str, exclude_families: Sequence[str] = ()
) -> list[Face]:
    """The usable faces of ``role`` (``train`` or ``test``) from the coverage table, for one task.

    A face's ``covered`` set is the task's charset minus the characters the table lists as missing.
    Faces matching one of the ``exclude_families`` regexes (the task's own, see
    ``tasks.<task>.exclude_families``; matched as in `excluded_by`) are left out.

    Raises:
        FontError: A face's file is no longer the one the table describes (its size or mtime
            changed, and its bytes too: replaced by a copy keeping an older mtime, which
            Snakemake does not see), so what it covers is unknown: drawing with it could show
            missing-glyph boxes. A file only touched, or copied again as it was, keeps its
            bytes and is the same font (Snakemake, which compares the content of inputs under
            1 MB, does not rerun the table for it either).
    """
    patterns = [re.compile(p) for p in exclude_families]
    digests = functools.cache(sha256_file)  # a .ttc's faces share one file: hashed once
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    col = f"{task}_missing"
    if rows and col not in rows[0]:
        raise KeyError(f"coverage table {path} has no column {col}: rerun the coverage rule")
    faces = []
    for r in rows:
        if r["role"] != role or r["status"] != "ok":
            continue
        if excluded_by(patterns, r["family"], r["style"], r["path"]) is not None:
            continue
        if r.get("bytes"):  # tables written before these columns existed are taken as they are
            stamp = (int(r["bytes"]), int(r["mtime_ns"]))
            now = _file_stamp(r["path"]) if os.path.exists(r["path"]) else None
            if now != stamp and not (now and r.get("sha256") == digests(r["path"])):
                raise FontError(
                    f"font file {r['path']} changed after {path} was written (size, mtime "
                    f"{stamp} -> {now}): what it draws is unknown; rebuild the table with "
                    "snakemake --forcerun coverage"
                )
        missing = set(r[col])
        covered = frozenset(c for c in charset if c not in missing)
        faces.append(Face(r["path"], int(r["face"]), r["family"], r["style"], covered))
    return faces


def merge_coverage(tables: Sequence[str | os.PathLike], path) -> None:
    """Merge coverage tables (the workflow's, one per task and role) into one: a row per face and
    role, with every table's ``{task}_covered`` and ``{task}_missing`` columns; a face a table
    does not list has those cells empty. A face one task's table calls ``error`` (its glyphs
    for that task's characters cannot be drawn) keeps that status and reason, whatever the
    others say. The overview the README points to; no job reads it."""
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    extra: list[str] = []
    for table in tables:
        with open(table, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            extra += [c for c in reader.fieldnames or () if c not in COLUMNS and c not in extra]
            for r in reader:
                row = rows.setdefault((r["role"], r["path"], r["face"]), {})
                if row.get("status") == "error":
                    r = {**r, "status": "error", "reason": row["reason"]}
                row.update(r)
    roles = {"train": 0, "test": 1}
    order = sorted(rows, key=lambda k: (roles.get(k[0], 2), k[1], int(k[2])))
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS + sorted(extra), delimiter="\t", lineterminator="\n")
    w.writeheader()
    for key in order:
        w.writerow(rows[key])
    write_text_atomic(path, buf.getvalue())


def with_forms(
    faces: Sequence[Face], forms: Iterable[str], misdrawn: Mapping[str, str] | None = None
) -> list[Face]:
    """``faces``, each covering also those of ``forms`` it draws (checked as the coverage table
    is, `drawn_chars`: glyphs that leave no ink counting as missing), less those ``misdrawn``
    (``fonts.misdrawn``, regex to characters, as `scan_files` reads it) names for it.

    ``forms`` are characters a text may show that are not in the task's charset, each standing
    for its NFKC form, which is (a line's full-width ``，``, labelled ``,``: see
    `synth.text.LineSampler`). The coverage table is over the charset only, so a shard job
    reads what its faces draw of them when it starts: a few hundredths of a second per face,
    once per process. A face that cannot be read again draws none of them (with a warning),
    which is safe: a face lacking a form draws its NFKC form instead (`synth.shards`).
    """
    forms = tuple(sorted(set(forms)))
    if not forms:
        return list(faces)
    wrong = misdrawn_patterns(misdrawn)
    out = []
    for f in faces:
        drawn = _forms_drawn(f.path, f.index, forms) - misdrawn_by(wrong, f.family, f.style, f.path)
        out.append(replace(f, covered=f.covered | drawn))
    return out


@functools.lru_cache(maxsize=256)
def _forms_drawn(path: str, index: int, forms: tuple[str, ...]) -> frozenset[str]:
    try:
        return frozenset(drawn_chars(path, index, forms))
    except FONT_ERRORS as e:
        log.warning(
            "font file %s face %d: cannot read which of %s it draws (%s); it draws their NFKC "
            "forms instead",
            path,
            index,
            "".join(forms),
            _reason(e),
        )
        return frozenset()


def uncovered_chars(charset: Sequence[str], faces: Sequence[Face | FaceRecord]) -> list[str]:
    """Characters of ``charset`` that none of ``faces`` draws, in charset order."""
    covered = set().union(*(f.covered for f in faces)) if faces else set()
    return [c for c in charset if c not in covered]


def apply_uncovered_policy(
    charset: Sequence[str],
    faces: Sequence[Face | FaceRecord],
    policy: str,
    what: str,
    misdrawn: Mapping[str, str] | None = None,
) -> list[str]:
    """Check that the training faces cover the charset.

    Args:
        charset: the characters.
        faces: the usable training faces.
        policy: ``error`` (raise, listing the characters) or ``drop`` (remove them, logged).
        what: a name for messages (the task).
        misdrawn: ``fonts.misdrawn``: the messages say which missing characters it names (a
            face that draws them is not counted).

    Returns:
        The charset, without the uncovered characters when ``policy`` is ``drop``.

    A face that draws no character of the charset (a Latin font among hanzi fonts) is named in
    the log (INFO: the default fonts have one, Droid Sans Fallback, which draws no capital):
    it draws none of the task's samples.
    """
    wanted = set(charset) - {SPACE}  # every face that maps the space covers it
    idle = [f for f in faces if not set(f.covered) & wanted]
    if idle and len(idle) < len(faces):
        names = sorted({f"{f.name} ({f.path})" for f in idle})
        log.info(
            "%s: %d training face%s draw%s none of its characters, so no sample of the task: %s",
            what,
            len(idle),
            "s" if len(idle) > 1 else "",
            "" if len(idle) > 1 else "s",
            ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
        )
    missing = uncovered_chars(charset, faces)
    if not missing:
        return list(charset)
    # with code points: such characters are often invisible or look like others
    listing = " ".join(f"{c} (U+{ord(c):04X})" for c in missing[:50]) + (
        f" and {len(missing) - 50} more" if len(missing) > 50 else ""
    )
    count = f"{len(missing)} character{'s' if len(missing) > 1 else ''}"
    named = "".join(
        sorted(set(missing) & {c for chars in (misdrawn or {}).values() for c in chars})
    )
    if named:  # a face draws them, but draws them wrongly
        listing += f" ({named} counted missing where fonts.misdrawn names them)"
    if policy == "drop":
        log.warning("%s: dropping %s no training font covers: %s", what, count, listing)
        gone = set(missing)
        kept = [c for c in charset if c not in gone]
        if not set(kept) - {SPACE}:
            raise ValueError(f"{what}: no character of the charset is covered by a training font")
        return kept
    if policy != "error":
        raise ValueError(f"fonts.uncovered must be error or drop, got {policy!r}")
    if not faces:
        raise ValueError(
            f"{what}: no usable training font (check fonts.paths and exclude_families)"
        )
    raise ValueError(
        f"{what}: {count} covered by no training font: {listing} "
        "(add a font that has them, or set fonts.uncovered: drop)"
    )


def covered_charset(
    chars: Sequence[str],
    paths: Sequence[str],
    exclude_families: Sequence[str],
    policy: str,
    what: str,
    test_paths: Sequence[str] = (),
) -> list[str]:
    """A charset checked against the training fonts (see :func:`apply_uncovered_policy`).

    Args:
        chars: the charset as built from its source.
        paths: training font globs or paths (``fonts.paths``).
        exclude_families: regexes of the families or faces to skip (`excluded_by`).
        policy: ``error`` or ``drop``.
        what: a name for messages (the task).
        test_paths: held-out font globs or paths (``fonts.test_fonts``): a file also listed
            there is held out, so it covers nothing for training.
    """
    train_files, _ = split_roles(paths, test_paths)
    patterns = [re.compile(p) for p in exclude_families]
    records = [r for f in train_files for r in _scan_file(f, "train", sorted(set(chars)), patterns)]
    faces = [r for r in records if r.status == "ok"]
    return apply_uncovered_policy(chars, faces, policy, what)
