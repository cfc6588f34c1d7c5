"""Images -> model input: the one preprocessing path of training, evaluation, recognition and
export.

Every image becomes grayscale and is resized to the model's geometry (``models.registry.
input_spec``) without ever being squashed:

- ``{"kind": "square", "size": S}`` (hanzi, reader): an image that is not square is resized so
  that its longer side is ``S`` (each side ``round(side * S / longer)``, half to even, at least
  1 px), then pasted at ``((S - w) // 2, (S - h) // 2)`` on an ``S x S`` square of its own
  background (`background_level` of the image before it was resized).
- ``{"kind": "line", "height": H}`` (CRNNs): resized to height ``H`` keeping the aspect ratio,
  so the width follows the text; a batch is padded on the right to its widest image with each
  image's own background (the median of its border pixels), and the widths before padding are
  returned so CTC input lengths can be computed.

Pixels are then scaled to [0, 1] and normalised as ``(x - MEAN) / STD`` (to [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.images import array_to_image, to_gray

MEAN = 0.5
STD = 0.5
RESAMPLE = Image.Resampling.BILINEAR
# How `prepare_image` does what it does, in the words `models.export` writes into an ONNX file's
# metadata, so that a reader of the file alone can do the same: a square model's image scaled
# so its longer side is the square's, each side rounded as Python's `round` rounds an exact
# ratio (half to even), centred, on its background (`background_level`) taken before scaling;
# a line padded with its background taken after.
SQUARE_FIT = "longer-side"
SQUARE_ALIGN = "centre"
ROUNDING = "half-even"
BACKGROUND = "border-median"
BACKGROUND_OF = {"square": "unscaled", "line": "scaled"}

ImageLike = Image.Image | np.ndarray


def _as_gray(image: ImageLike) -> Image.Image:
    """A PIL image in mode ``L``: the same conversion `models.images` gives users' images."""
    if isinstance(image, np.ndarray):
        image = array_to_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    return to_gray(image)


def background_level(arr: np.ndarray) -> int:
    """The image's background grey level: the median of its border pixels (``H, W`` uint8): its
    first and last rows and columns, corners counted twice, a median halfway between two levels
    rounded down (`BACKGROUND`)."""
    if arr.size == 0:
        return 255
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return int(np.median(border))


def prepare_image(image: ImageLike, geometry: Mapping[str, Any]) -> np.ndarray:
    """One image -> ``H, W`` uint8 array at the model's geometry (not yet padded or normalised).

    Args:
        image: A PIL image (any mode) or an ``H, W`` / ``H, W, 1`` array (uint8, or float in
            [0, 1]).
        geometry: ``{"kind": "square", "size": S}`` or ``{"kind": "line", "height": H}``.

    Returns:
        ``S, S`` for square models; ``H, W'`` with ``W' = round(W * H / h)`` for line models.
    """
    img = _as_gray(image)
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"empty image ({w}x{h})")
    kind = geometry["kind"]
    if kind == "square":
        size = int(geometry["size"])
        if w != h:
            # Scaled first, then padded: padding a long strip to a square first would make an
            # image of its longer side squared. ``side * size / longer``, not ``side * (size /
            # longer)``: the rounded ratio is off by an ulp, and an exact half (a 117 px side of
            # 624 at 40: 7.5) then rounds down or up as that ulp falls, not half to even.
            longer = max(w, h)
            small = img.resize(
                (max(1, round(w * size / longer)), max(1, round(h * size / longer))), RESAMPLE
            )
            canvas = Image.new("L", (size, size), background_level(np.asarray(img)))
            canvas.paste(small, ((size - small.width) // 2, (size - small.height) // 2))
            img = canvas
        elif img.size != (size, size):
            img = img.resize((size, size), RESAMPLE)
    elif kind == "line":
        height = int(geometry["height"])
        if h != height:
            new_w = max(1, round(w * height / h))
            img = img.resize((new_w, height), RESAMPLE)
    else:
        raise ValueError(f"unknown input kind {kind!r}; valid: square, line")
    return np.asarray(img, dtype=np.uint8)


def min_width(geometry: Mapping[str, Any]) -> int:
    """Narrowest batch a line model is fed (narrower images are padded): half the height, so
    every CTC model yields at least a few frames even for a one-character crop."""
    if geometry["kind"] == "line":
        return max(1, int(geometry["height"]) // 2)
    return int(geometry["size"])


def bucket_width(width: int, geometry: Mapping[str, Any]) -> int:
    """The width a line image of ``width`` px is padded to when it is read on its own merits:
    at least `min_width`, rounded up to a multiple of it (16 px at height 32).

    Recognition batches only images of one bucket together (`models.predict.predict`), so an
    image's input, and its reading, never depend on the other images read with it: a
    bidirectional RNN reads padding too, and a short line padded to the width of a long one
    would be read differently than alone. Square images need no bucket: their width is fixed.
    """
    step = min_width(geometry)
    return max(step, -(-int(width) // step) * step)


def pad_batch(
    arrays: Sequence[np.ndarray], geometry: Mapping[str, Any], width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared ``H, W_i`` uint8 arrays -> a normalised batch.

    Each image is padded on the right, with its own background level, to the batch's widest
    image (at least `min_width`, and at least ``width``).

    Returns:
        ``images`` float32 ``N, 1, H, W_max`` normalised to [-1, 1], and ``widths`` int64 ``N``:
        each image's width before padding (at least `min_width`), for CTC input lengths.
    """
    if not arrays:
        raise ValueError("empty batch")
    height = arrays[0].shape[0]
    floor = min_width(geometry)
    widths = [max(a.shape[1], floor) for a in arrays]
    width = max(*widths, width)
    out = np.empty((len(arrays), 1, height, width), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.shape[0] != height:
            raise ValueError(f"image {i} has height {a.shape[0]}, the batch has {height}")
        w = a.shape[1]
        out[i, 0, :, :w] = a
        if w < width:
            out[i, 0, :, w:] = background_level(a)
    # In numpy: single-threaded, where torch's intra-op threads would contend with the model's.
    images = out.astype(np.float32)
    images *= 1.0 / (255.0 * STD)
    images -= MEAN / STD
    return torch.from_numpy(images), torch.tensor(widths, dtype=torch.long)


def to_tensor_batch(
    images: Sequence[ImageLike], geometry: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images -> model input (`prepare_image` each, then `pad_batch`).

    Args:
        images: PIL images (any mode) or arrays, any size.
        geometry: The model's input geometry (``ModelMeta.input`` or
            ``models.registry.input_spec``).

    Returns:
        ``images`` float32 ``N, 1, H, W`` in [-1, 1] and ``widths`` int64 ``N`` (pre-padding
        widths; all ``S`` for square models).
    """
    return pad_batch([prepare_image(im, geometry) for im in images], geometry)
