"""Typed specs of a training run, built from config slices (the ``train`` rule's ``params``, the
CLI's config file, or a JSON spec). Unknown keys are rejected, naming them. Defaults mirror
``definitions.train`` of ``workflow/schemas/config.schema.yaml`` (a test checks they agree).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from models.registry import model_code
from synth.schema import SCHEMA_PATH, config_problems, load_schema
from synth.shards import sha256_file

SCHEDULES = ("cosine", "onecycle", "constant", "wsd")
# How the workflow schedules a train job (Snakemake resources and priority), not how it trains.
SCHEDULING = ("mem_mb", "threads", "priority")
# Settings that change neither the weights nor the history: editing them resumes the same run.
NOT_HASHED = (*SCHEDULING, "tensorboard")
# Settings that change the history but cannot change the weights: log_every only chooses the steps
# that write a history row. Seed copies that differ in one of these are copies still
# (`models.report.seed_table`). Every other hashed setting reaches the weights: checkpoint_every is
# the data stream's segment length and num_workers its number of lanes (each segment and lane a
# freshly seeded pipeline, `models.data.TrainStream`), shuffle_buffer the samples' order, amp the
# arithmetic on a GPU, and val_every, val_batches and early_stop_patience decide where early
# stopping ends a run.
WEIGHT_NEUTRAL = ("log_every",)
# Settings added after runs were first keyed: hashed only when they differ from their default, so
# a run keeps its key (and its finished weights) when an upgrade adds a setting it did not use.
HASHED_WHEN_SET = ("label_smoothing", "ema_decay", "decay_fraction", "align_weight", "align_steps")
# Settings a train job's Snakemake params hold only when they differ from their default, so that
# adding one to the schema (which fills in its default) reruns no job trained before it existed.
PARAMS_WHEN_SET = ("init_from", "decay_fraction", "align_weight", "align_steps")
# The checkpoint a run starts from is keyed by its bytes' sha256, not by its path (`run_hash`).
KEYED_BY_CONTENT = ("init_from",)
# Settings that choose a run's data: the shards they pick are its key (`run_hash`, their names and
# bytes) and a train job's inputs (Snakemake reruns it when they change), so a spec that names the
# same shards by another setting (every shard of a split of 32, or ``shards: 32``) is the same run.
CHOOSES_DATA = ("shards",)
# Settings only some schedules read: under the others they neither key a run nor sit in a train
# job's params, so setting one there (it changes no learning rate) retrains nothing.
READ_BY_SCHEDULES = {"decay_fraction": ("wsd",)}


def _schedule_reads(key: str, schedule: str) -> bool:
    """Whether a run under ``schedule`` reads the training setting ``key``."""
    return key not in READ_BY_SCHEDULES or schedule in READ_BY_SCHEDULES[key]


def _unknown(cls: type, cfg: Mapping[str, Any], where: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(names)}")


# What a JSON value must be for each type a spec's field is annotated with: (check, what).
_JSON_TYPES: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "int | None": (
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "an integer or null",
    ),
    # bool is an int in Python, not in a spec: "amp": true is no number of steps
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "Mapping[str, Any]": (lambda v: v is None or isinstance(v, Mapping), "a mapping (an object)"),
    "TrainSpec": (lambda v: v is None or isinstance(v, Mapping), "a mapping (an object)"),
    "tuple[str, ...]": (
        lambda v: isinstance(v, list | tuple) and all(isinstance(p, str) for p in v),
        "a list of paths",
    ),
}


def _check_types(cls: type, d: Mapping[str, Any], where: str) -> None:
    """A plain dict's values (``--spec`` JSON) against ``cls``'s field annotations: a string
    where a list of paths belongs would be read character by character, and ``"seed": "7"``
    would key another run than 7. Raises a ValueError naming the field."""
    for f in fields(cls):
        if f.name in d:
            check, what = _JSON_TYPES[str(f.type)]
            if not check(d[f.name]):
                shown = repr(d[f.name])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise ValueError(f"{where}{f.name} must be {what}, got {shown}")


def _schema_problems(train: Mapping[str, Any], seed: Any) -> list[str]:
    """A ``--spec``'s training settings and seed against the config schema's, which the
    workflow's configs are held to when they are read: a spec written by hand gets the same
    bounds (``log_every: 0``, a NaN learning rate, a negative seed), each line naming its key."""
    schema = load_schema(SCHEMA_PATH)
    checked = {
        "definitions": schema["definitions"],
        "type": "object",
        "properties": {
            "train": {"$ref": "#/definitions/train"},
            "seed": schema["properties"]["seed"],
        },
    }
    return config_problems({"train": dict(train), "seed": seed}, checked)


@dataclass(frozen=True)
class TrainSpec:
    """The training loop's settings (``experiments.<name>.train``); see the schema for each."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 0.001
    weight_decay: float = 0.0001
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    decay_fraction: float = 0.2
    clip_grad: float = 5.0
    val_every: int = 250
    val_batches: int = 10
    early_stop_patience: int = 0
    checkpoint_every: int = 100
    log_every: int = 50
    num_workers: int = 1
    shuffle_buffer: int = 1000
    curriculum_steps: int = 0
    label_smoothing: float = 0.0
    align_weight: float = 0.0
    align_steps: int = 0
    ema_decay: float = 0.0
    amp: bool = True
    tensorboard: bool = False
    init_from: str | None = None
    shards: int | None = None
    mem_mb: int = 4000
    threads: int = 0
    priority: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule: {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        for name in ("steps", "batch_size", "val_every", "val_batches", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"train.threads must be >= 0 (0 = every core), got {self.threads}")
        if self.curriculum_steps < 0:
            raise ValueError(f"train.curriculum_steps must be >= 0, got {self.curriculum_steps}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.align_weight < 0:
            raise ValueError(f"train.align_weight must be >= 0, got {self.align_weight}")
        if self.align_steps < 0:
            raise ValueError(
                f"train.align_steps must be >= 0 (0 = every step), got {self.align_steps}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"train.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.init_from is not None and not (isinstance(self.init_from, str) and self.init_from):
            raise ValueError(f"train.init_from must be a checkpoint path, got {self.init_from!r}")
        if self.shards is not None and self.shards < 1:
            raise ValueError(f"train.shards must be >= 1 (null = every shard), got {self.shards}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, where: str = "train") -> TrainSpec:
        cfg = dict(cfg or {})
        _unknown(cls, cfg, where)
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainJob:
    """Everything one training run needs: what to train, on what, and where to write.

    Attributes:
        experiment: Experiment name (for logs and ``train.json``).
        task: Data task (``hanzi``, ``expr``, ``line``, ``short``).
        model: Registered model name.
        model_kwargs: Its factory's keyword arguments.
        train: The loop's settings.
        seed: Root seed of the run.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        charset: Path of the task's charset file.
        train_shards: Training shard paths; the run reads the first ``train.shards`` of them
            when that is set (`read_train_shards`).
        val_shards: Validation shard paths.
        out_dir: Folder of ``model.pt``, ``history.csv``, ``train.json`` and ``resume/``.
    """

    experiment: str
    task: str
    model: str
    model_kwargs: Mapping[str, Any]
    train: TrainSpec
    seed: int
    device: str
    charset: str
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...]
    out_dir: str

    def __post_init__(self) -> None:
        n = self.train.shards
        if n is not None and n > len(self.train_shards):
            raise ValueError(
                f"train.shards: {n}, but the job has {len(self.train_shards)} training shard(s)"
            )

    @property
    def read_train_shards(self) -> tuple[str, ...]:
        """The training shards the run reads: the first ``train.shards`` (every one when
        unset)."""
        n = self.train.shards
        return self.train_shards if n is None else self.train_shards[:n]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainJob:
        """From a plain dict (``--spec`` JSON): ``train`` is a dict, shard lists are lists."""
        if not isinstance(d, Mapping):
            raise ValueError(
                f"spec: a JSON object of a training job's keys, not a {type(d).__name__}"
            )
        d = dict(d)
        _unknown(cls, d, "spec")
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"spec: missing key(s) {missing}")
        _check_types(cls, d, "spec: ")
        _check_types(TrainSpec, d["train"] or {}, "spec: train.")
        problems = _schema_problems(d["train"] or {}, d["seed"])
        if problems:
            raise ValueError("spec: " + "; ".join(problems))
        d["train"] = TrainSpec.from_config(d["train"], where="spec: train")
        d["model_kwargs"] = dict(d["model_kwargs"] or {})
        d["train_shards"] = tuple(str(p) for p in d["train_shards"])
        d["val_shards"] = tuple(str(p) for p in d["val_shards"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["train_shards"] = list(self.train_shards)
        d["val_shards"] = list(self.val_shards)
        return d


def hashed_settings(spec: TrainSpec) -> dict[str, Any]:
    """The training settings that key a run: all but `NOT_HASHED`, `KEYED_BY_CONTENT` and
    `CHOOSES_DATA`, the `HASHED_WHEN_SET` ones only when they differ from their default, and the
    `READ_BY_SCHEDULES` ones only under a schedule that reads them."""
    defaults = {f.name: f.default for f in fields(TrainSpec)}
    return {
        k: v
        for k, v in spec.to_dict().items()
        if k not in NOT_HASHED + KEYED_BY_CONTENT + CHOOSES_DATA
        and not (k in HASHED_WHEN_SET and v == defaults[k])
        and _schedule_reads(k, spec.schedule)
    }


def train_job_params(train: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings (``experiments.<name>.train``, the schema's defaults filled in) that
    a train job's Snakemake params hold, so that editing one reruns the job: all but the
    `SCHEDULING` hints (how to schedule the job, not how to train) and `CHOOSES_DATA` (the job's
    input shards hold it), the `PARAMS_WHEN_SET` ones only when they differ from their default
    (a run that does not use a setting added later keeps its params), and the
    `READ_BY_SCHEDULES` ones only under a schedule that reads them."""
    defaults = {f.name: f.default for f in fields(TrainSpec)}
    schedule = train.get("schedule", defaults["schedule"])
    return {
        k: v
        for k, v in train.items()
        if k not in SCHEDULING + CHOOSES_DATA
        and not (k in PARAMS_WHEN_SET and v == defaults.get(k))
        and _schedule_reads(k, schedule)
    }


def recorded_settings(spec: TrainSpec, threads: int) -> dict[str, Any]:
    """The training settings a run records (``model.pt``'s meta, ``train.json``): its spec with
    ``threads`` the CPU threads it trained with, and without the other `SCHEDULING` hints.

    The train rule's job holds no scheduling settings (editing them must rerun nothing), so
    recording the spec as given would write the defaults (``threads: 0``, every core) for a run
    the rule gave one thread, and other bytes than ``python -m models.train`` writes for the
    same job. The thread count is the one setting of them the weights depend on.
    `CHOOSES_DATA` is left out for the same reason (the rule gives the job its shards, not the
    setting); ``train.json`` records how many shards the run read.
    """
    return {
        k: (threads if k == "threads" else v)
        for k, v in spec.to_dict().items()
        if k == "threads" or k not in SCHEDULING + CHOOSES_DATA
    }


def distinct_settings(train: Mapping[str, Any]) -> dict[str, Any]:
    """A run's training settings (a checkpoint's ``train``, `recorded_settings`) that key it
    (all but `NOT_HASHED`) and differ from their defaults, less ``steps`` and ``init_from``, which
    the reports give columns of their own: what tells two experiments of one model and kwargs
    apart (``{"lr": 0.002}``), the report tables' ``train_settings``. A setting only other
    schedules read, or one this release does not know (a checkpoint of another), is left out.

    Args:
        train: The recorded settings, a plain dict.

    Returns:
        Setting -> value, sorted by name.
    """
    defaults = TrainSpec().to_dict()
    schedule = train.get("schedule", defaults["schedule"])
    return {
        k: v
        for k, v in sorted(train.items())
        if k in defaults
        and k not in (*NOT_HASHED, "steps", "init_from")
        and v != defaults[k]
        and _schedule_reads(k, schedule)
    }


def settings_drift(
    recorded: Mapping[str, Any],
    experiment: Mapping[str, Any],
    seed: int,
    train_shards: int | None = None,
) -> list[str]:
    """How an experiment's config differs from what a finished run recorded (its
    ``train.json``): ``key: recorded -> configured`` for the task, model, model kwargs, seed,
    the training settings that key a run (`hashed_settings`, and ``init_from``'s path) and the
    number of training shards; empty when they agree.

    Args:
        recorded: The run's ``train.json``.
        experiment: ``experiments.<name>`` of the config (``task``, ``model``,
            ``model_kwargs``, ``train``).
        seed: The config's seed.
        train_shards: How many training shards the config gives the experiment (its
            ``train.shards``, or every shard of its task's split), compared with the run's
            ``train_shards`` when both are known (runs before it was recorded have none).
    """
    drift = []
    for key in ("task", "model", "model_kwargs"):
        if recorded.get(key) != experiment.get(key):
            drift.append(f"{key}: {recorded.get(key)!r} -> {experiment.get(key)!r}")
    if recorded.get("seed") != seed:
        drift.append(f"seed: {recorded.get('seed')!r} -> {seed!r}")
    try:
        old_spec = TrainSpec.from_config(recorded.get("train") or {})
    except (TypeError, ValueError):
        return [*drift, "train: unreadable in train.json"]
    new_spec = TrainSpec.from_config(experiment.get("train") or {})
    old, new = old_spec.to_dict(), new_spec.to_dict()
    # Either side's: a setting hashed only when set (label_smoothing) may be set on one alone.
    compared = (*hashed_settings(old_spec), *hashed_settings(new_spec), "init_from")
    for key in sorted(set(compared)):
        if old.get(key) != new.get(key):
            drift.append(f"train.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    read = recorded.get("train_shards")
    if train_shards is not None and read is not None and read != train_shards:
        drift.append(f"training shards: {read!r} -> {train_shards!r}")
    return drift


def run_hash(job: TrainJob, charset: Sequence[str], world_size: int = 1) -> str:
    """Key of a run's resume state: what the weights depend on (model and the digest of its
    code, `models.registry.model_code`, training spec but
    `NOT_HASHED`, seed, charset, the shards: their names and the sha256 of their bytes, the
    sha256 of the ``init_from`` checkpoint, and the number of processes under ``torchrun``,
    which splits the data stream). An edited config, regenerated data (new fonts, say), another
    starting checkpoint or another process count gets a fresh key, so it never resumes, or
    reuses the finished weights of, a stale run; output folders and the device are left out (a
    run may resume on another machine). Hashing the shards reads them once, about
    1 s per GB."""
    return run_hashes(job, charset, world_size)[0]


def run_hashes(job: TrainJob, charset: Sequence[str], world_size: int = 1) -> tuple[str, str]:
    """`run_hash` for ``world_size`` processes and for one (the job as Snakemake runs it), the
    shards hashed once: a run on another number of processes is the same job's."""
    train = hashed_settings(job.train)
    key = {
        "task": job.task,
        "model": job.model,
        "model_code": model_code(job.model),
        "model_kwargs": dict(sorted(job.model_kwargs.items())),
        "train": train,
        "seed": job.seed,
        "charset": "".join(charset),
        "train_shards": [[s.rsplit("/", 1)[-1], sha256_file(s)] for s in job.read_train_shards],
        "val_shards": [[s.rsplit("/", 1)[-1], sha256_file(s)] for s in job.val_shards],
    }
    if job.train.init_from is not None:  # a run from random weights keeps its key
        key["init_from"] = sha256_file(job.train.init_from)
    if job.train.curriculum_steps % job.train.checkpoint_every:
        # Its curriculum's stages end inside checkpoint segments, which the training stream now
        # cuts there (`models.data.TrainStream.piece_start`): another stream than such a run
        # drew before, so a fresh key, not a resume of the old one.
        key["stream"] = "curriculum pieces"
    one = _digest(key)
    if world_size > 1:  # one process keeps the key it had before this entry existed
        return _digest({**key, "world_size": world_size}), one
    return one, one


def _digest(key: Mapping[str, Any]) -> str:
    blob = json.dumps(key, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
