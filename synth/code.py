"""Digests of source code, as the workflow keys what it builds by the code that builds it.

A job's params hold the digest of the code behind it, so that Snakemake reruns the job when that
code changes: a model's (`models.registry.model_code`) for its training, synth's data modules'
(`job_code` of `DATA_MODULES`) for the coverage tables, charsets and shards (and, with
synth.preview's, the contact sheets), and the scoring, packing, report and plot modules' for
theirs. The digest reads what the code does, not how it is explained: a comment, a
docstring, a blank line or trailing spaces change nothing (`code_text`), so documenting a module
retrains and redraws nothing. Modules are found by reading their imports (`package_imports`),
never by running them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import io
import os
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path


@functools.lru_cache(maxsize=1024)  # the same files are digested for several jobs' code
def code_text(data: bytes) -> bytes:
    """Python source less its comments, its docstrings (a module's, class's or function's first
    statement when that is a string), trailing spaces and blank lines (those outside strings: a
    multi-line string's blank lines and trailing spaces are part of its value), read as Python
    reads it (in the encoding its coding line or byte order mark names, UTF-8 by default; each
    line end as ``"\\n"``) and given as UTF-8: what the code does. Bytes that do not read as
    Python (a compiled extension, a syntax error) come back as they are."""
    try:
        # the coding line is a comment that says how the code reads: read by it before it goes
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
        tree = ast.parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (UnicodeDecodeError, LookupError, SyntaxError, ValueError, tokenize.TokenError):
        return data
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, _DOCUMENTED) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.add((first.lineno, first.col_offset))  # where its token starts
    cuts = [
        (t.start, t.end)
        for t in tokens
        if t.type == tokenize.COMMENT
        or (t.type == tokenize.STRING and (t.start[0], _byte_col(t.line, t.start[1])) in docstrings)
    ]
    lines = text.split("\n")  # the rows tokenize counts
    # A line that ends inside a token (a string's first or middle line) ends inside the string's
    # value: its trailing spaces, or the line itself when blank, are code and stay.
    in_string = [False] * len(lines)
    for t in tokens:
        for row in range(t.start[0], t.end[0]):
            in_string[row - 1] = True
    for (row0, col0), (row1, col1) in reversed(cuts):  # from the end: earlier places stay put
        head, tail = lines[row0 - 1][:col0], lines[row1 - 1][col1:]
        lines[row0 - 1 : row1] = [head + tail]
        in_string[row0 - 1 : row1] = [in_string[row1 - 1]]  # the joined line ends as row1 does
    kept = [
        (line if inside else line.rstrip(), inside)
        for line, inside in zip(lines, in_string, strict=True)
    ]
    return "\n".join(line for line, inside in kept if line or inside).encode("utf-8")


# The nodes whose first statement is their docstring.
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _byte_col(line: str, col: int) -> int:
    """The UTF-8 byte offset of character ``col`` of ``line`` (`ast` counts bytes, `tokenize`
    characters)."""
    return len(line[:col].encode("utf-8"))


def source_digest(paths: Iterable[str | os.PathLike]) -> str:
    """The sha256 (16 hex digits) of the files ``paths``, each by its name and its `code_text`:
    the same code, touched, moved under the same file names or only documented anew, gives the
    same digest."""
    digest = hashlib.sha256()
    for path in paths:
        data = code_text(Path(path).read_bytes())
        digest.update(f"{Path(path).name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def module_file(module: str) -> str:
    """The file a module is loaded from (its source, or a compiled extension).

    Raises:
        ImportError: The module is loaded from no file of its own (built in, frozen, in a zip).
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise ImportError(f"the module {module} is loaded from no file of its own")
    return spec.origin


def is_package(module: str) -> bool:
    """Whether ``module`` is a package (a folder of modules); finding it may import its parent."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def is_package_safely(module: str) -> bool:
    """`is_package`, False for a name that cannot be found."""
    try:
        return is_package(module)
    except (ImportError, ValueError):
        return False


def package_imports(path: str, package: str, top: str) -> list[str]:
    """The modules of package ``top`` a source file imports (``import a.b``, ``from a.b import
    c``, relative ones resolved against ``package``), and ``a.b.c`` for each ``from a.b import
    c`` where ``a.b`` is a package (``c`` may be a submodule; looking one up in a module would
    import the module). Other packages' modules are not looked up (that imports them)."""
    out: list[str] = []
    for module, level, names in _import_statements(Path(path).read_bytes(), path):
        if level < 0:  # import a.b, ...
            out.extend(name for name in names if name.partition(".")[0] == top)
            continue
        base = module
        if level:
            try:
                base = importlib.util.resolve_name("." * level + base, package)
            except ImportError:
                continue
        if base.partition(".")[0] == top:
            out.append(base)
            if is_package_safely(base):
                out.extend(f"{base}.{name}" for name in names if name != "*")
    return out


@functools.lru_cache(maxsize=1024)
def _import_statements(data: bytes, filename: str) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    """Every import statement of the source ``data``: (module, level, names) for ``from``
    imports, ("", -1, names) for plain ones. Kept by the source's bytes: the workflow digests
    the same files for several jobs' code (`job_code`), and parsing is most of the work."""
    out = []
    for node in ast.walk(ast.parse(data, filename=filename)):
        if isinstance(node, ast.Import):
            out.append(("", -1, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level, tuple(a.name for a in node.names)))
    return tuple(out)


def imported_modules(module: str, tops: Sequence[str] = ()) -> list[str]:
    """The modules of ``module``'s own package (and of the packages ``tops``) that its source
    imports directly (not a package itself, nor a name imported from one that is not a module)."""
    path = module_file(module)
    if not path.endswith(".py"):  # a compiled module's imports are not read
        return []
    own = module.partition(".")[0]
    package = module if is_package(module) else module.rpartition(".")[0]
    out = []
    names = [n for top in dict.fromkeys((own, *tops)) for n in package_imports(path, package, top)]
    for name in names:
        if name == module or is_package_safely(name):  # its modules, not it
            continue
        try:
            module_file(name)
        except (ImportError, ValueError, AttributeError):
            continue  # a name imported from a package, not a module of its own
        out.append(name)
    return sorted(set(out))


def module_closure(modules: Sequence[str], tops: Sequence[str] = ()) -> list[str]:
    """The files of ``modules`` and of every module of their packages (and of the packages
    ``tops``) they import, in turn (`imported_modules`), sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(name, tops))
    return sorted({module_file(name) for name in seen})


# What draws the data: the modules the workflow's data scripts call (workflow/scripts/coverage.py,
# charset.py, shard.py). Their job logging (synth.joblog) draws nothing, and the contact sheet's
# layout (synth.preview) draws a picture of the data, not the data: an edit of it redraws the
# contact sheets alone (`SHEET_MODULES`), not every shard, and retrains no model.
DATA_MODULES = ("synth.charset", "synth.fonts", "synth.shards", "synth.specs")

# What draws a contact sheet (workflow/scripts/contact_sheet.py): the data's modules and its own.
SHEET_MODULES = (*DATA_MODULES, "synth.preview")


# synthocr's own packages: a job's code is theirs that it runs (`job_code`).
FIRST_PARTY = ("synth", "models")

# What scores a model (workflow/scripts/evaluate.py), Tesseract (tesseract.py) and packs the user's
# own test images (pack.py): the modules the scripts call.
EVAL_MODULES = ("models.evaluate",)
TESSERACT_MODULES = ("models.tesseract",)
PACK_MODULES = ("models.pack",)
# What builds the report tables and the summary (report_table.py, report_summary.py), and what
# draws the plots (plots_*.py).
REPORT_MODULES = ("models.report",)
PLOT_MODULES = ("models.plots",)


@functools.cache
def job_code(modules: tuple[str, ...]) -> str:
    """`source_digest` of ``modules`` and of the synthocr modules (`FIRST_PARTY`) they import,
    in turn. The coverage, charset and shard jobs' params hold that of `DATA_MODULES` (synth's
    drawing modules import nothing of models), the contact sheets' that of `SHEET_MODULES`, and
    the evaluation, Tesseract, packing, report and plot jobs' that of their own modules, so that
    a synthocr that draws, reads, scores, packs, reports or plots otherwise does so anew: a
    drawing change redraws the data (and trains on it) rather than keeping the shards of the old
    code; a scoring change scores anew without drawing or training anew (a model's code is not
    among them)."""
    return source_digest(module_closure(modules, FIRST_PARTY))
