"""Typed specs built from config slices: the boundary between the workflow and the generator.

Each ``from_config`` takes the plain dict a Snakemake rule passes in ``params`` (already validated
and filled with defaults by the schema) and rejects unknown keys, naming them, so a library caller
gets the same checks. Defaults mirror ``workflow/schemas/config.schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from synth.augment import resolve
from synth.charset import build_charset
from synth.text import OPERATORS, check_operators

TASK_IDS = {"hanzi": 0, "expr": 1, "line": 2, "short": 3}
SPLIT_IDS = {"train": 0, "val": 1, "test_seen": 2, "test_heldout": 3}
# The synthetic splits models are tested on, in the reports' order (a config's own_tests after)
TEST_SPLITS = ("test_seen", "test_heldout")


def font_role(split: str) -> str:
    """The faces a split is drawn with, as the coverage tables name them: ``test`` (the held-out
    fonts) for test_heldout, ``train`` (the training fonts) for every other split."""
    return "test" if split == "test_heldout" else "train"


def canonical(obj: Any) -> Any:
    """A config slice with its dict keys sorted, recursively.

    Snakemake compares a rule's params in order, so the same settings written in another key order
    (a config re-dumped by ``yaml.safe_dump``, defaults filled in by the schema) would look changed
    and rerun every job; rules pass ``canonical(slice)`` instead.
    """
    if isinstance(obj, Mapping):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    return obj


def _build(cls, cfg: Mapping[str, Any] | None, where: str, **convert):
    cfg = dict(cfg or {})
    names = {f.name for f in fields(cls)}
    unknown = set(cfg) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(names)}")
    for key, fn in convert.items():
        if key in cfg:
            cfg[key] = fn(cfg[key])
    return cls(**cfg)


def _pair(v) -> tuple:
    return tuple(v)


@dataclass(frozen=True)
class CharsetSpec:
    """How a task's charset is built (see :func:`synth.charset.build_charset`)."""

    source: str = "chars"
    chars: str = ""
    files: tuple[str, ...] = ()
    limit: int = 0
    most_frequent: int = 0
    space: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, where: str = "charset") -> CharsetSpec:
        return _build(cls, cfg, where, files=tuple)

    def build(self) -> list[str]:
        """The characters this spec describes (before the font coverage check)."""
        return build_charset(
            self.source,
            self.chars,
            self.files,
            self.limit,
            most_frequent=self.most_frequent,
            space=self.space,
        )


@dataclass(frozen=True)
class HanziSpec:
    """Single printed hanzi, ``size`` x ``size``."""

    charset: CharsetSpec = field(default_factory=lambda: CharsetSpec("gb2312_level1"))
    size: int = 64
    font_size: tuple[float, float] = (40, 58)
    rotate: float = 15.0
    offset: float = 0.08
    stroke: float = 0.15
    morph: float = 0.2
    aliased: float = 0.0
    exclude_families: tuple[str, ...] = ()
    degrade: Mapping[str, Mapping] = field(default_factory=dict)
    png_level: int = 0


@dataclass(frozen=True)
class ExprSpec:
    """Arithmetic expressions fitted in ``height`` x ``width``."""

    charset: CharsetSpec = field(default_factory=lambda: CharsetSpec("chars", "0123456789+-*()"))
    height: int = 60
    width: int = 180
    font_size: tuple[float, float] = (26, 40)
    baidu_fraction: float = 0.7
    operands: tuple[int, int] = (2, 5)
    max_digits: int = 2
    operators: str = OPERATORS
    spacing: tuple[float, float] = (-1, 4)
    aliased: float = 0.0
    oldstyle: float = 0.0
    exclude_families: tuple[str, ...] = ()
    degrade: Mapping[str, Mapping] = field(default_factory=dict)
    png_level: int = 1

    def __post_init__(self) -> None:
        check_operators(self.operators)


@dataclass(frozen=True)
class LineSpec:
    """Chinese text lines of height ``height``."""

    charset: CharsetSpec = field(default_factory=lambda: CharsetSpec("line"))
    height: int = 32
    length: tuple[int, int] = (1, 20)
    min_char_width: int = 16
    corpus_fraction: float = 0.6
    mix_fraction: float = 0.15
    corpus: tuple[str, ...] = ()
    font_size: tuple[float, float] = (0.7, 0.95)
    aliased: float = 0.0
    exclude_families: tuple[str, ...] = ()
    degrade: Mapping[str, Mapping] = field(default_factory=dict)
    png_level: int = 1


@dataclass(frozen=True)
class ShortSpec:
    """Up to a few characters anywhere in a ``size`` x ``size`` image."""

    charset: CharsetSpec = field(
        default_factory=lambda: CharsetSpec("chars", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    )
    size: int = 40
    length: tuple[int, int] = (1, 4)
    font_size: tuple[float, float] = (10, 14)
    aliased: float = 0.0
    exclude_families: tuple[str, ...] = ()
    degrade: Mapping[str, Mapping] = field(default_factory=dict)
    png_level: int = 0


TaskSpec = HanziSpec | ExprSpec | LineSpec | ShortSpec
TASK_SPECS: dict[str, type] = {
    "hanzi": HanziSpec,
    "expr": ExprSpec,
    "line": LineSpec,
    "short": ShortSpec,
}


def split_config(task: str, cfg: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The settings one split's shards are drawn with: the task's, without ``splits``, and with
    the split's ``degrade`` merged over the task's, degradation by degradation and parameter by
    parameter. A split without ``degrade`` gets the task's settings unchanged (so its shards, and
    the Snakemake params that key them, stay the same).

    Raises:
        ValueError: an unknown degradation or parameter in the split's ``degrade``, naming it.
    """
    out = {k: v for k, v in cfg.items() if k != "splits"}
    override = ((cfg.get("splits") or {}).get(split) or {}).get("degrade")
    if not override:
        return out
    degrade = {name: dict(params or {}) for name, params in (out.get("degrade") or {}).items()}
    for name, params in override.items():
        degrade[name] = {**degrade.get(name, {}), **(params or {})}
    try:
        resolve(degrade)
    except ValueError as e:
        raise ValueError(f"tasks.{task}.splits.{split}: {e}") from None
    out["degrade"] = degrade
    return out


def task_spec(task: str, cfg: Mapping[str, Any] | None) -> TaskSpec:
    """Build a task's spec from its config slice (``splits`` is ignored if present).

    Raises:
        ValueError: an unknown task, key or degradation, naming it.
    """
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASK_SPECS)}")
    cls = TASK_SPECS[task]
    cfg = {k: v for k, v in (cfg or {}).items() if k != "splits"}
    convert: dict[str, Any] = {
        "degrade": resolve,
        "charset": lambda c: CharsetSpec.from_config(c, f"tasks.{task}.charset"),
        "exclude_families": tuple,
        "corpus": lambda files: tuple(files or ()),  # null: unset (jieba's dictionary)
    }
    for f in fields(cls):
        if f.name in ("font_size", "operands", "length", "spacing"):
            convert[f.name] = _pair
    spec = _build(cls, cfg, f"tasks.{task}", **convert)
    if spec.charset.space and task != "line":
        raise ValueError(
            f"tasks.{task}.charset.space: only the line task draws spaces between words"
        )
    return replace(spec, degrade=resolve(spec.degrade))  # defaults filled when degrade is absent


@dataclass(frozen=True)
class ShardSpec:
    """One shard: which task and split, its number, how many samples, the root seed."""

    task: str
    split: str
    shard: int
    samples: int
    seed: int

    def __post_init__(self):
        if self.task not in TASK_IDS:
            raise ValueError(f"unknown task {self.task!r}; valid: {', '.join(TASK_IDS)}")
        if self.split not in SPLIT_IDS:
            raise ValueError(f"unknown split {self.split!r}; valid: {', '.join(SPLIT_IDS)}")
        if self.samples < 1 or self.shard < 0 or self.seed < 0:
            raise ValueError(f"bad shard spec {self}")

    @property
    def entropy(self) -> list[int]:
        """``[seed, task_id, split_id, shard]``: the words of the shard's ``SeedSequence``."""
        return [self.seed, TASK_IDS[self.task], SPLIT_IDS[self.split], self.shard]

    @property
    def key_prefix(self) -> str:
        return f"{self.task}_{self.split}_{self.shard:06d}"
