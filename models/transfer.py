"""Starting a training from another run's weights (``train.init_from``): fine-tuning.

    model.pt of run A  ->  every tensor of the new model that A has, copied;
                           the output layer's rows matched character by character

A run on new fonts, a larger charset or another task's data can start from a trained model of
the same architecture instead of from random weights. The source is read like any checkpoint
(``torch.load(weights_only=True)``: one holding pickled code is refused). Its model name must
be the new run's, and every tensor must have the new model's shape, except the class-indexed
ones (the output layer: `class_tensors`), whose rows are matched by character: a character both
charsets have keeps its trained row wherever it now sits, the special class (CTC blank,
attention terminal) keeps its own, and a character the source never saw keeps the new model's
random row. So the charsets may differ in order, size and content.

Only the weights are taken: the optimizer, learning-rate schedule and step start afresh (a new
warmup), and the run's key (`models.specs.run_hash`) holds the sha256 of the source's bytes,
so changing the source file starts the fine-tuning again rather than resuming it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import (
    CheckpointError,
    ModelMeta,
    check_meta,
    load_checkpoint,
    weight_problems,
)
from models.families import make_family
from models.registry import build_model, get_entry
from synth.shards import sha256_file

log = logging.getLogger(__name__)


class TransferError(CheckpointError):
    """A source checkpoint whose weights cannot start this model (names the file and tensor)."""


@dataclass(frozen=True)
class Transfer:
    """What `init_from` took from its source.

    Attributes:
        path: The source checkpoint.
        sha256: Its bytes' sha256.
        model: Its model name.
        step: The step it was written at.
        tensors: Tensors copied whole (weights and batch-norm statistics).
        classes_kept: The new charset's characters whose output rows came from the source.
        classes_new: The new charset's characters the source did not have (random rows).
        classes_dropped: The source's characters the new charset does not have.
    """

    path: str
    sha256: str
    model: str
    step: int
    tensors: int
    classes_kept: int
    classes_new: int
    classes_dropped: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def class_tensors(name: str, num_classes: int, model_kwargs: Mapping[str, Any]) -> set[str]:
    """The state-dict entries of model ``name`` whose first axis is its output classes: those
    whose shape changes with ``num_classes`` (found by building it with one class more on the
    meta device, so no memory is spent)."""
    with torch.device("meta"):
        a = build_model(name, num_classes, **model_kwargs).state_dict()
        b = build_model(name, num_classes + 1, **model_kwargs).state_dict()
    out = set()
    for key, t in a.items():
        if t.shape != b[key].shape:
            if t.shape[1:] != b[key].shape[1:] or b[key].shape[0] != t.shape[0] + 1:
                raise ValueError(
                    f"model {name!r}: {key} {tuple(t.shape)} grows with the classes on an axis "
                    "other than its first; fine-tuning (init_from) carries over the rows of the "
                    "characters both charsets share, so a class layer must have the classes on "
                    "its first axis (as an nn.Linear's out_features)"
                )
            out.add(key)
    return out


def init_from(
    model: nn.Module,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    charset: Sequence[str],
    path: str | os.PathLike,
) -> Transfer:
    """Load the weights of checkpoint ``path`` into ``model`` (a freshly built ``model_name``
    over ``charset``), matching the output rows by character.

    Raises:
        UntrustedCheckpointError: The file holds pickled code.
        CheckpointError: Missing, truncated, or not a synthocr checkpoint.
        TransferError: Another model, or a tensor of another shape (another width, hidden size
            or input size), naming it and the model kwargs that differ; or a weight that holds
            NaN or infinite values.
    """
    where = f"train.init_from {path}"
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:  # its class kept (UntrustedCheckpointError), the key named
        hint = "" if Path(path).is_absolute() else f" (relative paths are read from {Path.cwd()})"
        raise type(e)(f"train.init_from: {e}{hint}") from None
    meta = ModelMeta.from_dict(ckpt["meta"], where=str(path))
    check_meta(meta, where=str(path))
    if meta.model != model_name:
        raise TransferError(
            f"{where} holds model {meta.model!r}; this experiment trains {model_name!r} "
            "(weights start only a model of the same architecture)"
        )
    source: Mapping[str, torch.Tensor] = ckpt["state_dict"]
    target = model.state_dict()
    hint = _kwargs_hint(model_name, meta.model_kwargs, model_kwargs)
    missing = sorted(set(target) - set(source))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise TransferError(
            f"{where}: its weights do not fit {model_name!r} (missing {missing[:3]}, "
            f"unexpected {extra[:3]}){hint}"
        )
    # a value that is no dense tensor, or of another kind of number (shapes are checked below,
    # the class rows apart)
    wrong = weight_problems(source, target, shapes=False)
    if wrong:
        raise TransferError(f"{where}: {'; '.join(wrong[:3])}")

    family = make_family(model_name, charset, model_kwargs)
    src_family = make_family(model_name, meta.charset, meta.model_kwargs)
    offset = family.offset
    known = set(meta.charset)
    shared = [ch for ch in charset if ch in known]
    rows_to = torch.tensor(list(range(offset)) + family.label_indices(shared), dtype=torch.long)
    rows_from = torch.tensor(
        list(range(offset)) + src_family.label_indices(shared), dtype=torch.long
    )
    by_class = class_tensors(model_name, len(charset), model_kwargs)

    state = {}
    for key, new in target.items():
        old = source[key]
        # an output tensor has a row per source class; any other, this model's shape
        fits = (
            old.shape[1:] == new.shape[1:] and old.shape[0] == len(meta.charset) + offset
            if key in by_class
            else old.shape == new.shape
        )
        if not fits:
            raise TransferError(
                f"{where}: {key} is {tuple(old.shape)}, this model's {tuple(new.shape)}{hint}"
            )
        if old.is_floating_point() and not bool(torch.isfinite(old).all()):
            # a damaged file: training from it would stop at its first step on a NaN loss
            raise TransferError(f"{where}: weight {key} holds NaN or infinite values")
        if key in by_class:
            state[key] = new.detach().clone()
            state[key][rows_to] = old.to(new.dtype)[rows_from]
        else:
            state[key] = old.to(new.dtype)
    model.load_state_dict(state)

    kept = len(shared)
    transfer = Transfer(
        path=str(path),
        sha256=sha256_file(path),
        model=meta.model,
        step=meta.step,
        tensors=len(target) - len(by_class),
        classes_kept=kept,
        classes_new=len(charset) - kept,
        classes_dropped=len(meta.charset) - kept,
    )
    log.info(
        "weights from %s (%s, step %s): %d of %d characters keep their output rows, %d new, "
        "%d of the source's dropped",
        path,
        meta.model,
        meta.step,
        kept,
        len(charset),
        transfer.classes_new,
        transfer.classes_dropped,
    )
    if not kept:
        log.warning(
            "%s shares no character with this charset: only the layers before the output "
            "start trained",
            where,
        )
    return transfer


def _kwargs_hint(name: str, source: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    defaults = get_entry(name).kwargs
    source, target = {**defaults, **source}, {**defaults, **target}
    keys = sorted(k for k in set(source) | set(target) if source.get(k) != target.get(k))
    if not keys:
        return ""
    diffs = ", ".join(f"{k}: {source.get(k)!r} there, {target.get(k)!r} here" for k in keys)
    return f"; model_kwargs differ ({diffs})"
