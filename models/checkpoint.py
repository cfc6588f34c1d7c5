"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, and
self-describing, so a model can be rebuilt from the file alone.

A checkpoint is a plain dict (only tensors, numbers, strings, lists, tuples and dicts: nothing
pickled as code)::

    {
        "format": "synthocr-checkpoint", "version": 1,
        "meta": {"model": "crnn_vgg", "model_kwargs": {...}, "charset": ["a", ...],
                 "task": "line", "input": {"kind": "line", "height": 32},
                 "train": {...training spec...}, "step": 3000},
        "state_dict": {...model weights...},
        # resumable checkpoints only (results/models/{experiment}/resume/...):
        "resume": {"optimizer": ..., "rng": ..., "history": [...], ...},
    }

``model.pt`` (the final artefact) has no ``resume`` entry: it holds the weights in float32 on
the CPU and is a few megabytes. Evaluation, recognition and export all load through
`load_model`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.registry import TASK_INPUT, build_model, get_entry, input_spec, package_of
from synth.atomic import atomic_write

log = logging.getLogger(__name__)

FORMAT = "synthocr-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or not a synthocr checkpoint (names the file)."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that holds pickled code (objects of custom classes): refused, never run."""


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint says about its model: enough to rebuild it and feed it.

    Attributes:
        model: Registered model name (`models.registry.MODELS`).
        model_kwargs: The factory's keyword arguments used at training time.
        charset: The classes, in class-index order (``charset[i]`` is class ``i``; CTC blank
            and attention terminal symbols are added by the model on top).
        task: The data task it was trained on (``hanzi``, ``expr``, ``line``, ``short``).
        input: Input geometry, as `models.registry.input_spec` gives it:
            ``{"kind": "square", "size": S}`` or ``{"kind": "line", "height": H}``.
        train: The training spec (plain dict), for the record.
        step: Optimizer steps taken when the checkpoint was written.
        package: For a model of an installed package (an entry point, `models.registry`), that
            package and its version, so that a machine without it can say what to install;
            empty for the built-in models (and then not written).
    """

    model: str
    model_kwargs: dict[str, Any]
    charset: list[str]
    task: str
    input: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    package: str = ""

    def __post_init__(self) -> None:
        if not self.input:
            object.__setattr__(self, "input", input_spec(self.model, **self.model_kwargs))
        if not self.package:
            object.__setattr__(self, "package", package_of(self.model))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["charset"] = list(self.charset)
        if not self.package:
            del d["package"]  # a built-in model's meta stays as it was
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "checkpoint") -> ModelMeta:
        if not isinstance(d, Mapping):
            raise CheckpointError(f"{where}: meta is {_kind(d)}, not a mapping")
        missing = [k for k in ("model", "model_kwargs", "charset", "task") if k not in d]
        if missing:
            raise CheckpointError(f"{where}: meta lacks {', '.join(missing)}")
        # What a foreign or damaged file may hold instead: named here, not by int() or dict().
        wrong = [
            f"meta.{key} is {_kind(d.get(key))}, not {wanted}"
            for key, wanted, fits in (
                ("model", "a string", lambda v: isinstance(v, str)),
                ("task", "a string", lambda v: isinstance(v, str)),
                ("model_kwargs", "a mapping", lambda v: isinstance(v, Mapping)),
                (
                    "charset",
                    "a list of strings",
                    lambda v: isinstance(v, list | tuple) and all(isinstance(c, str) for c in v),
                ),
                ("input", "a mapping", lambda v: v is None or isinstance(v, Mapping)),
                ("train", "a mapping", lambda v: v is None or isinstance(v, Mapping)),
                (
                    "step",
                    "a whole number >= 0",
                    lambda v: (
                        v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                    ),
                ),
                ("package", "a string", lambda v: v is None or isinstance(v, str)),
            )
            if not fits(d.get(key))
        ]
        if wrong:
            raise CheckpointError(f"{where}: " + "; ".join(wrong))
        return cls(
            model=str(d["model"]),
            model_kwargs=dict(d["model_kwargs"]),
            charset=list(d["charset"]),
            task=str(d["task"]),
            input=dict(d.get("input") or {}),
            train=dict(d.get("train") or {}),
            step=int(d.get("step") or 0),
            package=str(d.get("package") or ""),
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel, DataParallel and/or ``torch.compile``
    wrappers. Only those: a model of one's own may well hold a layer named ``module``."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename into place.

    A reader (or a rerun after SIGKILL) sees the old file or the new one, never half of one.
    """
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def make_checkpoint(
    model: nn.Module,
    meta: ModelMeta,
    resume: Mapping[str, Any] | None = None,
    cpu_float: bool = False,
) -> dict[str, Any]:
    """The checkpoint dict for ``model`` (unwrapped from DDP/compile).

    Args:
        model: The model (its ``state_dict`` is stored).
        meta: What the file says about the model.
        resume: Optimizer, RNG, history... for a resumable checkpoint; None for ``model.pt``.
        cpu_float: Store weights on the CPU, floating tensors as float32 (portable ``model.pt``).
    """
    state = unwrap(model).state_dict()
    if cpu_float:
        state = {
            k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()
        }
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "meta": meta.to_dict(),
        "state_dict": state,
    }
    if resume is not None:
        ckpt["resume"] = dict(resume)
    return ckpt


def save_model(path: str | os.PathLike, model: nn.Module, meta: ModelMeta) -> None:
    """Write the final, small ``model.pt``: weights (CPU, float32) and meta, no optimizer."""
    save_atomic(make_checkpoint(model, meta, cpu_float=True), path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``torch.load(weights_only=True)``).

    Raises:
        UntrustedCheckpointError: The file holds pickled code (an object of a custom class).
        CheckpointError: Missing, truncated or not a synthocr checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder (give its model.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..), or in the legacy format a pickle (protocol 2+)
    if head and not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint (an .onnx export, or another file?)"
        )
    try:
        with warnings.catch_warnings():
            # a plain pickle (not torch.save's) draws torch's protocol warning before the
            # error below, which says what the file is
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not found and not re.search(r"GLOBAL|[Rr]educe|BUILD", str(e)):
            # Not a pickle of objects at all: a text file, an ONNX export, random bytes.
            why = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
            reason = why.group(1) if why else str(e).strip().splitlines()[0]
            raise CheckpointError(
                f"checkpoint {path} is not a PyTorch checkpoint (an .onnx export, or another "
                f"file?): {reason}"
            ) from None
        what = f" ({found.group(1)})" if found else ""
        raise UntrustedCheckpointError(
            f"checkpoint {path} holds pickled code{what}: refused, since only tensors and plain "
            "containers are trusted (torch.load(weights_only=True)); use a model.pt that "
            "synthocr's training wrote, from a source you trust"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, IndexError, ValueError, struct.error) as e:
        why = str(e).strip() or type(e).__name__
        if not head:
            why = "empty file"
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupt): {why}"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a {FORMAT} file (format={_format_of(ckpt)!r})"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {ckpt.get('version')!r}; this code reads {VERSION}"
        )
    for key in ("meta", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
        if not isinstance(ckpt[key], Mapping):
            raise CheckpointError(f"checkpoint {path}: {key} is {_kind(ckpt[key])}, not a mapping")
    return ckpt


def _kind(value: Any) -> str:
    """How a message names a value of the wrong type: ``the int 5``, ``the str 'x'``."""
    shown = repr(value)
    return f"the {type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _format_of(obj: Any) -> Any:
    return obj.get("format") if isinstance(obj, dict) else type(obj).__name__


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """The `ModelMeta` of a checkpoint file."""
    return ModelMeta.from_dict(load_checkpoint(path)["meta"], where=str(path))


TASKS = ("hanzi", "expr", "line", "short")


def check_meta(meta: ModelMeta, where: str = "checkpoint", *, described: bool = False) -> None:
    """Refuse meta that no trained model has: an unknown task, a charset the model's family
    cannot use (a repeated or multi-character entry), an input geometry other than the model's.

    Args:
        meta: The meta to check.
        where: The file, for messages.
        described: Accept a model known only from a file's own description
            (`models.registry.add_described`; an ``.onnx`` file's, which needs no factory);
            a checkpoint's model must be registered, since its weights need the factory.

    Raises:
        CheckpointError: Naming ``where`` and the problem.
    """
    from models.families import make_family

    if meta.task not in TASKS:
        raise CheckpointError(f"{where}: unknown task {meta.task!r}; valid: {', '.join(TASKS)}")
    try:
        if not described:
            get_entry(meta.model, described=False)
        make_family(meta.model, meta.charset, meta.model_kwargs)
        expected = input_spec(meta.model, **meta.model_kwargs)
    except (ValueError, KeyError, TypeError) as e:
        hint = f" (it was trained with the package {meta.package})" if meta.package else ""
        raise CheckpointError(
            f"{where}: model {meta.model!r} cannot be rebuilt{hint}: {e}"
        ) from None
    if meta.input and meta.input != expected:
        raise CheckpointError(
            f"{where}: input geometry {meta.input} is not model {meta.model!r}'s {expected}"
        )
    if expected.get("kind") != TASK_INPUT[meta.task]:
        # No training writes this (the config check refuses such an experiment): the task
        # decides how a reading is read (an expression's value, the grammar, fixed widths)
        raise CheckpointError(
            f"{where}: model {meta.model!r} reads {expected.get('kind')} images, but the file's "
            f"task {meta.task!r} has {TASK_INPUT[meta.task]} images: a damaged or edited meta"
        )


def _number_kind(t: torch.Tensor) -> str:
    if t.is_complex():
        return "complex"
    if t.is_floating_point():
        return "floating-point"
    return "boolean" if t.dtype == torch.bool else "integer"


def weight_problems(
    stored: Mapping[str, Any], expected: Mapping[str, torch.Tensor], *, shapes: bool = True
) -> list[str]:
    """What keeps the ``stored`` weights from loading as ``expected`` (a model's state dict,
    on the meta device or not), each naming its key: a key missing or unexpected, a value that
    is no dense tensor, another kind of number (a complex or integer tensor for a floating-point
    weight, which loading would cast without a word) and, with ``shapes``, another shape."""
    problems = [f"missing {k}" for k in expected if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in expected]
    for key, want in expected.items():
        have = stored.get(key)
        if have is None:
            continue
        if not isinstance(have, torch.Tensor):
            problems.append(f"{key} is {_kind(have)}, not a tensor")
        elif have.layout != torch.strided:
            problems.append(f"{key} is a {str(have.layout).removeprefix('torch.')} tensor")
        elif _number_kind(have) != _number_kind(want):
            problems.append(
                f"{key} holds {_number_kind(have)} values ({have.dtype}), the model's "
                f"{_number_kind(want)} ({want.dtype})"
            )
        elif shapes and have.shape != want.shape:
            problems.append(f"{key} is {tuple(have.shape)}, the model's {tuple(want.shape)}")
    return problems


def model_from_checkpoint(ckpt: Mapping[str, Any], where: str = "checkpoint") -> nn.Module:
    """Rebuild the model of a loaded checkpoint dict (registry + weights), in eval mode, on CPU."""
    meta = ModelMeta.from_dict(ckpt["meta"], where=where)
    check_meta(meta, where)
    try:
        # first on the meta device, which allocates nothing: kwargs edited to ask for a huge
        # model are found out by its weights' shapes before any memory is spent on them
        with torch.device("meta"):
            shell = build_model(meta.model, len(meta.charset), **meta.model_kwargs)
    except ValueError as e:
        raise CheckpointError(f"{where}: cannot rebuild model {meta.model!r}: {e}") from e
    problems = weight_problems(ckpt["state_dict"], shell.state_dict())
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{where}: weights do not fit model {meta.model!r}: {'; '.join(problems[:3])}{more}"
        )
    model = build_model(meta.model, len(meta.charset), **meta.model_kwargs)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not fit model {meta.model!r}: {e}") from e
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            # Training never saves these (a NaN loss stops it and keeps the last good
            # checkpoint): a damaged or foreign file, whose readings would all be NaN.
            raise CheckpointError(f"{where}: weight {name} holds NaN or infinite values")
    return model.eval()


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelMeta]:
    """Rebuild a model from a checkpoint file alone.

    Args:
        path: ``model.pt`` (or a resumable checkpoint).
        device: Where to put the model.

    Returns:
        The model in eval mode on ``device``, and its `ModelMeta`.
    """
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, where=str(path))
    return model.to(device), ModelMeta.from_dict(ckpt["meta"], where=str(path))
