"""Images -> `Prediction`s with a loaded model: the inference path shared by evaluation and
recognition (batching, preprocessing, the family's decoder, expression values)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from models.checkpoint import ModelMeta
from models.devices import resolve_device
from models.families import Prediction, make_family
from models.preprocess import ImageLike, bucket_width, min_width, pad_batch, prepare_image
from models.registry import FIXED_WIDTH_TASKS, grammar_for
from synth.text import expression_value


@torch.inference_mode()
def predict(
    model: nn.Module,
    meta: ModelMeta,
    images: Sequence[ImageLike],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    top_k: int = 5,
    *,
    decoder: str = "greedy",
    beam_width: int = 5,
    task_settings: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """Read images with a model.

    Line images are batched by width bucket (`models.preprocess.bucket_width`, in input order
    within a bucket) and padded to their bucket's width, so an image's reading does not depend
    on the other images read with it; the predictions come back in input order. A model of a
    task drawn at one width (`models.registry.FIXED_WIDTH_TASKS`: ``expr``) never saw padding
    in training: it reads each image at its own width (at least `models.preprocess.min_width`),
    unpadded, so every frame it is given is the image's own (it may emit its last character at
    the last frame, which padding would move past the image's frames).

    Args:
        model: The model (eval mode is set here).
        meta: Its checkpoint meta (charset, geometry, model name and kwargs).
        images: PIL images (any mode) or ``H, W`` arrays, any size.
        batch_size: Images per forward pass.
        device: Where to run (default: where the model's parameters are).
        top_k: Alternatives per prediction (classification; CTC and the reader with ``beam``).
        decoder: CTC decoder: ``greedy``, ``beam``, or ``grammar`` (the beam held to the
            task's grammar, `models.registry.grammar_for`: for ``expr``, readings that evaluate).
        beam_width: CTC beam width.
        task_settings: The task's settings (``tasks.<task>`` of the config it was trained with):
            ``grammar`` then keeps only the texts they draw (``expr``: operand counts, digits,
            one pair of parentheses; `synth.text.DrawnExpressionGrammar`).

    Returns:
        One `Prediction` per image; for the ``expr`` task ``value`` holds the value of the read
        expression (None when it does not parse).
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = resolve_device(device)
    model.eval()
    family = make_family(meta.model, meta.charset, meta.model_kwargs)
    grammar = (
        grammar_for(meta.model, meta.task, task_cfg=task_settings) if decoder == "grammar" else None
    )
    out: list[Prediction | None] = [None] * len(images)
    for idx, batch, widths in batches(meta, images, batch_size):
        outputs = model(batch.to(device))
        preds = family.decode(
            outputs, widths, decoder=decoder, beam_width=beam_width, k=top_k, grammar=grammar
        )
        for i, p in zip(idx, preds, strict=True):
            if meta.task == "expr" and p.grammatical:  # a grammar's fallback prefix: no value
                p.value = expression_value(p.text)
            out[i] = p
    return out  # type: ignore[return-value]


def batches(
    meta: ModelMeta, images: Sequence[ImageLike], batch_size: int = 64
) -> Iterator[tuple[list[int], torch.Tensor, list[int]]]:
    """The batches `predict` feeds a model: ``(indices, batch, widths)``, the images'
    indices in ``images``, the preprocessed ``N, 1, H, W`` batch and each image's own width in
    it. Line images are grouped by width bucket and padded to it, except a fixed-width task's
    (see `predict`); the buckets come narrowest first, in input order within a bucket.
    `models.quantize` calibrates on these same batches.

    Raises:
        ValueError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    arrays = [prepare_image(im, meta.input) for im in images]
    own_width = meta.task in FIXED_WIDTH_TASKS
    buckets: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        if meta.input["kind"] != "line":
            bucket = 0
        elif own_width:
            bucket = max(a.shape[1], min_width(meta.input))
        else:
            bucket = bucket_width(a.shape[1], meta.input)
        buckets.setdefault(bucket, []).append(i)
    for bucket, members in sorted(buckets.items()):
        for start in range(0, len(members), batch_size):
            idx = members[start : start + batch_size]
            batch, widths = pad_batch([arrays[i] for i in idx], meta.input, width=bucket)
            yield idx, batch, widths
