"""The model registry: a name maps to a factory, its task family, its input geometry and, for CTC
models, the number of output frames of an image of a given width.

The Snakefile imports this module at parse time (`validate_experiment`), so it must not import
torch: factories are named as ``"module:function"`` and imported on first build, and each entry
declares its factory's keyword arguments (``tests/test_models.py`` checks them against the real
signatures, so the two cannot drift apart).

Conventions shared by every model (``build_model(name, num_classes=len(charset), **kwargs)``):

- ``classification``: ``N, 1, S, S -> logits N, num_classes``.
- ``ctc``: ``N, 1, H, W -> logits T, N, num_classes + 1``, class 0 the blank. Models return only
  the logits; the per-sample frame counts of a padded batch come from the image widths through
  `output_length` (`models.families.CTCFamily` does this when given ``widths``).
- ``attention``: ``N, 1, S, S -> ReaderOutput(logits N, max_len + 1, num_classes + 1,
  masks N, max_len + 1, S, S)``, class 0 the terminal symbol.

A layer whose size follows the classes has them on its first axis (`models.transfer` carries its
rows over when fine-tuning). Adding a model (the factory, its entry here, the tests' small
instances): README.md, "Adding an architecture". A package of one's own registers models without
editing this file: an entry point in the group `PLUGIN_GROUP` (``synthocr.models``), named as the
model, whose object is a `ModelEntry` (README.md, "A model in your own package";
`models.conformance` checks it as the tests check the built-in ones). `get_entry` checks an entry
before its first use (`entry_problems`; the config check also looks for its factory's module,
`factory_problem`), and the families check each model's output against these layouts.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synth.code import imported_modules, module_file, source_digest

if TYPE_CHECKING:
    from torch import nn

    from synth.schema import SchemaCheck

FAMILIES = ("classification", "ctc", "attention")
# The entry-point group through which an installed package registers models of its own.
PLUGIN_GROUP = "synthocr.models"
# How outputs are read back (`models.families`): best class per step or frame, CTC prefix beam
# search, or that search held to the task's grammar (`grammar_for`).
DECODERS = ("greedy", "beam", "grammar")

# The family each task's labels call for, and the geometry of its images.
TASK_FAMILY = {"hanzi": "classification", "expr": "ctc", "line": "ctc", "short": "attention"}
TASK_INPUT = {"hanzi": "square", "short": "square", "expr": "line", "line": "line"}
# Line tasks whose images are all drawn at one width (``tasks.expr.width``): their CTC models
# never see padding in training, and every frame of their input is the image's own, so they may
# emit the last character at the last frame they are given, wherever it stands. They read each
# image at its own width, unpadded, every frame (`models.predict.predict`).
FIXED_WIDTH_TASKS = frozenset({"expr"})

# Baidu-style expressions: 3 single-digit operands, 2 operators, at most one pair of parentheses.
BAIDU_EXPR_LENGTHS = (5, 7)  # a+b*c to (a+b)*c


# The positional argument is not called ``width``: that name is the models' channel multiplier,
# and the model kwargs are passed alongside it.
def _crnn_length(image_width: Any, **_: Any) -> Any:
    """Frames of `models.crnn.CRNN` (both backbones) for images ``image_width`` px wide."""
    return image_width // 4 + 1


def check_expr_filters(filters: Any) -> None:
    """Raise `ValueError` unless ``filters`` is three channel counts >= 1 (`expr_crnn`)."""
    if (
        not isinstance(filters, list | tuple)
        or len(filters) != 3
        or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters)
    ):
        raise ValueError(f"expr_crnn filters must be three channel counts >= 1, got {filters!r}")


def _expr_length(image_width: Any, drop_frames: int = 2, **_: Any) -> Any:
    """Frames of `models.crnn.ExprCRNN` for images ``image_width`` px wide."""
    return image_width // 4 - drop_frames


def check_reader_convs(value: int) -> None:
    """The reader's own three convolutions (deep_reader's) are the least it has."""
    if value < 3:
        raise ValueError(f"must be >= 3 (the reader's own three convolutions), got {value!r}")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        target: ``"module:function"`` of the factory, ``factory(num_classes, **kwargs)``.
        family: ``classification``, ``ctc`` or ``attention`` (see `models.families`).
        input: Default input geometry: ``{"kind": "square", "size": S}`` or
            ``{"kind": "line", "height": H}`` (lines take any width); see `input_spec`.
        kwargs: The factory's keyword arguments and their defaults.
        output_length: CTC only: ``output_length(image_width, **model_kwargs) -> T``; works on ints
            and on integer tensors of widths.
        min_batch: Smallest training batch (a batch norm over one value per channel fails).
        checks: Kwargs whose values need more than the type check of `check_kwargs`: name ->
            a function raising `ValueError` for a bad value (not called for None); the shared
            `VALUE_CHECKS` cover the rest.
        tiny: Kwargs of a small instance, for `models.conformance` (``synthocr-check-model``)
            to check the model on in a second or two; its defaults when empty.
    """

    target: str
    family: str
    input: Mapping[str, Any]
    kwargs: Mapping[str, Any]
    output_length: Callable[..., Any] | None = field(default=None)
    min_batch: int = 1
    checks: Mapping[str, Callable[[Any], None]] = field(default_factory=dict)
    tiny: Mapping[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> Callable[..., nn.Module]:
        """The factory function (imports its module, and torch, on first use)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class DescribedEntry(ModelEntry):
    """A model known only from an exported file's description (`add_described`): its family,
    input geometry and, for CTC, its frame rule; it has no factory, so no PyTorch model is
    built from it.

    Attributes:
        source: The file that describes it.
        package: The package (and version) its metadata says it was trained with, if any.
    """

    source: str = ""
    package: str = ""

    @property
    def factory(self) -> Callable[..., nn.Module]:
        """Refused: a description holds no factory."""
        raise ValueError(
            f"{self.source} describes its model but holds no factory to build it in PyTorch; "
            + (f"install the package {self.package}" if self.package else "register the model")
        )


class FrameRule:
    """A CTC model's frames for images ``image_width`` px wide (before padding), as an export
    stores them: ``(max(W, min_width) + offset) // stride`` (`models.export.frame_rule`). An
    object with equality, not a closure, so that `add_described` can tell whether two files
    describe a model alike."""

    def __init__(self, stride: int, offset: int, min_width: int) -> None:
        self.stride, self.offset, self.min_width = stride, offset, min_width

    def __call__(self, image_width: Any, **_: Any) -> Any:
        if isinstance(image_width, int):
            width = max(image_width, self.min_width)
        else:  # an integer tensor (or array) of widths
            width = image_width.clip(min=self.min_width)
        return (width + self.offset) // self.stride

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameRule) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((self.stride, self.offset, self.min_width))

    def __repr__(self) -> str:
        return f"FrameRule(stride={self.stride}, offset={self.offset}, min_width={self.min_width})"


MODELS: dict[str, ModelEntry] = {
    "hanzi_cnn": ModelEntry(
        "models.hanzi_cnn:hanzi_cnn",
        "classification",
        {"kind": "square", "size": 64},
        {"width": 1.0, "dropout": 0.2, "input_size": 64},
        min_batch=2,  # BatchNorm1d after the hidden FC layer
        tiny={"width": 0.125},
    ),
    "expr_crnn": ModelEntry(
        "models.crnn:expr_crnn",
        "ctc",
        {"kind": "line", "height": 60},
        {
            "width": 1.0,
            "hidden": 128,
            "dense": 128,
            "dropout": 0.2,
            "drop_frames": 2,
            "input_height": 60,
            "filters": None,  # three channel counts instead of width, e.g. [8, 32, 64]
        },
        _expr_length,
        checks={"filters": check_expr_filters},
        tiny={"width": 0.25, "hidden": 16, "dense": 16},
    ),
    "crnn_vgg": ModelEntry(
        "models.crnn:crnn_vgg",
        "ctc",
        {"kind": "line", "height": 32},
        {"width": 1.0, "hidden": 256, "batch_norm_all": False, "forget_bias": None},
        _crnn_length,
        tiny={"width": 0.125, "hidden": 16},
    ),
    "crnn_grcnn": ModelEntry(
        "models.crnn:crnn_grcnn",
        "ctc",
        {"kind": "line", "height": 32},
        {"width": 1.0, "hidden": 256, "iterations": 5, "forget_bias": None},
        _crnn_length,
        tiny={"width": 0.125, "hidden": 16, "iterations": 2},
    ),
    "reader": ModelEntry(
        "models.reader:reader",
        "attention",
        {"kind": "square", "size": 40},
        {"width": 1.0, "hidden": 128, "max_len": 4, "input_size": 40, "convs": 3},
        checks={"convs": check_reader_convs},
        tiny={"width": 0.25, "hidden": 32},
    ),
}


def _above_zero(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value!r}")


def _finite_number(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")


def _at_least_one(value: int) -> None:
    if value < 1:
        raise ValueError(f"must be >= 1, got {value!r}")


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError(f"must be >= 0, got {value!r}")


def _probability(value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {value!r}")


# The value checks of the kwargs several factories share (an entry's own `checks` come first):
# caught when the config is read, not in the train job after every shard is rendered.
VALUE_CHECKS: dict[str, Callable[[Any], None]] = {
    "width": _above_zero,
    "hidden": _at_least_one,
    "dense": _at_least_one,
    "iterations": _at_least_one,
    "max_len": _at_least_one,
    "convs": _at_least_one,
    "input_size": _at_least_one,
    "input_height": _at_least_one,
    "dropout": _probability,
    "drop_frames": _not_negative,
    "forget_bias": _finite_number,
}

# Model kwargs that set the input geometry, per input kind.
_GEOMETRY_KWARG = {"square": ("size", "input_size"), "line": ("height", "input_height")}


def get_entry(name: str, *, described: bool = True) -> ModelEntry:
    """The registry entry of ``name`` (built in, or an installed package's entry point),
    checked (`entry_problems`); a `ValueError` listing the valid names, or naming what the
    entry lacks, otherwise. A name registered neither way gets its `DescribedEntry` when a file
    described it (`add_described`) and ``described`` is true."""
    if described and name in _DESCRIBED and not is_registered(name):
        return _DESCRIBED[name]
    entry = MODELS.get(name)
    if entry is None or name in _plugin_points():
        entry = _plugin_entry(name)
    if _CHECKED.get((name, id(entry))) is not entry:
        problems = entry_problems(entry)
        if problems:
            raise ValueError(f"model {name!r} ({entry_source(name)}): " + "; ".join(problems))
        _CHECKED[name, id(entry)] = entry
    return entry


def model_names() -> list[str]:
    """Every registered model's name, sorted: the built-in ones and those of installed packages'
    entry points (not loaded: a broken one fails only where it is named)."""
    return sorted(set(MODELS) | set(_plugin_points()))


def is_registered(name: str) -> bool:
    """Whether ``name`` is a built-in model or one of an installed package's entry points
    (loaded or not: a broken one is registered, and fails where it is used)."""
    return name in MODELS or name in _plugin_points()


# Models known from an exported file's own description (`add_described`), by name.
_DESCRIBED: dict[str, DescribedEntry] = {}


def add_described(name: str, entry: DescribedEntry) -> None:
    """Make model ``name`` known from a file's description (`models.export.load_onnx` adds one
    for a name not registered here), for `get_entry` only.

    Raises:
        ValueError: ``name`` is registered (a registered model is never described over), the
            entry is not sound (`entry_problems`), or another file already described ``name``
            otherwise in this process (naming both files).
    """
    if is_registered(name):
        raise ValueError(f"model {name!r} is registered ({entry_source(name)}): not described")
    problems = entry_problems(entry)
    if problems:
        raise ValueError(f"model {name!r} as {entry.source} describes it: " + "; ".join(problems))
    known = _DESCRIBED.get(name)
    if known is not None and _description(known) != _description(entry):
        raise ValueError(
            f"model {name!r}: {entry.source} describes it otherwise than {known.source} "
            f"({_description(entry)} against {_description(known)}), which this process read "
            f"first; read the two in two processes, or install the package that registers it"
        )
    if known is None:
        _DESCRIBED[name] = entry


def _description(entry: DescribedEntry) -> tuple[Any, ...]:
    """What of a described model its readings depend on (not the file it came from)."""
    return (entry.family, dict(entry.input), dict(entry.kwargs), entry.output_length)


def forget_described() -> None:
    """Drop every described model (tests; a long process done with its files)."""
    _DESCRIBED.clear()


def package_of(name: str) -> str:
    """The installed package, and its version, that registers model ``name``; empty for a
    built-in model or a name no single package registers."""
    points = _plugin_points().get(name, [])
    if name in MODELS or len(points) != 1 or points[0].dist is None:
        return ""
    return f"{points[0].dist.name} {points[0].dist.version}"


def entry_source(name: str) -> str:
    """Where model ``name`` is registered, for messages: ``models/registry.py MODELS`` or the
    entry point (its object and its package)."""
    if name in MODELS and name not in _plugin_points():
        return "models/registry.py MODELS"
    if not is_registered(name) and name in _DESCRIBED:
        return f"not registered here: read from the synthocr metadata of {_DESCRIBED[name].source}"
    return ", ".join(_describe(ep) for ep in _plugin_points().get(name, [])) or "not registered"


@functools.cache
def _plugin_points() -> dict[str, list[metadata.EntryPoint]]:
    """The installed entry points of `PLUGIN_GROUP` by name, read once per process (a package
    installed while it runs is seen by the next one; tests call ``cache_clear``)."""
    found: dict[str, list[metadata.EntryPoint]] = {}
    # importlib.metadata already reads a distribution found twice on the path once.
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def _describe(ep: metadata.EntryPoint) -> str:
    package = ep.dist.name if ep.dist is not None else "an unnamed package"
    return f"entry point {ep.name} = {ep.value!r} of package {package}, group {PLUGIN_GROUP}"


def _plugin_entry(name: str) -> ModelEntry:
    """The `ModelEntry` an installed package registers as ``name`` (loaded once)."""
    points = _plugin_points().get(name, [])
    if not points:
        raise ValueError(
            f"unknown model {name!r}{_close_hint(name, model_names())}; valid models: "
            f"{', '.join(model_names())} (a model of "
            f"your own package is registered by an entry point in group {PLUGIN_GROUP}: "
            "README.md, 'A model in your own package'; is that package installed here?)"
        )
    if name in MODELS or len(points) > 1:
        owners = (["models/registry.py MODELS"] if name in MODELS else []) + [
            _describe(ep) for ep in points
        ]
        raise ValueError(
            f"model {name!r} is registered more than once: {'; '.join(owners)}; rename the "
            "entry point of the package, or uninstall one"
        )
    [ep] = points
    if name not in _PLUGINS:
        try:
            entry = ep.load()
        except Exception as e:  # any error of the package's import: name the package
            raise ValueError(
                f"model {name!r}: {_describe(ep)} cannot be loaded: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(entry, ModelEntry):
            raise ValueError(
                f"model {name!r}: {_describe(ep)} is a {type(entry).__name__}, not a "
                "models.registry.ModelEntry"
            )
        _PLUGINS[name] = entry
    return _PLUGINS[name]


# The entries of installed packages, loaded (`_plugin_entry`).
_PLUGINS: dict[str, ModelEntry] = {}


def reload_plugins() -> None:
    """Read the installed entry points again (a package installed or removed in this process)."""
    _plugin_points.cache_clear()
    _PLUGINS.clear()


# The entries found sound (the entry itself kept, so that its id is not another's).
_CHECKED: dict[tuple[str, int], ModelEntry] = {}


def entry_problems(entry: ModelEntry) -> list[str]:
    """What keeps a registry entry from working (empty when nothing does): its family, input
    geometry, what its family needs (a CTC model's ``output_length``, an attention model's
    ``max_len``) and the form of its target (`factory_problem` looks for the module)."""
    problems = []
    if entry.family not in FAMILIES:
        problems.append(f"family {entry.family!r} is not one of {', '.join(FAMILIES)}")
    kind = entry.input.get("kind")
    if kind not in _GEOMETRY_KWARG:
        problems.append(f"input kind {kind!r} is not square or line")
    elif _GEOMETRY_KWARG[kind][0] not in entry.input:
        problems.append(f"a {kind} input gives its {_GEOMETRY_KWARG[kind][0]}")
    if entry.family == "ctc" and entry.output_length is None:
        problems.append(
            "a CTC model registers output_length(image_width, **kwargs) -> frames T, which the "
            "config checks and the CTC loss use"
        )
    if entry.family == "attention" and "max_len" not in entry.kwargs:
        problems.append("an attention model takes a max_len keyword (the longest text it reads)")
    module, _, function = entry.target.partition(":")
    if not module or not function:
        problems.append(f"target {entry.target!r} is not 'module:function'")
    problems += kwargs_problems(entry, entry.tiny, "tiny")
    return problems


def factory_problem(entry: ModelEntry, names: bool = True) -> str | None:
    """Why the module of an entry's factory cannot be imported, or (with ``names``) why it
    holds no factory of that name, or None: looked for without running it (nor torch), though
    the packages above it are imported (``importlib.util.find_spec``), and the module's source
    read for the names it defines (`_defined_names`, which says nothing of a module that
    makes names as it runs). The config check calls it, so that a typo in a target fails
    before any job."""
    module, _, function = entry.target.partition(":")
    try:
        if importlib.util.find_spec(module) is None:
            return f"the module of its factory, {module!r}, cannot be found"
    except (ImportError, ValueError) as e:
        return f"the module of its factory, {module!r}, cannot be imported: {type(e).__name__}: {e}"
    defined = _defined_names(module) if names else None
    if defined is not None and function not in defined:
        functions = sorted(n for n in defined if not n.startswith("_"))
        return (
            f"the module of its factory, {module!r}, defines no {function!r}"
            f"{_close_hint(function, functions)}"
        )
    return None


def _defined_names(module: str) -> set[str] | None:
    """The names a module's source binds (functions, classes, assignments, imports; anywhere
    in it, so that none of its top level's is missed), read without running it; None when
    that cannot tell (no source file, a syntax error, which importing it will name, a ``from x
    import *``, a module ``__getattr__``, or names made as it runs: ``globals()``, ``vars()``,
    ``setattr``, ``exec``)."""
    try:
        path = module_file(module)
        if not path.endswith(".py"):
            return None
        tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (isinstance(node, ast.Name) and node.id in _NAMES_MADE_BY) or (
            isinstance(node, ast.Attribute) and node.attr == "__dict__"
        ):
            return None
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return None if "__getattr__" in names else names


# Calls that can bind a module's names as it runs, which its source does not show.
_NAMES_MADE_BY = ("globals", "vars", "setattr", "exec")


def model_sources(name: str) -> list[str]:
    """The source files of model ``name``'s code: its factory's module and the modules of the
    same package that module imports (not theirs in turn: ``models.crnn`` and
    ``models.backbones``, not ``models.registry``), sorted. Found without running them (nor
    torch). What `model_code` hashes.

    Raises:
        ValueError: The model is unknown, or its factory's module cannot be found.
    """
    entry = get_entry(name)
    module = entry.target.partition(":")[0]
    # the module alone: its names are the config check's to judge, not a reason to stop a run
    if (problem := factory_problem(entry, names=False)) is not None:
        raise ValueError(f"model {name!r} ({entry_source(name)}): {problem}")
    try:
        files = {module_file(module), *(module_file(m) for m in imported_modules(module))}
    except ImportError as e:  # a module of no file (built in, frozen, in a zip)
        raise ValueError(f"model {name!r} ({entry_source(name)}): {e}") from None
    return sorted(files)


def model_code(name: str) -> str:
    """The sha256 (16 hex digits) of model ``name``'s source files (`model_sources`), by name
    and code (`synth.code.source_digest`): a train job's params and its run's key hold it, so
    that an edit to the model's code trains it afresh (the same code, touched, moved under the
    same file names, or with other comments and docstrings, does not)."""
    return source_digest(model_sources(name))


def models_of_family(family: str) -> list[str]:
    """The registered models of ``family``: the built-in ones, and those of installed packages
    that load (for a message: a broken or clashing entry point is left out, not raised)."""
    out = {name for name, entry in MODELS.items() if entry.family == family}
    for name in set(_plugin_points()) - set(MODELS):
        try:
            if get_entry(name).family == family:
                out.add(name)
        except ValueError:
            continue
    return sorted(out)


def family_of(name: str) -> str:
    """The task family (``classification``, ``ctc`` or ``attention``) of model ``name``."""
    return get_entry(name).family


def check_kwargs(name: str, kwargs: Mapping[str, Any], where: str | None = None) -> None:
    """Raise `ValueError` if ``kwargs`` has a key the factory of ``name`` does not take, a
    value of the wrong type (numbers where the default is a number, integers where it is one,
    text where it is text, a list where it is a list or tuple),
    or a value its entry's ``checks`` (or `VALUE_CHECKS`) reject: one line per such key.

    Args:
        name: Registered model name.
        kwargs: Keyword arguments for the factory.
        where: How to name the mapping in messages (default ``model_kwargs``).
    """
    entry = get_entry(name, described=False)
    problems = kwargs_problems(entry, kwargs, where or "model_kwargs", name)
    if problems:
        raise ValueError("\n".join(problems))


def _close_hint(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for a name close to one of ``known`` (a typo), else nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def kwargs_problems(
    entry: ModelEntry, kwargs: Mapping[str, Any], where: str, name: str | None = None
) -> list[str]:
    """`check_kwargs`'s problems, one per key (``where.key: ...``), for an entry."""
    valid = ", ".join(entry.kwargs)
    model = f"model {name!r}" if name else "the model"
    problems = []
    for key, value in kwargs.items():
        if key not in entry.kwargs:
            problems.append(
                f"{where}.{key}: {model} takes no argument {key!r}"
                f"{_close_hint(str(key), list(entry.kwargs))}; valid: {valid}"
            )
            continue
        default = entry.kwargs[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list | tuple):
            ok = isinstance(value, list | tuple)
        else:  # None: the entry's checks say what it takes
            ok = True
        if not ok:
            problems.append(
                f"{where}.{key}: expected {type(default).__name__} "
                f"(default {default!r}), got {value!r}"
            )
            continue
        check = entry.checks.get(key) or VALUE_CHECKS.get(key)
        if check is not None and value is not None:
            try:
                check(value)
            except ValueError as e:
                problems.append(f"{where}.{key}: {e}")
    return problems


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: Registered model name (see `model_names`).
        num_classes: Charset size (blank / terminal symbols are added by the model).
        **kwargs: The factory's keyword arguments (see ``MODELS[name].kwargs``).

    Raises:
        ValueError: Unknown name (lists the valid ones; a model only a file describes is
            unknown here: its factory is not) or unknown keyword argument (names it).
    """
    entry = get_entry(name, described=False)
    check_kwargs(name, kwargs)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    try:
        factory = entry.factory
    except (ImportError, AttributeError) as e:
        raise ValueError(
            f"model {name!r}: its factory {entry.target} cannot be imported: "
            f"{type(e).__name__}: {e}"
        ) from e
    if problem := signature_problem(entry, factory):
        raise ValueError(f"model {name!r} ({entry_source(name)}): {problem}")
    return factory(num_classes, **kwargs)


def signature_problem(entry: ModelEntry, factory: Callable[..., Any]) -> str | None:
    """Why ``factory``'s signature is not the one ``entry`` declares (``num_classes`` first,
    then keyword-only arguments with the entry's ``kwargs`` as defaults, ``width`` among them),
    or None: an entry whose defaults drift from its factory's would train another model than
    the one its config names."""
    params = inspect.signature(factory).parameters
    first = next(iter(params), None)
    if first != "num_classes":
        takes = f"takes {first!r} first" if first else "takes no argument"
        return f"its factory {entry.target} {takes}; a factory takes num_classes first"
    declared = {k: p.default for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    if declared != dict(entry.kwargs):
        return (
            f"its factory {entry.target}'s keyword-only arguments are {declared}, its entry's "
            f"kwargs {dict(entry.kwargs)}: an entry's kwargs repeat its factory's keyword-only "
            "arguments and their defaults"
        )
    if "width" not in declared:
        return f"its factory {entry.target} takes no width (channel multiplier)"
    return None


def input_spec(name: str, **kwargs: Any) -> dict[str, Any]:
    """The input geometry of model ``name`` built with ``kwargs``.

    Returns:
        ``{"kind": "square", "size": S}`` (images must be ``S x S``) or
        ``{"kind": "line", "height": H}`` (any width).
    """
    entry = get_entry(name)
    spec = dict(entry.input)
    key, kwarg = _GEOMETRY_KWARG[spec["kind"]]
    if kwarg in kwargs:
        spec[key] = kwargs[kwarg]
    return spec


def output_length(name: str, image_width: Any, **kwargs: Any) -> Any:
    """Output frames ``T`` of CTC model ``name`` for images ``image_width`` px wide.

    Args:
        name: A CTC model.
        image_width: Width in px: an int, or an integer tensor of widths.
        **kwargs: The model's keyword arguments.

    Raises:
        ValueError: ``name`` is not a CTC model, or its ``output_length`` fails on the widths or
            counts other than whole numbers (a float, ``/`` for ``//``; a tensor of another shape)
            (naming the model and where it is defined).
    """
    entry = get_entry(name)
    if entry.output_length is None:
        raise ValueError(f"model {name!r} is not a CTC model (family {entry.family})")
    try:
        frames = entry.output_length(image_width, **kwargs)
    except (RuntimeError, TypeError) as e:  # max() of a tensor, torch ops on an int
        raise ValueError(
            f"{_frames_rule(name)}; given {_widths(image_width)}, it failed: {e}"
        ) from e
    if not _whole_frames(frames, image_width):  # every step calls this: the message only here
        raise ValueError(f"{_frames_rule(name)}; given {_widths(image_width)}, it gave {frames!r}")
    return frames


def _frames_rule(name: str) -> str:
    return (
        f"the output_length of model {name!r} ({entry_source(name)}) must count whole frames: "
        "an int for an int width, an integer tensor of the same shape for a tensor of widths "
        "(write // and torch.clamp, not / and max)"
    )


def _widths(widths: Any) -> str:
    if hasattr(widths, "shape"):
        return f"a {getattr(widths, 'dtype', '')} tensor of {len(widths.reshape(-1))} widths"
    return f"the width {widths!r}"


def _whole_frames(frames: Any, widths: Any) -> bool:
    """Whether ``frames`` counts whole frames for ``widths``: an integer for an integer, an
    integer tensor (or array) of their shape for a tensor of them (`output_length`)."""
    dtype = getattr(frames, "dtype", None)
    integer = dtype is not None and (
        getattr(dtype, "kind", None) in ("i", "u")  # numpy
        or (
            not getattr(dtype, "is_floating_point", True)
            and not getattr(dtype, "is_complex", True)
            and str(dtype) != "torch.bool"
        )
    )
    if hasattr(widths, "shape"):
        return integer and tuple(getattr(frames, "shape", ())) == tuple(widths.shape)
    if isinstance(frames, bool):
        return False
    return isinstance(frames, numbers.Integral) or (integer and getattr(frames, "ndim", 1) == 0)


def label_lengths(task: str, task_cfg: Mapping[str, Any]) -> tuple[int, int]:
    """The shortest and the longest label a task's samples can carry (from the validated config)."""
    if task == "hanzi":
        return 1, 1
    if task == "expr":
        ranges = []
        if task_cfg["baidu_fraction"] > 0:
            ranges.append(BAIDU_EXPR_LENGTHS)
        if task_cfg["baidu_fraction"] < 1:
            low, high = task_cfg["operands"]
            # Shortest: one-digit operands, no parentheses. Longest: every operand of max_digits
            # digits, the operators between them and one pair of parentheses.
            ranges.append((2 * low - 1, high * task_cfg["max_digits"] + (high - 1) + 2))
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    if task in ("line", "short"):
        return int(task_cfg["length"][0]), int(task_cfg["length"][1])
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_FAMILY)}")


def validate_experiment(name: str, exp_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any]) -> None:
    """Check an experiment before any job runs (the Snakefile calls it at parse time).

    Checks that the model exists, that its family and input geometry fit the task, that every
    ``model_kwargs`` key is a factory argument, that the training batch is large enough for its
    batch norms, and for CTC models that the output is long enough
    for the longest label (``T >= 2 * max_len + 1`` at the narrowest image that label can have)
    and that no label smoothing is asked for; for the reader, that ``max_len`` covers the
    task's longest text; that the ``grammar`` decoder is asked for only by a CTC model of a task
    with a grammar (``expr``).

    Args:
        name: Experiment name (the key under ``experiments``).
        exp_cfg: The experiment's validated config (``task``, ``model``, ``model_kwargs``...).
        task_cfg: The validated config of the experiment's task (``tasks.<task>``).

    Raises:
        ValueError: Naming ``experiments.<name>...`` (or the task key) at fault: the first
            problem of the model, its task and geometry, or, when they fit, every problem of the
            rest, one per line.
    """
    where = f"experiments.{name}"
    model, task = exp_cfg["model"], exp_cfg["task"]
    kwargs = dict(exp_cfg.get("model_kwargs") or {})
    try:
        entry = get_entry(model, described=False)
    except ValueError as e:
        raise ValueError(f"{where}.model: {e}") from None
    if problem := factory_problem(entry):
        raise ValueError(f"{where}.model: model {model!r} ({entry_source(model)}): {problem}")
    if task not in TASK_FAMILY:
        raise ValueError(f"{where}.task: unknown task {task!r}; valid: {', '.join(TASK_FAMILY)}")
    check_kwargs(model, kwargs, where=f"{where}.model_kwargs")
    params = {**entry.kwargs, **kwargs}

    spec = input_spec(model, **kwargs)
    if spec["kind"] != TASK_INPUT[task]:
        raise ValueError(
            f"{where}: model {model!r} reads {spec['kind']} images but task {task!r} has "
            f"{TASK_INPUT[task]} images; use a model of family {TASK_FAMILY[task]!r}: "
            + ", ".join(models_of_family(TASK_FAMILY[task]))
        )
    key, kwarg = _GEOMETRY_KWARG[spec["kind"]]
    if task_cfg[key] != spec[key]:
        hint = (
            f"set {where}.model_kwargs.{kwarg}: {task_cfg[key]}"
            if kwarg in entry.kwargs
            else f"set tasks.{task}.{key}: {spec[key]}"
        )
        raise ValueError(
            f"{where}: model {model!r} expects {key} {spec[key]} px but tasks.{task}.{key} is "
            f"{task_cfg[key]}; {hint}"
        )

    # The model, its task and its geometry fit: the checks past here are independent of one
    # another, and every problem they find is listed at once.
    problems: list[str] = []
    train = exp_cfg.get("train") or {}
    batch_size = train.get("batch_size", entry.min_batch)
    if batch_size < entry.min_batch:
        problems.append(
            f"{where}.train.batch_size: model {model!r} trains on batches of at least "
            f"{entry.min_batch}, got {batch_size}"
        )

    # a task config the schema filled has its splits; a bare one (synthocr-check-model's) may not
    available = ((task_cfg.get("splits") or {}).get("train") or {}).get("shards")
    if train.get("shards") is not None and available is not None and train["shards"] > available:
        problems.append(
            f"{where}.train.shards: {train['shards']}, but tasks.{task}.splits.train has "
            f"{available} shard(s); give at most {available}, or null for every one"
        )

    min_len, max_len = label_lengths(task, task_cfg)
    if train.get("curriculum_steps", 0) and min_len > 1:
        problems.append(
            f"{where}.train.curriculum_steps: a length curriculum starts with labels of one "
            f"character, but tasks.{task} labels have at least {min_len}, so its first stages "
            "would draw no sample; set it to 0"
        )
    if entry.family == "classification" and max_len != 1:
        problems.append(
            f"{where}: model {model!r} classifies single characters but task {task!r} has "
            f"labels of up to {max_len} characters"
        )
    if entry.family == "attention" and params["max_len"] < max_len:
        problems.append(
            f"{where}.model_kwargs.max_len: {params['max_len']} is shorter than the longest "
            f"tasks.{task} label ({max_len} characters); set it to at least {max_len}"
        )
    if (exp_cfg.get("eval") or {}).get("decoder") == "grammar":
        try:
            grammar_for(model, task, where=f"{where}.eval.decoder")
        except ValueError as e:
            problems.append(str(e))
    if train.get("align_weight", 0) and (entry.family != "ctc" or task != "line"):
        problems.append(
            f"{where}.train.align_weight: the alignment loss trains a CTC model's frames on "
            "where the line task's shards draw each character, and only they record it; "
            f"model {model!r} on task {task!r} cannot use it: set it to 0"
        )
    if entry.family == "ctc":
        if train.get("label_smoothing", 0):
            problems.append(
                f"{where}.train.label_smoothing: model {model!r} trains with CTC, which has no "
                "per-class target to smooth; set it to 0 (it applies to hanzi_cnn and reader)"
            )
        try:
            _check_ctc_length(where, model, task, task_cfg, params)
        except ValueError as e:  # the registry's own output_length failing names no key
            message = str(e)
            problems.append(message if message.startswith(where) else f"{where}.model: {message}")
    if problems:
        raise ValueError("\n".join(problems))


def experiment_problems(
    checked: SchemaCheck, name: str, origins: Mapping[str, Any] | None = None
) -> list[str]:
    """`validate_experiment`'s problems (the checks past the schema) with experiment ``name`` of
    a config `synth.schema.check_schema` checked, each a line naming its file (``origins``, as
    `synth.schema.config_with_origins` gives them); none when the schema found fault with the
    experiment or its task, whose values these checks need."""
    from synth.schema import named_with_file

    exp = (checked.config.get("experiments") or {}).get(name)
    task = exp.get("task") if isinstance(exp, dict) else None
    if task is None or not (checked.holds("experiments", name) and checked.holds("tasks", task)):
        return []
    try:
        validate_experiment(name, exp, checked.config["tasks"][task])
    except ValueError as e:
        return [named_with_file(line, origins) for line in str(e).split("\n")]
    return []


def grammar_for(
    model: str, task: str, where: str = "decoder", task_cfg: Mapping[str, Any] | None = None
) -> Any:
    """The grammar the ``grammar`` decoder holds ``model``'s readings of ``task`` to
    (`synth.text.task_grammar`): given the task's settings ``task_cfg`` (``tasks.<task>``), the
    texts they draw; without them, any text the task's grammar reads.

    Raises:
        ValueError: ``model`` is not a CTC model, or ``task`` has no grammar (message starts
            with ``where``).
    """
    from synth.text import task_grammar  # the registry stays light: the Snakefile imports it

    family = family_of(model)
    grammar = task_grammar(task, task_cfg) if family == "ctc" else None
    if grammar is None:
        instead = (
            "use greedy: a classifier gives its top-k classes whatever the decoder"
            if family == "classification"
            else "use greedy or beam"
        )
        raise ValueError(
            f"{where}: 'grammar' holds a CTC model's readings to its task's grammar, and "
            f"{model!r} on task {task!r} has none (expr_crnn on expr has); {instead}"
        )
    return grammar


def _check_ctc_length(
    where: str, model: str, task: str, task_cfg: Mapping[str, Any], params: Mapping[str, Any]
) -> None:
    """T >= 2L + 1 for every label length L at the narrowest image it can have: room for a
    blank before, after and between its characters, as CTC's extended label has. CTC's least is
    2L - 1 (a frame per character and a blank between each pair of repeated neighbours, which a
    label of L characters can have L - 1 of, ``11111``); the margin keeps its alignments free
    where the narrowest images are common. `models.pack` checks own labels against that least."""
    if task == "expr":
        # Fixed-size images: the longest label is the worst case.
        cases = [(label_lengths(task, task_cfg)[1], task_cfg["width"], f"tasks.{task}.width")]
    elif task == "line":
        # Lines are at least min_char_width px per character.
        low, high = task_cfg["length"]
        mcw = task_cfg["min_char_width"]
        cases = [
            (n, mcw * n, f"tasks.{task}.min_char_width ({mcw}) x {n} characters")
            for n in range(max(1, low), high + 1)
        ]
    else:
        raise ValueError(f"{where}: no CTC length rule for task {task!r}")
    for n, width, what in cases:
        frames = output_length(model, width, **params)
        if frames < 2 * n + 1:
            raise ValueError(
                f"{where}: model {model!r} gives T={frames} output frames for a {width} px "
                f"wide image ({what}), but a {n}-character label needs T >= 2*{n}+1 = "
                f"{2 * n + 1} for CTC (a blank before, after and between its characters); use "
                "wider images or shorter labels (or a model that pools the width less)"
            )
