"""Text samplers: what each sample says. Every sampler takes an explicit ``numpy.random.Generator``.

- hanzi: one character, balanced over the charset (see :func:`balanced_index`).
- expr: arithmetic expressions as in the Baidu 2017 competition (3 single-digit operands, 2
  operators, 0 or 1 pair of parentheses) and longer ones; their value comes from :func:`evaluate`,
  a small recursive-descent parser (never ``eval``). ``+ - *`` by default; with ``/`` among the
  operators, only expressions whose value is a whole number are drawn.
- line: Chinese lines drawn from a word-frequency corpus (jieba's dictionary), or from the running
  text of the user's own files (``tasks.line.corpus``), mixed with uniform characters, so rare
  classes are seen often, with digits, Latin and punctuation mixed in. A line is drawn in the
  forms its source has (a Chinese text's full-width ``，！（）``; punctuation mixed in, full-width
  or ASCII) and labelled with their NFKC forms (``,!()``): `LineSampler.draw`.
- short: a few characters drawn uniformly from the charset (the deep_reader setting).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from synth.charset import (
    ASCII_LETTERS,
    ASCII_PUNCT,
    CJK_PUNCT,
    DIGITS,
    SPACE,
    code_points,
    drop_spaces_by_wide,
    is_hanzi,
    is_wide,
    jieba_dict_path,
    nfkc,
    read_corpus,
)

log = logging.getLogger(__name__)

OPERATORS = "+-*"  # what the expr task draws by default (tasks.expr.operators)
# The other defaults of what the expr task draws (tasks.expr.baidu_fraction, operands, max_digits)
BAIDU_FRACTION = 0.7
OPERANDS = (2, 5)
MAX_DIGITS = 2
ALL_OPERATORS = "+-*/"  # what `evaluate` and `ExpressionGrammar` read

Value = int | Fraction


# Limits of `evaluate`, far beyond any expression the tasks draw (one pair of parentheses,
# numbers of a few digits), which keep a damaged or hostile label an ExpressionError: deeper
# nesting would exhaust Python's recursion limit (three frames a level), and Python refuses to
# turn an int of more than 4300 digits to or from text (the number read, the value written to
# JSON).
MAX_DEPTH = 100  # parentheses open at once
MAX_NUMBER_DIGITS = 1000  # digits of one number in the text
MAX_VALUE_DIGITS = 4000  # digits of the value, and of any part of it on the way (a fraction's
# numerator and denominator each)
_VALUE_BOUND = 10**MAX_VALUE_DIGITS


def _excerpt(expr: str, limit: int = 60) -> str:
    """``expr`` quoted, its start alone when it is long (a label of thousands of characters)."""
    if len(expr) <= limit:
        return repr(expr)
    return f"{expr[:limit]!r}... ({len(expr)} characters)"


class ExpressionError(ValueError):
    """A malformed arithmetic expression, or one that divides by zero."""


class DivisionByZeroError(ExpressionError):
    """A well-formed expression that divides by zero: it has no value."""


def evaluate(expr: str) -> Value:
    """Value of an expression over non-negative integers, ``+ - * /`` and parentheses.

    Grammar: ``expr := term (('+'|'-') term)*``, ``term := factor (('*'|'/') factor)*``,
    ``factor := digits | '(' expr ')'``. Usual precedence, left associative. No unary minus.
    Division is exact: the value is an ``int`` when it is a whole number, else a ``Fraction``.

    Raises:
        ExpressionError: an unexpected character, an unbalanced parenthesis, a missing operand,
            a division by zero (naming the expression and the position of the ``/``);
            parentheses nested more than `MAX_DEPTH` deep, a number of more than
            `MAX_NUMBER_DIGITS` digits, or a value (or a part of it) of more than
            `MAX_VALUE_DIGITS` digits (naming the position).
    """
    pos = 0
    n = len(expr)
    depth = 0
    zero_division: list[int] = []  # positions of the slashes that divide by zero

    def bounded(value: Value, at: int) -> Value:
        parts = (value.numerator, value.denominator) if isinstance(value, Fraction) else (value,)
        if any(abs(p) >= _VALUE_BOUND for p in parts):
            raise ExpressionError(
                f"a value of more than {MAX_VALUE_DIGITS} digits at position {at} in "
                f"{_excerpt(expr)}"
            )
        return value

    def peek() -> str:
        return expr[pos] if pos < n else ""

    def parse_expr() -> Value:
        nonlocal pos
        value = parse_term()
        while peek() in ("+", "-"):
            op, at = expr[pos], pos
            pos += 1
            rhs = parse_term()
            value = bounded(value + rhs if op == "+" else value - rhs, at)
        return value

    def parse_term() -> Value:
        nonlocal pos
        value = parse_factor()
        while peek() in ("*", "/"):
            op, at = expr[pos], pos
            pos += 1
            rhs = parse_factor()
            if op == "*":
                value = bounded(value * rhs, at)
            elif rhs != 0:
                value = bounded(Fraction(value) / rhs, at)
            else:  # reported once the whole text has parsed: a malformed text is malformed first
                zero_division.append(at)
                value = 0
        return value

    def parse_factor() -> Value:
        nonlocal pos, depth
        c = peek()
        if c == "(":
            if depth == MAX_DEPTH:
                raise ExpressionError(
                    f"parentheses nested more than {MAX_DEPTH} deep at position {pos} in "
                    f"{_excerpt(expr)}"
                )
            pos += 1
            depth += 1
            value = parse_expr()
            if peek() != ")":
                raise ExpressionError(f"expected ')' at position {pos} in {_excerpt(expr)}")
            pos += 1
            depth -= 1
            return value
        start = pos
        while pos < n and expr[pos] in DIGITS:
            pos += 1
        if start == pos:
            what = repr(c) if c else "end of input"
            raise ExpressionError(
                f"expected a number or '(' at position {pos} in {_excerpt(expr)}, got {what}"
            )
        if pos - start > MAX_NUMBER_DIGITS:
            raise ExpressionError(
                f"a number of more than {MAX_NUMBER_DIGITS} digits ({pos - start}) at position "
                f"{start} in {_excerpt(expr)}"
            )
        return int(expr[start:pos])

    if not expr:
        raise ExpressionError("empty expression")
    value = parse_expr()
    if pos != n:
        raise ExpressionError(f"unexpected {expr[pos]!r} at position {pos} in {_excerpt(expr)}")
    if zero_division:
        raise DivisionByZeroError(
            f"division by zero at position {zero_division[0]} in {_excerpt(expr)}"
        )
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def expression_value(text: str) -> Value | None:
    """The value of a read expression, or None when it does not evaluate (see `evaluate`)."""
    try:
        return evaluate(text)
    except ExpressionError:
        return None


def value_json(value: Value | None) -> int | str | None:
    """A value as JSON holds it: an int, a fraction as ``"p/q"``, or None."""
    return str(value) if isinstance(value, Fraction) else value


def grammar_accepts(grammar: Any, text: str) -> bool:
    """Whether ``grammar`` (`ExpressionGrammar`, `DrawnExpressionGrammar`: ``start``,
    ``advance``, ``accepts``) takes ``text`` as whole: what the ``grammar`` decoder's readings
    are held to (`models.families.ctc_beam_search` returns its best prefixes, which it does not
    take, when none it takes survives the beam)."""
    state = grammar.start()
    for char in text:
        state = grammar.advance(state, char)
        if state is None:
            return False
    return grammar.accepts(state)


class ExpressionGrammar:
    """`evaluate`'s grammar read one character at a time, for decoding constrained to readings
    that evaluate (``models.families.ctc_beam_search``).

    A state is ``(depth, last)``: open parentheses and what the last character was (``start``,
    ``open``, ``op``, ``num`` or ``close``).
    ``advance`` returns None when the character cannot continue any expression;
    ``accepts`` says whether the text read so far is a whole expression. A text is accepted
    exactly when `evaluate` parses it (tested): it then has a value, unless it divides by zero,
    which no grammar of characters can see (``(1-1)``). Nesting deeper than `MAX_DEPTH` is
    refused as `evaluate` refuses it; `evaluate`'s limits on the length of a number and of a
    value are not followed (no reading comes near them).
    """

    def start(self) -> tuple[int, str]:
        return (0, "start")

    def advance(self, state: tuple[int, str], char: str) -> tuple[int, str] | None:
        depth, last = state
        operand_next = last in ("start", "open", "op")
        if char in DIGITS:
            return (depth, "num") if operand_next or last == "num" else None
        if char in ALL_OPERATORS:
            return (depth, "op") if last in ("num", "close") else None
        if char == "(":
            return (depth + 1, "open") if operand_next and depth < MAX_DEPTH else None
        if char == ")":
            return (depth - 1, "close") if depth > 0 and last in ("num", "close") else None
        return None

    def accepts(self, state: tuple[int, str]) -> bool:
        depth, last = state
        return depth == 0 and last in ("num", "close")

    def describe(self) -> str:
        """What it holds readings to, for the record (``metrics.json``)."""
        return "evaluates"


class DrawnExpressionGrammar:
    """The expressions a ``tasks.expr`` config draws (`expression`), read one character at a
    time: a stricter `ExpressionGrammar` for decoding the readings of a model trained on them.

    Besides parsing, a text must have an operand count the config draws (3 for the Baidu-style
    expressions, ``operands`` for the longer ones), operands of at most ``max_digits`` digits (1
    when only Baidu-style expressions are drawn) without a leading zero, only the config's
    ``operators``, and at most one pair of parentheses, around two or more operands but not all.
    Every expression `expression` draws is accepted (tested); a text that parses but that the
    config never draws (``09+1``, ``123+4``, ``(1+2)``, ``(7)*3``, ``((1+2))*3``) is not. With
    ``operands`` that leave out 3, a 3-operand text of longer numbers is accepted too.

    A state is ``(last, digits, leading_zero, operands, parenthesis, open_at)``: what the last
    character was (as `ExpressionGrammar`'s), digits of the number being read and whether it
    began with 0, operands begun, the parentheses (0 none yet, 1 open, 2 closed) and the index
    of the first operand they hold.

    Args:
        task_cfg: The ``tasks.expr`` settings: ``baidu_fraction``, ``operands``, ``max_digits``
            and ``operators`` (missing ones take `expression`'s defaults).
    """

    SETTINGS = ("baidu_fraction", "operands", "max_digits", "operators")  # what it reads

    def __init__(self, task_cfg: Mapping[str, Any]) -> None:
        try:
            baidu = float(task_cfg.get("baidu_fraction", BAIDU_FRACTION))
            low, high = (int(n) for n in task_cfg.get("operands", OPERANDS))
            max_digits = int(task_cfg.get("max_digits", MAX_DIGITS))
        except (TypeError, ValueError) as e:
            raise ValueError(
                "tasks.expr: baidu_fraction, operands [low, high] and max_digits must be numbers "
                f"({e})"
            ) from None
        if not 2 <= low <= high or max_digits < 1:
            raise ValueError(
                f"tasks.expr: operands {[low, high]} must be 2 <= low <= high and max_digits "
                f"{max_digits} at least 1"
            )
        counts, digits = set(), 1
        if baidu > 0:
            counts.add(3)
        if baidu < 1:
            counts.update(range(low, high + 1))
            digits = max(digits, max_digits)
        self.operand_counts = frozenset(counts)
        self.max_operands = max(counts)
        self.max_digits = digits
        self.operators = str(task_cfg.get("operators", OPERATORS))
        check_operators(self.operators)

    def describe(self) -> dict[str, Any]:
        """What it holds readings to, for the record (``metrics.json``)."""
        return {
            "operand_counts": sorted(self.operand_counts),
            "max_digits": self.max_digits,
            "operators": self.operators,
        }

    def start(self) -> tuple[str, int, bool, int, int, int]:
        return ("start", 0, False, 0, 0, -1)

    def advance(
        self, state: tuple[str, int, bool, int, int, int], char: str
    ) -> tuple[str, int, bool, int, int, int] | None:
        last, digits, zero, operands, paren, open_at = state
        if char in DIGITS:
            if last == "num":
                if zero or digits >= self.max_digits:
                    return None
                return ("num", digits + 1, False, operands, paren, open_at)
            if last in ("start", "open", "op") and operands < self.max_operands:
                return ("num", 1, char == "0", operands + 1, paren, open_at)
            return None
        if char in self.operators:
            return ("op", 0, False, operands, paren, open_at) if last in ("num", "close") else None
        if char == "(":
            if last in ("start", "op") and paren == 0:
                return ("open", 0, False, operands, 1, operands)
            return None
        if char == ")":
            if last == "num" and paren == 1 and operands - open_at >= 2:
                return ("close", 0, False, operands, 2, open_at)
            return None
        return None

    def accepts(self, state: tuple[str, int, bool, int, int, int]) -> bool:
        last, _, _, operands, paren, open_at = state
        encloses_all = last == "close" and open_at == 0
        return (
            last in ("num", "close")
            and paren != 1
            and operands in self.operand_counts
            and not encloses_all
        )


# The task settings `DrawnExpressionGrammar` reads (the workflow passes them to the evaluation).
GRAMMAR_SETTINGS = {"expr": DrawnExpressionGrammar.SETTINGS}


def grammar_settings(task: str, task_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``tasks.<task>`` (``task_cfg``) the task's grammar reads
    (`GRAMMAR_SETTINGS`): what the workflow passes to an evaluation, and what ``--task-config``
    reads of a config; none for a task without a grammar of its own."""
    return {k: task_cfg[k] for k in GRAMMAR_SETTINGS.get(task, ()) if k in task_cfg}


def task_grammar(
    task: str, task_cfg: Mapping[str, Any] | None = None
) -> ExpressionGrammar | DrawnExpressionGrammar | None:
    """The grammar readings of ``task`` follow, or None: for ``expr``, `ExpressionGrammar` (any
    expression that evaluates) or, given the task's settings ``task_cfg``, the expressions they
    draw (`DrawnExpressionGrammar`)."""
    if task != "expr":
        return None
    return ExpressionGrammar() if task_cfg is None else DrawnExpressionGrammar(task_cfg)


def baidu_expression(rng: np.random.Generator, operators: str = OPERATORS) -> str:
    """Three single-digit operands, two operators, 0 or 1 pair of parentheses around two
    operands."""
    a, b, c = (str(d) for d in rng.integers(0, 10, size=3))
    op1, op2 = (operators[i] for i in rng.integers(0, len(operators), size=2))
    form = int(rng.integers(0, 3))
    if form == 0:
        return f"{a}{op1}{b}{op2}{c}"
    if form == 1:
        return f"({a}{op1}{b}){op2}{c}"
    return f"{a}{op1}({b}{op2}{c})"


def long_expression(
    rng: np.random.Generator,
    operands: Sequence[int] = OPERANDS,
    max_digits: int = MAX_DIGITS,
    operators: str = OPERATORS,
) -> str:
    """A longer expression: ``operands`` (inclusive range) operands of 1..``max_digits`` digits,
    optionally one pair of parentheses around a run of at least two (not all) operands."""
    k = int(rng.integers(operands[0], operands[1] + 1))
    nums = []
    for _ in range(k):
        digits = int(rng.integers(1, max_digits + 1))
        lo = 0 if digits == 1 else 10 ** (digits - 1)
        nums.append(str(int(rng.integers(lo, 10**digits))))
    ops = [operators[i] for i in rng.integers(0, len(operators), size=k - 1)]
    open_at = close_at = -1
    if k >= 3 and rng.random() < 0.5:
        span = int(rng.integers(2, k))  # 2..k-1 operands inside
        open_at = int(rng.integers(0, k - span + 1))
        close_at = open_at + span - 1
    parts = []
    for i, num in enumerate(nums):
        parts.append(("(" if i == open_at else "") + num + (")" if i == close_at else ""))
        if i < k - 1:
            parts.append(ops[i])
    return "".join(parts)


MAX_REDRAWS = 1000


def expression(
    rng: np.random.Generator,
    baidu_fraction: float = BAIDU_FRACTION,
    operands: Sequence[int] = OPERANDS,
    max_digits: int = MAX_DIGITS,
    operators: str = OPERATORS,
) -> str:
    """A Baidu-style expression with probability ``baidu_fraction``, else a longer one, over
    ``operators`` (a non-empty string of distinct characters of ``+-*/``).

    With ``/``, an expression that divides by zero or whose value is not a whole number is drawn
    again, so every label has an integer value. Without it nothing is redrawn (and the draws are
    those of ``+-*`` alone).

    Raises:
        ValueError: ``operators`` is empty, repeats a character or holds another one.
    """
    check_operators(operators)
    for _ in range(MAX_REDRAWS):
        if rng.random() < baidu_fraction:
            text = baidu_expression(rng, operators)
        else:
            text = long_expression(rng, operands, max_digits, operators)
        if "/" not in operators or isinstance(expression_value(text), int):
            return text
    raise ValueError(
        f"no expression over {operators!r} with a whole-number value in {MAX_REDRAWS} draws"
    )


def check_operators(operators: str, where: str = "tasks.expr.operators") -> None:
    """Raise a ValueError naming ``where`` unless ``operators`` is a non-empty string of distinct
    characters of ``+-*/``."""
    bad = sorted(set(operators) - set(ALL_OPERATORS))
    if not operators or bad or len(set(operators)) != len(operators):
        raise ValueError(
            f"{where}: {operators!r} must be distinct characters of {ALL_OPERATORS!r}"
            + (f"; {''.join(bad)!r} is not an operator" if bad else "")
        )


def balanced_index(position: int, n: int, seed_words: Sequence[int]) -> int:
    """Class index of the ``position``-th sample of a split: a fixed shuffle of ``range(n)``,
    repeated.

    Every class appears ``samples / n`` times (plus or minus one) in a split, whatever the shard
    layout,
    and consecutive samples are of unrelated classes.
    """
    return int(_permutation(n, tuple(seed_words))[position % n])


@lru_cache(maxsize=16)
def _permutation(n: int, seed_words: tuple[int, ...]) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(seed_words))))
    return rng.permutation(n)


def short_text(rng: np.random.Generator, charset: Sequence[str], length: Sequence[int]) -> str:
    """``length`` (inclusive range) characters drawn uniformly from ``charset``."""
    k = int(rng.integers(length[0], length[1] + 1))
    return "".join(charset[i] for i in rng.integers(0, len(charset), size=k))


@lru_cache(maxsize=4)
def _corpus(path: str, charset: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    allowed = set(charset)
    words, freqs = [], []
    for word, freq in read_corpus(path):
        if word and all(c in allowed for c in word):
            words.append(word)
            freqs.append(freq)
    if not words:
        return (), np.zeros(0)
    cdf = np.cumsum(np.asarray(freqs))
    return tuple(words), cdf / cdf[-1]


def running_text(paths: Sequence[str], charset: Sequence[str], loud: bool = True) -> str:
    """The running text of the user's corpus files, as lines draw it: each file's characters as
    it has them (NFC, so a letter and its combining mark are one character, as in a label; a
    full-width ``，`` stays ``，``), then every character whose NFKC form (its label) the
    charset lacks (whitespace, a rare hanzi, an emoji) taken out, the text on either side
    joined. A charset with the space (``charset.space``) keeps the words apart instead: each
    run of whitespace (line breaks, tabs) is one space, as is what is left between two words once
    a character is taken out, and the files are joined with one; spaces next to a wide
    character go as they would in the labels (`drop_spaces_by_wide` with ``forms``). A window's
    label is its NFKC form (`LineSampler.draw`). What is taken out is logged,
    naming the file, with the characters most often
    missing (to train on them, add them to the task's charset): as a warning when ``loud``,
    else at INFO (the workflow warns from one shard job; every shard job's log has it).

    Read once per process and state of the files (path, size, modification time).

    Raises:
        ValueError: a file is missing, is a folder, is not UTF-8 text, or none of them holds a
            character of the charset (naming the files).
    """
    states = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ValueError(f"tasks.line.corpus: {path} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise ValueError(f"tasks.line.corpus: {path} is a folder, not a text file")
        states.append((str(path), st.st_size, st.st_mtime_ns))
    return _running_text(tuple(states), tuple(charset), loud)


@lru_cache(maxsize=4)
def _running_text(
    states: tuple[tuple[str, int, int], ...], charset: tuple[str, ...], loud: bool
) -> str:
    allowed = set(charset)
    kept: list[str] = []
    for path, _, _ in states:
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = unicodedata.normalize("NFC", f.read())
        except OSError as e:
            raise ValueError(f"tasks.line.corpus: {path}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"tasks.line.corpus: {path} is not UTF-8 text: {e}") from None
        drawable = _drawable(set(text), allowed)
        if SPACE in allowed:
            ours = _words_apart(text, drawable)
        else:
            ours = "".join(c for c in text if c in drawable)
        missing = Counter(c for c in text if c not in drawable and not c.isspace())
        if missing:
            common = ", ".join(f"{code_points(c)} x{k}" for c, k in missing.most_common(10))
            log.log(
                logging.WARNING if loud else logging.INFO,
                "tasks.line.corpus: %s: %d of its %d characters (besides whitespace) are not "
                "in the charset and are taken out of the text; most often %s (to train on them, "
                "add them to tasks.line.charset: chars, or this file in files)",
                path,
                missing.total(),
                len(ours) - ours.count(SPACE) + missing.total(),
                common,
            )
        if SPACE not in allowed and (joined := _word_breaks(text, drawable)):
            log.log(
                logging.WARNING if loud else logging.INFO,
                "tasks.line.corpus: %s: %d spaces between words are taken out with the "
                "whitespace, so the words run together in its lines (%r becomes %r in the "
                "images and their labels); tasks.line.charset.space: true keeps one",
                path,
                joined[0],
                joined[1],
                joined[1].replace(SPACE, ""),
            )
        kept.append(ours)
    text = (SPACE if SPACE in allowed else "").join(k for k in kept if k)
    if SPACE in allowed:  # the space between two files, where one's end or the next's start is wide
        text = drop_spaces_by_wide(text, forms=True)
    if not text:
        empty = all(size == 0 for _, size, _ in states)
        why = (
            "empty"
            if empty
            else "no character of the task's charset; add the text's characters to "
            "tasks.line.charset (chars, or the files themselves in files)"
        )
        raise ValueError(f"tasks.line.corpus: {', '.join(p for p, _, _ in states)}: {why}")
    return text


def _drawable(chars: set[str], allowed: set[str]) -> set[str]:
    """Those of ``chars`` a line may draw: each whose NFKC form (what its label holds) is
    characters of the charset ``allowed``, none of them whitespace (``，`` when the charset has
    ``,``; ``…`` when it has ``.``), and the space when the charset has it."""
    out = set()
    for c in chars:
        if c.isspace():
            if c == SPACE and SPACE in allowed:
                out.add(c)
        elif all(k in allowed and not k.isspace() for k in nfkc(c)):
            out.add(c)
    return out


_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(" {2,}")
_BREAK = re.compile(r"(\S)\s+(?=(\S))")


def _words_apart(text: str, drawable: set[str]) -> str:
    """The running text of a charset with the space: each run of whitespace one space, what the
    lines cannot draw taken out (``drawable``, with the space; a word left empty leaves no
    second space), no space at either end or next to a character whose label is wide
    (`drop_spaces_by_wide` with ``forms``). No list of words: a corpus of hundreds of megabytes
    stays within the shard jobs' memory."""
    kept = "".join(c for c in _WHITESPACE.sub(SPACE, text) if c in drawable)
    return drop_spaces_by_wide(_SPACES.sub(SPACE, kept).strip(SPACE), forms=True)


def _word_breaks(text: str, drawable: set[str]) -> tuple[int, str] | None:
    """How many runs of whitespace in ``text`` stand between two characters of ``drawable``
    whose labels are not wide there (words of an alphabet, which taking the whitespace out runs
    together: a word the charset lacks entirely is not looked through), and the first such pair
    of words, as labels hold them (NFKC); None when there is none."""
    count, first = 0, ""
    for m in _BREAK.finditer(text):
        x, y = m.group(1), m.group(2)
        if x in drawable and y in drawable and not (is_wide(nfkc(x)[-1]) or is_wide(nfkc(y)[0])):
            count += 1
            if not first:
                left = re.search(r"\S+$", text[max(0, m.start() - 30) : m.start() + 1])
                right = re.match(r"\S+", text[m.end() : m.end() + 30])
                words = ["".join(c for c in w.group() if c in drawable) for w in (left, right) if w]
                first = nfkc(SPACE.join(words))
    return (count, first) if count else None


class LineSampler:
    """Chinese text lines from a word-frequency corpus, or from running text, mixed with uniform
    characters.

    A line is drawn in the forms its source has and labelled with their NFKC forms (`draw`):
    real Chinese text writes ``，！：；？（）`` full-width, and NFKC, the project's one label
    normalisation, makes them ``,!:;?()``, which the labels keep. The running text of
    ``texts`` keeps its own characters (`running_text`), and the punctuation mixed in is drawn
    from the full-width and ASCII lists (`CJK_PUNCT`, `ASCII_PUNCT`), so both ``，`` and ``,``
    appear, each labelled ``,``. `forms` lists the characters a line may show that are not in
    the charset (what each face draws of them is read when a shard starts:
    `synth.fonts.with_forms`).

    Args:
        charset: the task's charset; every line uses only its characters.
        length: inclusive range of a line's label's characters (its NFKC form; `draw`).
        corpus_fraction: share of lines taken from the corpus; the rest are uniform over the
            charset's hanzi.
        mix_fraction: probability of mixing in a number, a Latin word or punctuation.
        corpus: a ``word freq [tag]`` file whose words are drawn by frequency and joined into
            lines; default jieba's dictionary.
        texts: UTF-8 text files (``tasks.line.corpus``); when given, a corpus line is a window of
            their running text (`running_text`) at a uniform position, instead of words. Not
            read when ``corpus_fraction`` is 0.
        loud: log what `running_text` takes out of ``texts`` as a warning (else at INFO).

    Attributes:
        text: the running text of ``texts`` as drawn (its own forms), or ``""``.
        punct: the punctuation mixed in, as drawn: each form of `CJK_PUNCT` and `ASCII_PUNCT`
            whose NFKC form is one character of the charset.
        forms: the characters a line may show that the charset lacks (a full-width ``，``
            when the charset has ``,``), each standing for its NFKC form.

    Raises:
        ValueError: as `running_text`, or the running text is shorter than the longest line.
    """

    def __init__(
        self,
        charset: Sequence[str],
        length: Sequence[int] = (1, 20),
        corpus_fraction: float = 0.6,
        mix_fraction: float = 0.15,
        corpus: str | None = None,
        texts: Sequence[str] = (),
        loud: bool = True,
    ):
        self.length = (int(length[0]), int(length[1]))
        self.corpus_fraction = corpus_fraction
        self.mix_fraction = mix_fraction
        allowed = set(charset)
        self.hanzi = [c for c in charset if is_hanzi(c)] or [c for c in charset if c != SPACE]
        # Labels keep single spaces between words, never at either end (`sample`).
        self.space = SPACE in allowed
        self.digits = [c for c in DIGITS if c in allowed]
        self.letters = [c for c in ASCII_LETTERS if c in allowed]
        # One character each way: a '…' (labelled '...') would make the mixed-in part longer in
        # its label than in the image.
        self.punct = [c for c in dict.fromkeys(CJK_PUNCT + ASCII_PUNCT) if nfkc(c) in allowed]
        self.text = ""
        if texts and corpus_fraction > 0:
            self.text = running_text([str(t) for t in texts], charset, loud)
            if len(self.text) < self.length[1]:
                # Lines cut from it would be shorter than asked, or the text repeated: a charset
                # that keeps out most of the text (the smoke config's 60 characters) is the
                # usual cause.
                raise ValueError(
                    f"tasks.line.corpus: {', '.join(str(t) for t in texts)}: "
                    f"{len(self.text)} character(s) of running text are left once what the "
                    f"charset lacks is taken out, fewer than the longest line "
                    f"({self.length[1]}, tasks.line.length); add the text's characters to "
                    "tasks.line.charset (chars, or the files themselves in files), or more "
                    "text, or lower the longest line"
                )
        self.forms = frozenset(set(self.text) | set(self.punct)) - allowed
        self.words, self.cdf = ((), np.zeros(0))
        if not texts:
            self.words, self.cdf = _corpus(corpus or jieba_dict_path(), tuple(charset))
            if len(self.words) == 0:
                log.warning("no corpus word fits the charset; lines are uniform over the charset")

    def draw(self, rng: np.random.Generator) -> tuple[str, str]:
        """One line: the text as drawn and its label, the text's NFKC form.

        The label holds a number of characters drawn from ``length`` (no spaces, unless the
        charset holds the space: then words apart by one, none at either end, so a line may be
        a character or two shorter than drawn), never more: where a character's label is longer
        (``…``, labelled ``...``), the drawn text holds fewer characters, and a window is cut
        before a character whose label would run past the end, so that line is shorter. Neither
        is ever empty.

        Raises:
            ValueError: no line fits in `MAX_REDRAWS` draws (a text of nothing but characters
                whose labels are longer than the longest line).
        """
        for _ in range(MAX_REDRAWS):
            text = self._sample(rng)
            if self.space:
                # a wide form mixed in (`_mix`) may land beside a space: CJK text has none there
                text = drop_spaces_by_wide(text, forms=True).strip(SPACE)
            # Empty: a window of one character that is a space, or one whose label is longer
            # than the line (a '…' on a line of 1 or 2): draw again.
            if text:
                return text, nfkc(text)
        raise ValueError(
            f"tasks.line: {MAX_REDRAWS} lines drawn, none with a label (NFKC) of at most "
            f"{self.length[1]} characters (tasks.line.length): the text holds only characters "
            "whose NFKC form is longer ('…' is '...'); raise the longest line or add text"
        )

    def sample(self, rng: np.random.Generator) -> str:
        """The label of one line (`draw`)."""
        return self.draw(rng)[1]

    def _sample(self, rng: np.random.Generator) -> str:
        n = int(rng.integers(self.length[0], self.length[1] + 1))
        if self.text and rng.random() < self.corpus_fraction:
            start = int(rng.integers(0, len(self.text) - n + 1))
            text = self.text[start : start + n]
        elif len(self.words) and rng.random() < self.corpus_fraction:
            text = ""
            while len(text) < n:
                text += self.words[int(np.searchsorted(self.cdf, rng.random(), side="right"))]
        else:
            text = "".join(self.hanzi[i] for i in rng.integers(0, len(self.hanzi), size=n))
        if rng.random() < self.mix_fraction:
            text = self._mix(text, rng)
        text = text[:n] if len(text) > n else text
        # The label holds at most n characters (the length CTC's check and the models assume):
        # a drawn '…' is labelled '...', so a window that holds one is cut at its end.
        while len(nfkc(text)) > n:
            text = text[:-1]
        return text

    def _mix(self, text: str, rng: np.random.Generator) -> str:
        kind = int(rng.integers(0, 3))
        if kind == 0 and self.digits:
            k = int(rng.integers(1, 5))
            insert = "".join(self.digits[i] for i in rng.integers(0, len(self.digits), size=k))
        elif kind == 1 and self.letters:
            k = int(rng.integers(1, 6))
            insert = "".join(self.letters[i] for i in rng.integers(0, len(self.letters), size=k))
        elif self.punct:
            insert = self.punct[int(rng.integers(0, len(self.punct)))]
        else:
            return text
        at = int(rng.integers(0, len(text) + 1))
        # Keep the mixed-in part: cut the line around it rather than dropping it at the end.
        out = text[:at] + insert + text[at:]
        n = max(len(text), 1)
        start = max(0, min(at, len(out) - n))
        return out[start : start + n]
