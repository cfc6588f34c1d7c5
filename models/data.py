"""WebDataset pipelines: shards -> decoded, checked, preprocessed, width-grouped batches.

Sample format (``synth.shards``): ``{key}.png`` (8-bit grayscale) and ``{key}.json`` with the
label in ``"text"``. Shards are indexed from their tar headers (`index_shard`: truncation is
detected, and skipped samples are never read), then a WebDataset pipeline shuffles, decodes and
batches. Errors are never silent: an unreadable shard names the shard (and the last key read), an
undecodable image names shard and key, and a label the charset cannot encode names shard, key and
character. Nothing is dropped.

Training stream (`TrainStream`): a deterministic function of ``(seed, rank, step)``, so a resumed
run sees exactly the batches an uninterrupted one would.

- Steps are grouped in *segments* of ``segment_steps`` (the checkpoint interval) and *lanes*
  (``max(1, num_workers)``): step ``s`` belongs to segment ``s // segment_steps`` and lane
  ``s % lanes``. Each (segment, lane) has its own pipeline, seeded by
  ``SeedSequence([seed, rank, segment, lane])``: shards resampled with replacement (the explicit
  form of ``shardshuffle``; each shard read from a random sample offset, so short segments still
  see whole shards), a sample shuffle buffer, decode, then batches. A length curriculum whose
  stages do not end at segment boundaries cuts a segment into *pieces* where its limit
  changes, each after the first seeded by its first step too (`TrainStream.piece_start`).
- DataLoader worker ``w`` serves one lane, and the DataLoader hands out its workers' batches
  round-robin, so batches arrive in step order. Resuming mid-segment replays that segment up to
  the step.
- Ranks differ by seed (split by DDP rank); lanes by seed and worker (split by worker).

Line images (``{"kind": "line"}``) are batched with neighbours of similar width (`batched`) and
padded, never squashed to one width; square images are batched as they come.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import webdataset as wds

from models.families import Family, LabelError
from models.images import ImageLoadError, decode_png, label_proportion_problem
from models.preprocess import pad_batch, prepare_image
from synth.shards import (
    REBUILD_HINT,
    duplicate_key,
    member_problem,
    name_problem,
    record_json,
    record_text,
    split_member,
)

log = logging.getLogger(__name__)


PREFETCH = 4  # batches each DataLoader worker prepares ahead


class DataError(ValueError):
    """A shard, image or label that cannot be used (names the shard and the key)."""


class ShardError(DataError):
    """A shard that cannot be read (missing, truncated, not a tar)."""


class SampleLabelError(DataError):
    """A label the charset (or the model family) cannot encode."""


class Batch(NamedTuple):
    """One batch.

    Attributes:
        images: ``N, 1, H, W`` float32, normalised (`models.preprocess`).
        widths: ``N`` int64 image widths before padding (CTC input lengths).
        texts: ``N`` labels.
        keys: ``N`` sample keys.
        shards: ``N`` shard paths (where each sample came from).
        centers: ``N`` tuples of the x of each label character's centre in the image as
            prepared, px (a line shard's ``centers``), or None for a sample without them.
    """

    images: torch.Tensor
    widths: torch.Tensor
    texts: list[str]
    keys: list[str]
    shards: list[str]
    centers: list[tuple[float, ...] | None]


@dataclass(frozen=True)
class Example:
    """A decoded, checked and preprocessed sample (``image`` is ``H, W`` uint8; ``centers`` as
    in `Batch`, scaled as the image was)."""

    key: str
    shard: str
    image: np.ndarray
    text: str
    centers: tuple[float, ...] | None = None


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardIndex:
    """Where each sample's parts lie in a shard: ``samples[i] = (key, ((ext, offset, size),
    ...))``, in file order. Built from the tar headers alone (data is skipped, not read)."""

    url: str
    samples: tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]


_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)


def _plain_ustar_members(url: str) -> tuple[list[tuple[str, int, int]], int] | None:
    """``(name, data offset, size)`` of each member and the offset of the end-of-archive marker,
    read straight from the headers when every one is a plain POSIX ustar header of a regular file
    (what `synth.shards` writes, and ``webdataset.TarWriter`` given a whole-number mtime, for
    ASCII names); None at anything
    else (a pax or GNU header, a link, a bad checksum, a cut), for ``tarfile`` to read or reject.

    ``tarfile`` builds a ``TarInfo`` per member, about 50 us each: two minutes before the first
    step over the 1.28 million samples of configs/gpu.yaml's hanzi shards. This reads a header in
    a few microseconds, and checks all the checksums at once at the end.
    """
    members: list[tuple[str, int, int]] = []
    heads: list[bytes] = []
    pos = 0
    with open(url, "rb") as f:
        while True:
            f.seek(pos)
            head = f.read(_BLOCK)
            if len(head) < _BLOCK:
                return None
            if head == _ZERO_BLOCK:
                break
            if head[156:157] != b"0" or head[257:265] != b"ustar\x0000" or head[124] & 0x80:
                return None  # not a regular file, not POSIX ustar, or a base-256 size
            try:
                size = int(head[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            except ValueError:
                return None
            name = head[:100].split(b"\0", 1)[0]
            prefix = head[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
            members.append((name.decode("utf-8", "surrogateescape"), pos + _BLOCK, size))
            heads.append(head)
            pos += _BLOCK + size + (-size % _BLOCK)
    if heads:
        # A header's checksum is the sum of its bytes, the checksum field counting as 8 spaces.
        blocks = np.frombuffer(b"".join(heads), np.uint8).reshape(len(heads), _BLOCK)
        sums = blocks[:, :148].sum(1, dtype=np.int64) + blocks[:, 156:].sum(1, dtype=np.int64)
        try:
            stored = [int(h[148:156].split(b"\0", 1)[0].strip() or b"x", 8) for h in heads]
        except ValueError:
            return None
        if not np.array_equal(sums + 256, np.asarray(stored, np.int64)):
            return None
    return members, pos


def index_shard(url: str) -> ShardIndex:
    """Index a shard and check it is whole.

    Python's tarfile ends quietly at a truncated header, so the end-of-archive marker (two zero
    blocks) is checked explicitly: a shard cut short by a crash or a full disk is an error.
    Plain ustar headers are read directly (`_plain_ustar_members`), anything else by tarfile.

    Raises:
        ShardError: Missing, not a tar, truncated, holding no samples, holding a key twice
            (two members of one sample with the same extension, or a key again after other
            samples), or a member that cannot be part of a sample (`synth.shards.member_problem`:
            a link, a special file, no extension) (names the shard, and the key or member).
    """
    try:
        size = os.path.getsize(url)
        plain = _plain_ustar_members(url)
        if plain is not None:
            members, end = plain
        else:
            with tarfile.open(url, "r:") as tf:
                infos = [m for m in tf.getmembers() if not m.isdir()]
                end = tf.offset
            for m in infos:
                problem = member_problem(url, m)
                if problem is not None:
                    raise ShardError(problem)
            members = [(m.name, m.offset_data, m.size) for m in infos]
        with open(url, "rb") as f:
            f.seek(end)
            tail = f.read(2 * tarfile.BLOCKSIZE)
    except FileNotFoundError as e:
        raise ShardError(f"shard {url}: unreadable: {e}") from e
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ShardError(f"shard {url}: unreadable: {e}{REBUILD_HINT}") from e
    order: list[str] = []
    parts: dict[str, list[tuple[str, int, int]]] = {}
    for name, offset, length in members:
        if (problem := name_problem(url, name)) is not None:  # the direct reader's names too
            raise ShardError(problem)
        key, ext = split_member(name)
        if offset + length > size:
            raise ShardError(f"shard {url}: truncated inside sample {key!r}{REBUILD_HINT}")
        if key not in parts:
            order.append(key)
            parts[key] = []
        elif order[-1] != key:
            raise ShardError(duplicate_key(url, key, name, order[-1]))
        elif any(e == ext for e, _, _ in parts[key]):
            raise ShardError(duplicate_key(url, key, name, None))
        parts[key].append((ext, offset, length))
    if tail != bytes(2 * tarfile.BLOCKSIZE):
        after = f"after sample {order[-1]!r}" if order else "before its first sample"
        raise ShardError(f"shard {url}: truncated {after} (no end-of-archive marker){REBUILD_HINT}")
    if not order:
        raise ShardError(f"shard {url}: holds no samples")
    return ShardIndex(url, tuple((k, tuple(parts[k])) for k in order))


def read_shard(
    url: str, offset: int = 0, index: ShardIndex | None = None
) -> Iterator[dict[str, Any]]:
    """Raw samples of one shard, in order: ``{"__key__", "__url__", "png": bytes, ...}``
    (the sample dicts of ``webdataset.tarfile_samples``).

    Args:
        url: Shard path.
        offset: Samples to skip first (their data is not read).
        index: The shard's `ShardIndex` (built when not given).

    Raises:
        ShardError: The shard is missing, truncated or unreadable (names it and the key).
    """
    index = index or index_shard(url)
    try:
        with open(url, "rb") as f:
            for key, entries in index.samples[offset:]:
                sample: dict[str, Any] = {"__key__": key, "__url__": url}
                for ext, start, size in entries:
                    f.seek(start)
                    data = f.read(size)
                    if len(data) != size:
                        raise ShardError(
                            f"shard {url}: truncated inside sample {key!r}{REBUILD_HINT}"
                        )
                    sample[ext] = data
                yield sample
    except OSError as e:
        raise ShardError(f"shard {url}: unreadable: {e}{REBUILD_HINT}") from e


def decode_sample(
    sample: Mapping[str, Any], geometry: Mapping[str, Any], family: Family | None
) -> Example:
    """Raw sample -> `Example`: PNG decoded and prepared for the model, label checked.

    Raises:
        DataError: Missing part, undecodable image or JSON (names shard and key).
        SampleLabelError: The label has a character outside the charset, or a length the
            family cannot take (names shard, key and the character).
    """
    key, url = sample.get("__key__"), sample.get("__url__")
    text, where, centers = _label(sample, f"shard {url}: sample {key!r}", family)
    try:
        image = decode_png(sample["png"], where)
    except ImageLoadError as e:
        raise DataError(str(e)) from e
    if why := label_proportion_problem(image.size, text):  # scaled, it would fill memory
        raise DataError(f"{where}: {why}: a damaged or foreign image{REBUILD_HINT}")
    prepared = prepare_image(image, geometry)
    if centers is not None and prepared.shape[1] != image.width:
        k = prepared.shape[1] / image.width
        centers = tuple(c * k for c in centers)
    return Example(key, url, prepared, text, centers)


def _label(
    sample: Mapping[str, Any], where: str, family: Family | None, need_centers: bool = False
) -> tuple[str, str, tuple[float, ...] | None]:
    """A raw sample's label, checked (its parts, its .json, its text, the family's encoding),
    ``where`` with the image it was packed from, if any (`models.pack`), and the centres of
    the label's characters if the sample has them (a line shard's ``centers``, checked: one
    number per character).

    Raises:
        DataError: Missing part or undecodable JSON, ``centers`` that are not one number per
            character, or none when ``need_centers``; SampleLabelError: a label the family
            cannot encode.
    """
    for part in ("png", "json"):
        if part not in sample:
            raise DataError(f"{where}: has no .{part} (parts: {sorted(sample)})")
    try:
        meta = record_json(sample["json"], where, "bad .json")
    except ValueError as e:
        raise DataError(str(e)) from e
    try:
        text = record_text(meta, where)
    except ValueError as e:
        raise DataError(str(e)) from None
    if meta.get("source"):  # packed from a user's file (models.pack)
        where += f" (image {meta['source']})"
    if family is not None:
        try:
            family.encode([text])
        except LabelError as e:
            raise SampleLabelError(f"{where}: {e}") from None
    centers = meta.get("centers") if isinstance(meta, dict) else None
    if centers is None:
        if need_centers:
            raise DataError(
                f"{where}: has no centers in its .json (where each character of the label is "
                "drawn), which train.align_weight needs: the line task's shards have them, "
                "shards of other tasks and of your own images (synthocr-pack) do not; set "
                "train.align_weight: 0 to train on them"
            )
        return text, where, None
    if not (
        isinstance(centers, list)
        and len(centers) == len(text)
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in centers)
    ):
        raise DataError(
            f"{where}: bad centers in its .json: {str(centers)[:80]} (expected one number per "
            f"character of its text {text!r}, {len(text)}){REBUILD_HINT}"
        )
    return text, where, tuple(float(c) for c in centers)


def check_labels(
    indexes: Sequence[ShardIndex],
    family: Family | None,
    shown: int = 20,
    need_centers: bool = False,
) -> None:
    """Every sample's label, read before training's first step (only the ``.json`` members:
    a few seconds for 200,000 samples), so that a label the charset cannot encode in a shard
    of one's own stops the run at once rather than hours in, when a draw first reaches it.
    Images are decoded when they are drawn. ``need_centers``: every sample must also say where
    its characters are drawn (``train.align_weight``).

    Raises:
        SampleLabelError: Labels the family cannot encode (when every problem is one);
            DataError: any other (a missing part, JSON that does not parse, a text that is not
            a string). Either lists the first ``shown`` samples at fault and their count.
    """
    problems: list[DataError] = []
    for index in indexes:
        try:
            with open(index.url, "rb") as f:
                for key, entries in index.samples:
                    sample: dict[str, Any] = {ext: None for ext, _, _ in entries}
                    for ext, start, size in entries:
                        if ext == "json":
                            f.seek(start)
                            sample["json"] = f.read(size)
                    try:
                        _label(sample, f"shard {index.url}: sample {key!r}", family, need_centers)
                    except DataError as e:
                        problems.append(e)
        except OSError as e:
            raise ShardError(f"shard {index.url}: unreadable: {e}{REBUILD_HINT}") from e
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    kind = SampleLabelError if all(isinstance(p, SampleLabelError) for p in problems) else DataError
    listed = "\n  ".join(str(p) for p in problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    raise kind(f"{len(problems)} training samples cannot be trained on:\n  {listed}{more}")


def iter_examples(
    urls: Sequence[str], geometry: Mapping[str, Any], family: Family | None = None
) -> Iterator[Example]:
    """Every sample of ``urls`` in order (shards in the given order, no shuffling)."""
    for url in urls:
        for sample in read_shard(str(url)):
            yield decode_sample(sample, geometry, family)


# ---------------------------------------------------------------- batching


def collate(examples: Sequence[Example], geometry: Mapping[str, Any]) -> Batch:
    """Pad a list of examples into a `Batch`."""
    images, widths = pad_batch([e.image for e in examples], geometry)
    return Batch(
        images,
        widths,
        [e.text for e in examples],
        [e.key for e in examples],
        [e.shard for e in examples],
        [e.centers for e in examples],
    )


POOL_BATCHES = 8  # batches of line images formed together, sorted by width


def batched(
    examples: Iterable[Example],
    batch_size: int,
    geometry: Mapping[str, Any],
    rng: np.random.Generator | None = None,
    pool_batches: int = POOL_BATCHES,
    partial: bool = True,
    max_batches: int | None = None,
) -> Iterator[Batch]:
    """Group examples into batches; line images into width buckets.

    Line images are taken ``pool_batches * batch_size`` at a time, sorted by width and cut into
    ``pool_batches`` batches of neighbouring widths (emitted in an order shuffled by ``rng``, in
    width order without one), so a batch pads little, and, unlike fixed buckets that wait to fill,
    no width is held back: every sample read is used, long lines as often as short ones.
    Square images are batched as they come.

    Args:
        examples: The stream.
        batch_size: Samples per batch.
        geometry: Input geometry (``kind`` line or square).
        rng: Shuffles the batch order within a pool (training); None keeps width order.
        pool_batches: Batches per pool (line images).
        partial: Emit the last, smaller batch of a finite stream.
        max_batches: Stop after this many batches; the last pool shrinks to what is still
            needed, so no sample is decoded in vain.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per_pool = pool_batches if geometry["kind"] == "line" else 1
    remaining = max_batches if max_batches is not None else -1
    it = iter(examples)
    while remaining != 0:
        pool_size = batch_size * (min(per_pool, remaining) if remaining > 0 else per_pool)
        pool = list(itertools.islice(it, pool_size))
        if not pool:
            return
        if geometry["kind"] == "line":
            pool.sort(key=lambda e: e.image.shape[1])  # stable: ties keep stream order
        groups = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        if not partial and len(groups[-1]) < batch_size:
            groups.pop()
        order = rng.permutation(len(groups)) if rng is not None else range(len(groups))
        for i in order:
            yield collate(groups[i], geometry)
        if remaining > 0:
            remaining -= len(groups)
        if len(pool) < pool_size:
            return


def eval_batches(
    urls: Sequence[str],
    geometry: Mapping[str, Any],
    batch_size: int,
    family: Family | None = None,
    max_batches: int | None = None,
) -> Iterator[Batch]:
    """Deterministic batches of a finite split (validation, evaluation): every sample once.

    Shards are read in the given order (``shardshuffle`` off); line images are grouped by
    width (`batched`), so the sample order differs from the shard order (batches carry keys).
    """
    # max_batches also bounds the pools, so a short validation set is the first samples of the
    # split, not the narrowest of a larger pool
    return batched(
        iter_examples(urls, geometry, family), batch_size, geometry, max_batches=max_batches
    )


# ---------------------------------------------------------------- training stream


def curriculum_max_len(step: int, curriculum_steps: int) -> int:
    """The longest label a length curriculum lets through at ``step`` (0: no limit).

    One character for the first ``curriculum_steps`` steps, two for the next ``curriculum_steps``,
    and so on, until the limit passes the task's longest label and the curriculum ends by itself.
    A reader that first learns to name one character, then to move its mask to the next, leaves
    its initial plateau sooner than one shown every length at once. `TrainStream` applies it per
    piece (a segment, cut where a stage ends inside it: the limit of a piece's first step holds
    for the whole piece), so a resumed run draws the same samples.
    """
    return step // curriculum_steps + 1 if curriculum_steps > 0 else 0


def label_length(sample: Mapping[str, Any]) -> int:
    """Characters in a raw sample's label, read from its JSON without decoding the image; 0
    when the JSON is missing or bad (`decode_sample` then raises the error that names it)."""
    try:
        text = json.loads(sample["json"])["text"]
    except (KeyError, ValueError, TypeError):
        return 0
    return len(text) if isinstance(text, str) else 0


CURRICULUM_PATIENCE = 10_000  # consecutive samples too long for the curriculum before giving up


def within_length(samples: Iterable[dict[str, Any]], max_len: int) -> Iterator[dict[str, Any]]:
    """The raw samples whose label has at most ``max_len`` characters.

    Raises:
        DataError: `CURRICULUM_PATIENCE` samples in a row are longer (the task's labels are
            never that short, e.g. expressions under a length curriculum): names the limit and
            the last shard, rather than searching for ever.
    """
    skipped = 0
    for sample in samples:
        if label_length(sample) <= max_len:
            skipped = 0
            yield sample
            continue
        skipped += 1
        if skipped >= CURRICULUM_PATIENCE:
            raise DataError(
                f"length curriculum: {skipped} samples in a row (the last from shard "
                f"{sample.get('__url__')}) have labels longer than {max_len} characters; this "
                "task's labels are never that short: set train.curriculum_steps to 0"
            )


def _seed_of(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint64)[0])


class TrainStream(torch.utils.data.IterableDataset):
    """Infinite, resampled, deterministic training batches for steps ``start_step..steps-1``.

    Use with ``DataLoader(stream, batch_size=None, num_workers=lanes)`` (``num_workers`` 0 or
    exactly ``lanes``): the loader yields one `Batch` per step, in step order.

    Args:
        urls: Training shards.
        geometry: Model input geometry (``models.registry.input_spec``).
        family: The model's family: every label is checked against it here (`check_labels`),
            and again as the workers draw it.
        batch_size: Samples per batch (per process).
        seed: Root seed of the run.
        steps: Last step (exclusive).
        start_step: First step (a resumed run starts at its checkpoint's step).
        segment_steps: Steps per segment (a fresh, freshly seeded pipeline each).
        lanes: Independent sub-streams, one per DataLoader worker (``max(1, num_workers)``).
        shuffle_buffer: Raw samples held by the shuffle buffer (0: no sample shuffling).
        rank, world_size: This process's DDP rank and the number of processes.
        curriculum_steps: Length curriculum (0: none): the longest label drawn is one
            character in the first ``curriculum_steps`` steps, two in the next, and so on (see
            `curriculum_max_len`); samples with longer labels are skipped before decoding.
            Once the limit reaches the family's `longest_label` (when it has one), the stream
            stops reading each sample's JSON for its length.
        labels_checked: The labels were checked already (under torchrun, by rank 0 for every
            rank): not read again here.
        need_centers: Every sample must say where its characters are drawn (``centers``,
            for ``train.align_weight``): checked with the labels.
    """

    def __init__(
        self,
        urls: Sequence[str],
        geometry: Mapping[str, Any],
        family: Family | None,
        batch_size: int,
        seed: int,
        steps: int,
        start_step: int = 0,
        segment_steps: int = 100,
        lanes: int = 1,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
        curriculum_steps: int = 0,
        labels_checked: bool = False,
        need_centers: bool = False,
    ) -> None:
        super().__init__()
        if not urls:
            raise DataError("no training shards given")
        self.urls = [str(u) for u in urls]
        self.indexes = [index_shard(u) for u in self.urls]
        if not labels_checked:  # under torchrun, rank 0 reads them once for every rank
            check_labels(self.indexes, family, need_centers=need_centers)
        self.geometry = dict(geometry)
        self.family = family
        self.batch_size = batch_size
        self.seed = seed
        self.steps = steps
        self.start_step = start_step
        self.segment_steps = max(1, segment_steps)
        self.lanes = max(1, lanes)
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.curriculum_steps = curriculum_steps

    def _shards(self, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        """Shards drawn with replacement, each read from a random sample offset."""
        while True:
            i = int(rng.integers(len(self.urls)))
            index = self.indexes[i]
            offset = int(rng.integers(len(index.samples)))
            yield from read_shard(index.url, offset, index)

    def _stages_filtering(self, stage: int) -> bool:
        """Whether curriculum stage ``stage`` (its limit ``stage + 1`` characters) lets fewer
        than every label through; with no `longest_label` known, every stage may."""
        longest = self.family.longest_label if self.family is not None else 0
        return self.curriculum_steps > 0 and (not longest or stage + 1 < longest)

    def piece_start(self, step: int) -> int:
        """The first step of the *piece* ``step`` is in: a piece is a segment, cut where the
        length curriculum's limit changes inside it (a ``curriculum_steps`` that is no multiple
        of ``segment_steps``), so that every step draws under its own stage's limit."""
        start = step // self.segment_steps * self.segment_steps
        if self.curriculum_steps > 0:
            stage = step // self.curriculum_steps
            longest = self.family.longest_label if self.family is not None else 0
            if longest:  # the last stage start that changes what is drawn: after a filtering one
                stage = min(stage, longest - 1)
            start = max(start, stage * self.curriculum_steps)
        return start

    def piece_end(self, start: int) -> int:
        """The step after the last of the piece that starts at ``start`` (`piece_start`)."""
        end = min((start // self.segment_steps + 1) * self.segment_steps, self.steps)
        if self.curriculum_steps > 0:
            stage = start // self.curriculum_steps
            if self._stages_filtering(stage):
                end = min(end, (stage + 1) * self.curriculum_steps)
        return end

    def lane_steps_in(self, start: int, lane: int) -> range:
        """The steps of ``lane`` in the piece that starts at ``start`` (before ``steps``)."""
        return range(start + (lane - start) % self.lanes, self.piece_end(start), self.lanes)

    def piece_batches(self, start: int, lane: int) -> Iterator[Batch]:
        """The batches of one (piece, lane), one per step of the lane: a WebDataset pipeline
        (whose input, resampled shards, never ends). A piece that starts a segment is seeded by
        the segment, one cut inside it by its first step too."""
        segment = start // self.segment_steps
        key = [self.seed, self.rank, segment, lane]
        if start % self.segment_steps:
            key.append(start)
        ss = np.random.SeedSequence(key)
        shard_ss, shuffle_ss, batch_ss = ss.spawn(3)
        shard_rng = np.random.default_rng(shard_ss)
        stages: list[Any] = [lambda: self._shards(shard_rng)]
        max_len = curriculum_max_len(start, self.curriculum_steps)
        longest = self.family.longest_label if self.family is not None else 0
        if max_len and not (longest and max_len >= longest):
            stages.append(lambda samples: within_length(samples, max_len))
        if self.shuffle_buffer > 1:
            # Raw bytes are shuffled before decoding: a segment's leftover buffer costs no decoding.
            stages.append(
                wds.shuffle(
                    self.shuffle_buffer,
                    initial=min(self.shuffle_buffer, 4 * self.batch_size),
                    rng=random.Random(_seed_of(shuffle_ss)),
                )
            )
        stages.append(wds.map(lambda s: decode_sample(s, self.geometry, self.family)))
        pipeline = wds.DataPipeline(*stages)
        batch_rng = np.random.default_rng(batch_ss)
        return batched(
            pipeline,
            self.batch_size,
            self.geometry,
            batch_rng,
            partial=False,
            max_batches=len(self.lane_steps_in(start, lane)),
        )

    def lane_steps(self, lane: int) -> Iterator[tuple[int, Batch]]:
        """``(step, batch)`` for this lane's steps from ``start_step`` on."""
        first = self.start_step + (lane - self.start_step) % self.lanes
        end = -1
        stream: Iterator[Batch] = iter(())
        for step in range(first, self.steps, self.lanes):
            if step >= end:
                start = self.piece_start(step)
                end = self.piece_end(start)
                stream = self.piece_batches(start, lane)
                # a resume mid-piece replays the piece's earlier steps of this lane
                for _ in range(self.lane_steps_in(start, lane).index(step)):
                    next(stream)
            yield step, next(stream)

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != self.lanes:
            raise ValueError(
                f"TrainStream has {self.lanes} lanes but runs on {workers} DataLoader "
                "worker(s); use num_workers = lanes (or 0 with lanes = 1)"
            )
        worker = info.id if info is not None else 0
        # The loader takes batches round-robin from its workers starting at worker 0, and
        # step start_step is worker 0's first: worker w serves lane (start_step + w) % lanes.
        lane = (self.start_step + worker) % self.lanes
        for _, batch in self.lane_steps(lane):
            yield batch


def train_loader(
    stream: TrainStream, num_workers: int, device: torch.device | None = None
) -> torch.utils.data.DataLoader:
    """The DataLoader of a `TrainStream` (one worker per lane; batches already formed).

    On a CUDA ``device`` the batches arrive pinned (page-locked): the loader's pin thread copies
    each one there beside the training step, and the step's copy to the GPU is asynchronous. The
    training loop and ``bench/bench_train.py`` both load through here, so the benchmark measures
    the loader that training uses.
    """
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        prefetch_factor=PREFETCH if num_workers > 0 else None,
        persistent_workers=False,
        pin_memory=device is not None and device.type == "cuda",
        worker_init_fn=_ignore_sigterm if num_workers > 0 else None,
    )


def close_loader(batches: Iterator[Any]) -> None:
    """Stop a DataLoader iterator's worker processes now (none for a loader without workers),
    rather than when the iterator is collected, which a kept traceback can put off to the
    interpreter's exit."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _ignore_sigterm(worker_id: int) -> None:
    """A worker ignores SIGTERM from anyone but its parent: SLURM (at a time limit) and
    torchrun signal a rank's whole process group, and the training, told too, stops after its
    step (`models.train`), which a worker ended by torch's own handler would fail with
    "DataLoader worker is killed". Its parent's SIGTERM still ends it at once: the loader's
    last resort for a worker that hangs (``terminate()``), and the interpreter's exit, which
    ends daemonic processes so before joining them. SIGTERM is blocked in the worker and taken
    by a thread that reads who sent it (``sigwaitinfo``)."""
    import signal
    import threading

    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def answer() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=answer, name="sigterm", daemon=True).start()
