"""Data pipeline: real tar shards written with webdataset.TarWriter and read back; preprocessing."""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import exact_halves
from PIL import Image, ImageDraw, ImageFont
from test_images import bomb_png

from models.data import (
    DataError,
    SampleLabelError,
    ShardError,
    TrainStream,
    check_labels,
    close_loader,
    curriculum_max_len,
    eval_batches,
    index_shard,
    iter_examples,
    label_length,
    read_shard,
    train_loader,
    within_length,
)
from models.families import make_family
from models.preprocess import MEAN, STD, background_level, pad_batch, prepare_image, to_tensor_batch
from synth.shards import REBUILD_HINT, ShardReadError, iter_records

LINE = {"kind": "line", "height": 32}
SQUARE = {"kind": "square", "size": 40}


def render(text: str, geometry: dict, rng: np.random.Generator) -> np.ndarray:
    """A legible grayscale image of ``text`` (PIL's built-in font) at the task's geometry."""
    return render_with_centers(text, geometry, rng)[0]


def render_with_centers(
    text: str, geometry: dict, rng: np.random.Generator
) -> tuple[np.ndarray, list[float]]:
    """`render`, and the middle of each character's advance (as `synth.render.draw_line`)."""
    font = ImageFont.load_default(size=22)
    if geometry["kind"] == "line":
        h = geometry["height"]
        w = 16 * len(text) + int(rng.integers(4, 24))
    else:
        h = w = geometry["size"]
    img = Image.new("L", (w, h), int(rng.integers(200, 256)))
    x = int(rng.integers(1, 4))
    ImageDraw.Draw(img).text((x, (h - 24) // 2), text, fill=int(rng.integers(0, 60)), font=font)
    ends = [0.0] + [font.getlength(text[: i + 1]) for i in range(len(text))]
    return np.asarray(img), [round(x + (a + b) / 2, 1) for a, b in itertools.pairwise(ends)]


def write_shards(
    folder: Path,
    prefix: str,
    shards: int,
    samples: int,
    charset: str,
    geometry: dict,
    length: tuple[int, int] = (1, 4),
    seed: int = 0,
    centers: bool = False,
) -> list[str]:
    """Shards in the synth.shards format: ``{key}.png`` (mode L) + ``{key}.json`` with text
    (and with ``centers``, where each character is drawn, as the line task's shards)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        rng = np.random.default_rng([seed, s])
        path = folder / f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(path), mtime=0) as writer:
            for i in range(samples):
                n = int(rng.integers(length[0], length[1] + 1))
                text = "".join(rng.choice(list(charset), n))
                buf = io.BytesIO()
                img, xs = render_with_centers(text, geometry, rng)
                Image.fromarray(img, mode="L").save(buf, format="PNG")
                meta = {"text": text, "task": "t", "split": prefix}
                if centers:
                    meta["centers"] = xs
                writer.write(
                    {
                        "__key__": f"t_{prefix}_{s:06d}_{i:06d}",
                        "png": buf.getvalue(),
                        "json": json.dumps(meta).encode(),
                    }
                )
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------- preprocessing


def test_line_images_keep_their_aspect_and_pad_with_background():
    a = np.full((64, 200), 230, np.uint8)
    a[20:40, 10:100] = 10
    b = np.full((16, 30), 40, np.uint8)  # dark background (inverted sample)
    images, widths = to_tensor_batch([a, b], LINE)
    assert images.shape == (2, 1, 32, 100)
    assert widths.tolist() == [100, 60]  # 200 * 32/64 and 30 * 32/16
    assert images.dtype == torch.float32
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


def test_line_resize_widths():
    imgs = [np.full((16, 30), 200, np.uint8), np.full((64, 64), 200, np.uint8)]
    _, widths = to_tensor_batch(imgs, LINE)
    assert widths.tolist() == [60, 32]
    prepared = prepare_image(Image.new("L", (300, 60), 255), {"kind": "line", "height": 60})
    assert prepared.shape == (60, 300)  # expr at training size is untouched
    # a long line, 200 characters or so: scaled to the height, never squashed to a width
    long_line = prepare_image(Image.new("L", (8000, 40), 255), LINE)
    assert long_line.shape == (32, 6400)


def test_padding_uses_each_images_own_background():
    light = np.full((32, 40), 220, np.uint8)
    dark = np.full((32, 20), 30, np.uint8)
    images, widths = pad_batch([light, dark], LINE)
    assert widths.tolist() == [40, 20]
    expect_dark = (30 / 255 - MEAN) / STD
    assert torch.allclose(images[1, 0, :, 20:], torch.full((32, 20), expect_dark))
    assert background_level(dark) == 30


def test_narrow_images_reach_the_minimum_width():
    images, widths = to_tensor_batch([np.full((32, 4), 255, np.uint8)], LINE)
    assert widths.tolist() == [16] and images.shape[-1] == 16


def test_square_images_are_padded_to_square_not_squashed():
    wide = Image.new("L", (80, 40), 255)
    ImageDraw.Draw(wide).rectangle([4, 4, 75, 35], fill=0)
    out = prepare_image(wide, SQUARE)
    assert out.shape == (40, 40)
    # the box keeps its aspect (72x32 px -> 36x16): white padding above and below it
    rows = np.where(out.min(axis=1) < 128)[0]
    cols = np.where(out.min(axis=0) < 128)[0]
    assert 11 <= rows.min() <= 13 and 26 <= rows.max() <= 28
    assert cols.min() <= 3 and cols.max() >= 36


@pytest.mark.parametrize("size", [40, 64])
def test_a_square_fit_rounds_an_exact_half_to_even(size):
    """An image that is not square is scaled so that its longer side is the square's, each side
    ``round(side * S / longer)`` of the exact ratio, a half to even (as a line's width is): the
    rule an export's metadata states. Not as ``side * (S / longer)`` rounds it, a float off by
    an ulp (624 x 117 px at 40: 7.5 px, to 7 rows, not 8)."""
    for longer, side in exact_halves(size, 3):
        for w, h in ((longer, side), (side, longer)):
            im = Image.new("L", (w, h), 0)
            ImageDraw.Draw(im).rectangle([0, 0, w - 1, h - 1], outline=255)  # a white border
            out = prepare_image(im, {"kind": "square", "size": size})
            dark = out < 128  # the scaled image, dark to its edges, on its white background
            got = (int(dark.any(0).sum()), int(dark.any(1).sum()))
            expected = tuple(round(Fraction(s * size, max(w, h))) for s in (w, h))
            assert got == expected, (w, h)


def test_image_modes_and_float_arrays():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent: white paper
    assert prepare_image(rgba, SQUARE).min() == 255
    rgb = Image.new("RGB", (40, 40), (0, 0, 0))
    assert prepare_image(rgb, SQUARE).max() == 0
    floats = np.full((40, 40), 1.0, np.float32)
    assert prepare_image(floats, SQUARE).min() == 255


# ---------------------------------------------------------------- reading and checking


@pytest.fixture
def line_shards(tmp_path):
    return write_shards(tmp_path / "shards", "train", 2, 30, "0123", LINE, seed=1)


def test_eval_batches_see_every_sample_once_grouped_by_width(line_shards):
    family = make_family("crnn_vgg", list("0123"))
    batches = list(eval_batches(line_shards, LINE, batch_size=8, family=family))
    keys = [k for b in batches for k in b.keys]
    assert len(keys) == 60 and len(set(keys)) == 60
    assert [len(b.keys) for b in batches] == [8] * 7 + [4]
    real = padded = 0
    for b in batches:
        assert b.images.shape[2] == 32
        assert b.images.shape[3] == int(b.widths.max())
        assert all(s in line_shards for s in b.shards)
        real += int(b.widths.sum())
        padded += b.images.shape[0] * b.images.shape[3]
    assert real / padded > 0.85  # neighbours in width: little padding


def test_a_short_validation_set_is_the_first_samples(line_shards):
    batches = list(eval_batches(line_shards, LINE, batch_size=4, max_batches=2))
    keys = sorted(k for b in batches for k in b.keys)
    assert keys == [f"t_train_000000_{i:06d}" for i in range(8)]


def test_a_shard_read_from_an_offset_starts_at_that_sample(line_shards):
    # the training stream starts each shard it draws at a random sample offset
    url = line_shards[0]
    keys = [s["__key__"] for s in read_shard(url)]
    assert keys == [f"t_train_000000_{i:06d}" for i in range(30)]
    for offset in (1, 2, 29):
        assert [s["__key__"] for s in read_shard(url, offset)] == keys[offset:]


def test_label_outside_charset_names_shard_and_key(tmp_path):
    paths = write_shards(tmp_path, "train", 1, 5, "01x", LINE, length=(3, 3), seed=2)
    family = make_family("crnn_vgg", list("01"))
    with pytest.raises(
        SampleLabelError, match=r"train-000000\.tar: sample 't_train_000000_\d+'.*'x'"
    ):
        list(iter_examples(paths, LINE, family))


def test_training_checks_every_label_before_its_first_step(tmp_path):
    # A shard of one's own with labels the charset cannot encode: a run of one step, which
    # would read a sample or two, stops at once, listing the samples at fault (and how many).
    paths = write_shards(tmp_path, "train", 2, 30, "01x", LINE, length=(3, 3), seed=2)
    family = make_family("crnn_vgg", list("01"))
    bad = [e for p in paths for e in _keys_with(p, "x")]
    assert len(bad) > 20
    with pytest.raises(SampleLabelError) as e:
        TrainStream(paths, LINE, family, 1, seed=0, steps=1)
    message = str(e.value)
    assert message.startswith(f"{len(bad)} training samples cannot be trained on:")
    assert f"shard {paths[0]}: sample {bad[0]!r}" in message and "'x'" in message
    assert f"... and {len(bad) - 20} more" in message
    # As many at fault as are shown: every one listed, and no "... and 0 more"
    with pytest.raises(SampleLabelError) as e:
        check_labels([index_shard(p) for p in paths], family, shown=len(bad))
    assert str(e.value).count("\n  ") == len(bad) and "more" not in str(e.value)
    # One sample at fault: its own message.
    one = write_shards(tmp_path / "one", "train", 1, 40, "01", LINE, seed=3)
    with tarfile.open(tmp_path / "one" / "bad-000000.tar", "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in [("k0.png", b"png"), ("k0.json", b'{"text": "0x1"}')]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with pytest.raises(SampleLabelError, match=r"^shard \S*bad-000000\.tar: sample 'k0': .*'x'"):
        TrainStream([*one, str(tmp_path / "one" / "bad-000000.tar")], LINE, family, 1, 0, 1)
    TrainStream(one, LINE, family, 1, seed=0, steps=1)  # all good: no error


def _keys_with(path: str, char: str) -> list[str]:
    """The keys of the samples of shard ``path`` whose label holds ``char``, in file order."""
    keys = []
    with tarfile.open(path) as tar:
        for member in tar:
            if (
                member.name.endswith(".json")
                and char in json.loads(tar.extractfile(member).read())["text"]
            ):
                keys.append(member.name.rsplit(".", 1)[0])
    return keys


def test_corrupt_image_names_shard_and_key(tmp_path):
    path = tmp_path / "bad-000000.tar"
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k0", "png": b"not a png", "json": b'{"text": "1"}'})
    error = r"bad-000000\.tar: sample 'k0': cannot decode \.png: not an image Pillow can read"
    with pytest.raises(DataError, match=error + r" \(9 bytes\)$"):  # not Pillow's BytesIO repr
        list(iter_examples([str(path)], LINE))


def test_a_decompression_bomb_names_shard_and_key(tmp_path):
    path = tmp_path / "bomb-000000.tar"
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k0", "png": bomb_png(), "json": b'{"text": "1"}'})
    with pytest.raises(DataError, match=r"bomb-000000\.tar: sample 'k0': cannot decode .*bomb"):
        list(iter_examples([str(path)], LINE))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xff\xfe", r"bad \.json: not UTF-8 \(byte 0: b'\\xff'\)$"),
        (b'{"text": "1"', r"bad \.json: not valid JSON: Expecting"),
        (b'{"label": "1"}', r"bad \.json: it has no 'text' field \(the label\)$"),
        (b'["1"]', r'bad \.json: an array \(\["1"\]\), not an object with a ' + r"'text' field"),
    ],
    ids=["not-utf8", "not-json", "no-text", "not-an-object"],
)
def test_a_bad_json_member_says_what_is_wrong_with_it(tmp_path, body, error):
    path = tmp_path / "bad-000000.tar"
    png = io.BytesIO()
    Image.new("L", (8, 32), 255).save(png, format="PNG")
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k0", "png": png.getvalue(), "json": body})
    with pytest.raises(DataError, match=r"bad-000000\.tar: sample 'k0': " + error):
        list(iter_examples([str(path)], LINE))


@pytest.mark.parametrize(
    ("text", "kind"),
    [("null", "null"), ("12", r"a number \(12\)"), ('["1"]', r'an array \(\["1"\]\)')],
    ids=["null", "number", "array"],
)
def test_a_label_that_is_not_a_string_is_an_error_not_its_repr(tmp_path, text, kind):
    path = tmp_path / "bad-000000.tar"
    png = io.BytesIO()
    Image.new("L", (8, 32), 255).save(png, format="PNG")
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k0", "png": png.getvalue(), "json": b'{"text": %s}' % text.encode()})
    error = rf"bad-000000\.tar: sample 'k0': 'text' in its \.json is {kind}, not a string$"
    with pytest.raises(DataError, match=error):
        list(iter_examples([str(path)], LINE))
    with pytest.raises(DataError, match=error):  # training: before its first step
        TrainStream([str(path)], LINE, None, 1, seed=0, steps=1, shuffle_buffer=0)


def test_an_image_far_longer_than_its_label_is_an_error_naming_the_sample(tmp_path):
    # A 100000 x 1 px member labelled "12": scaled to the model's 32 px height it was 3.2 million
    # px wide, and evaluation grew to 24 GB and was killed, naming nothing.
    png = io.BytesIO()
    Image.new("L", (100_000, 1), 255).save(png, format="PNG")
    path = tmp_path / "long-000000.tar"
    with wds.TarWriter(str(path)) as w:
        w.write({"__key__": "k0", "png": png.getvalue(), "json": b'{"text": "12"}'})
    error = (
        r"long-000000\.tar: sample 'k0': its image is 100000x1 px, longer than a label of 2 "
        r"characters is drawn: more than 240:1 .*: a damaged or foreign image; delete it"
    )
    with pytest.raises(DataError, match=error):
        list(iter_examples([str(path)], LINE))
    stream = TrainStream([str(path)], LINE, None, 1, seed=0, steps=1, shuffle_buffer=0)
    with pytest.raises(DataError, match=error):  # training: at the batch that holds it
        next(iter(train_loader(stream, 0)))


def _tar(path: Path, members: list[tuple[str, bytes]]) -> str:
    """A tar holding ``members`` (name, bytes) in this order, as they are (duplicates too)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


DUPLICATES = {
    "each-member-twice": (["k0.png", "k0.json", "k0.png", "k0.json"], "k0", r"a second \.png"),
    "png-png": (["k0.png", "k0.png", "k0.json"], "k0", r"a second \.png"),
    "sample-again": (
        ["k0.png", "k0.json", "k1.png", "k1.json", "k0.png", "k0.json"],
        "k0",
        r"appears again \(k0\.png after sample 'k1'\)",
    ),
    "stray-txt": (
        ["k0.png", "k0.json", "k1.png", "k1.json", "k0.txt"],
        "k0",
        r"appears again \(k0\.txt after sample 'k1'\)",
    ),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_duplicate_key_is_an_error_naming_shard_and_key(tmp_path, case):
    names, key, what = DUPLICATES[case]
    png = io.BytesIO()
    Image.new("L", (8, 32), 255).save(png, format="PNG")
    body = {"png": png.getvalue(), "json": b'{"text": "1"}', "txt": b"1"}
    path = _tar(tmp_path / "dup-000000.tar", [(n, body[n.split(".")[1]]) for n in names])
    error = rf"dup-000000\.tar: sample '{key}' {'has ' if 'second' in what else ''}{what}"
    error += r".*: a duplicate key; delete it"
    with pytest.raises(ShardError, match=error):
        list(iter_examples([path], LINE))
    with pytest.raises(ShardError, match=error):
        TrainStream([path], LINE, None, 1, seed=0, steps=1)
    with pytest.raises(ShardReadError, match=error):  # evaluation's reader, alike
        list(iter_records(path))


def test_truncated_and_missing_shards_are_named(tmp_path, line_shards):
    data = Path(line_shards[0]).read_bytes()
    cut = tmp_path / "cut-000000.tar"
    cut.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(ShardError, match=r"cut-000000\.tar") as info:
        list(iter_examples([str(cut)], LINE))
    assert str(info.value).endswith(REBUILD_HINT)  # the workflow writes it again
    with tarfile.open(line_shards[0]) as tar:
        boundary = tar.getmembers()[-2].offset  # the last sample's first header
    cut.write_bytes(data[:boundary])  # cut between samples: no end-of-archive marker
    with pytest.raises(ShardError, match=r"no end-of-archive marker.*byte for byte"):
        TrainStream([str(cut)], LINE, None, 4, seed=0, steps=1)
    # indexed whole, then cut under a running training (a shard rebuilt, a full disk)
    later = tmp_path / "later-000000.tar"
    later.write_bytes(data)
    index = index_shard(str(later))
    later.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"later-000000\.tar: truncated inside sample 't_train_"):
        list(read_shard(str(later), index=index))
    with pytest.raises(ShardError, match=r"nope\.tar"):
        list(iter_examples([str(tmp_path / "nope.tar")], LINE))
    with pytest.raises(ShardError, match=r"nope\.tar"):
        TrainStream([str(tmp_path / "nope.tar")], LINE, None, 4, seed=0, steps=1)


def _tarfile_index(path: str):
    """The shard's index as tarfile reads it (the direct ustar reader switched off)."""
    from models import data

    original = data._plain_ustar_members
    data._plain_ustar_members = lambda url: None
    try:
        return data.index_shard(path)
    finally:
        data._plain_ustar_members = original


def test_plain_ustar_headers_index_as_tarfile_reads_them(tmp_path, line_shards):
    """The direct header reader gives tarfile's index, on webdataset's shards and on the
    workflow's own writer's (synth.shards), and does read them (no fallback)."""
    from models.data import _plain_ustar_members, index_shard
    from synth.shards import ShardWriter

    ours = tmp_path / "ours-000000.tar"
    with open(ours, "wb") as f:
        w = ShardWriter(f)
        for i in range(7):
            w.write(f"k{i}", {"png": bytes(range(i * 37 % 256)) * 3, "json": b'{"text": "1"}'})
        w.close()
    for path in [*line_shards, str(ours)]:
        assert _plain_ustar_members(path) is not None
        assert index_shard(path) == _tarfile_index(path)


def test_headers_the_direct_reader_does_not_take_go_to_tarfile(tmp_path):
    """A pax header (a name over 100 bytes), a GNU tar, a folder entry: tarfile reads the shard;
    a bad header checksum ends the archive there, as tarfile reads it, and is an error."""
    import tarfile

    from models.data import _plain_ustar_members, index_shard
    from synth.shards import ShardWriter

    long_key = "k" * 120

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"fmt{fmt}-000000.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            add(tar, f"{long_key}.json", b'{"text": "1"}')
            add(tar, "short.json", b'{"text": "2"}')
            folder = tarfile.TarInfo("extra")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
        assert _plain_ustar_members(str(path)) is None
        index = index_shard(str(path))
        assert [key for key, _ in index.samples] == [long_key, "short"]
    # One flipped byte in the second member's name: its checksum no longer matches.
    good = tmp_path / "good-000000.tar"
    with open(good, "wb") as f:
        w = ShardWriter(f)
        for i in range(3):
            w.write(f"k{i}", {"json": b'{"text": "1"}'})
        w.close()
    assert _plain_ustar_members(str(good)) is not None
    data = bytearray(good.read_bytes())
    second = 2 * 512  # header, one block of data, then the next header
    assert data[second : second + 2] == b"k1"
    data[second + 1] ^= 0x01
    bad = tmp_path / "bad-000000.tar"
    bad.write_bytes(bytes(data))
    assert _plain_ustar_members(str(bad)) is None
    with pytest.raises(ShardError, match=r"bad-000000\.tar: truncated after sample 'k0'"):
        index_shard(str(bad))


# ---------------------------------------------------------------- the training stream


def _stream(paths, family=None, **kw):
    args = dict(batch_size=4, seed=3, steps=12, segment_steps=5, shuffle_buffer=16)
    args.update(kw)
    return TrainStream(paths, LINE, family or make_family("crnn_vgg", list("0123")), **args)


def _keys(stream, workers=0):
    return [tuple(b.keys) for b in train_loader(stream, workers)]


def test_stream_is_a_function_of_seed_and_step(line_shards):
    full = _keys(_stream(line_shards))
    assert len(full) == 12
    assert all(len(k) == 4 for k in full)
    for start in (3, 5, 7):  # mid-segment, at a boundary, mid-segment
        assert _keys(_stream(line_shards, start_step=start)) == full[start:]
    assert _keys(_stream(line_shards, seed=4)) != full
    assert _keys(_stream(line_shards, rank=1, world_size=2)) != full


def test_stream_tensors_are_reproduced_on_resume(line_shards):
    a = list(train_loader(_stream(line_shards), 0))[6:]
    b = list(train_loader(_stream(line_shards, start_step=6), 0))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images) and torch.equal(x.widths, y.widths)


def test_stream_with_workers_keeps_step_order(line_shards):
    full = _keys(_stream(line_shards, lanes=2), workers=2)
    assert len(full) == 12
    assert _keys(_stream(line_shards, lanes=2, start_step=5), workers=2) == full[5:]
    with pytest.raises(ValueError, match="lanes"):
        _keys(_stream(line_shards, lanes=1), workers=2)


def test_workers_and_ranks_draw_batches_of_their_own(line_shards):
    # Split by worker and by DDP rank: each lane (worker) and each rank resamples the shards
    # under a seed of its own, so no batch comes twice in a run, nor to two ranks. Lanes seeded
    # alike would hand out every batch twice, on neighbouring steps.
    two_lanes = _keys(_stream(line_shards, lanes=2), workers=2)
    assert len(set(two_lanes)) == len(two_lanes) == 12
    ranks = [_keys(_stream(line_shards, lanes=2, rank=r, world_size=2), workers=2) for r in (0, 1)]
    assert ranks[0] == two_lanes  # rank 0 draws what one process draws
    assert not set(ranks[0]) & set(ranks[1])


def test_a_worker_ends_on_its_parents_sigterm_and_on_no_one_elses(line_shards):
    """SLURM and torchrun send SIGTERM to a rank's whole process group: a worker goes on (the
    training stops after its step, and saves it). Its parent's SIGTERM ends it at once, as
    the interpreter's exit sends it to daemonic processes before joining them: a worker that
    ignored it held the exit of a CI run after its last test, for ever."""
    import subprocess
    import time

    batches = iter(train_loader(_stream(line_shards, lanes=2), 2))
    next(batches)
    workers = list(batches._workers)
    subprocess.run(["kill", "-TERM", str(workers[0].pid)], check=True)  # another's SIGTERM
    time.sleep(0.5)
    assert workers[0].is_alive()
    assert len(next(batches).keys) == 4  # it still serves
    for w in workers:
        w.terminate()  # its parent's
    for w in workers:
        w.join(timeout=10)
    assert [w.exitcode for w in workers] == [0, 0]
    close_loader(batches)


def test_loader_pins_batches_for_a_gpu_alone(line_shards):
    # Training and bench/bench_train.py load through train_loader: on CUDA the batches are
    # pinned (asynchronous copies to the GPU), on the CPU they are not (nothing to copy).
    stream = _stream(line_shards)
    assert train_loader(stream, 0, torch.device("cuda", 0)).pin_memory is True
    assert train_loader(stream, 0, torch.device("cpu")).pin_memory is False
    assert train_loader(stream, 0).pin_memory is False


def test_stream_reaches_every_sample(line_shards):
    stream = _stream(line_shards, steps=40, segment_steps=3, shuffle_buffer=4)
    seen = {k for keys in _keys(stream) for k in keys}
    # 160 draws of 60 samples in 13 short segments: reading every shard from its start would
    # see at most the first ~16 samples of each (32); random offsets reach most of them.
    assert len(seen) >= 45


def test_curriculum_max_len_grows_one_character_per_stage():
    assert [curriculum_max_len(s, 5) for s in (0, 4, 5, 9, 10, 23)] == [1, 1, 2, 2, 3, 5]
    assert curriculum_max_len(10**6, 0) == 0  # no curriculum: no limit


def test_length_curriculum_draws_short_labels_first_and_resumes(line_shards):
    # Labels of 1-4 characters; stages of 5 steps = one segment each.
    stream = _stream(line_shards, steps=20, curriculum_steps=5)
    batches = list(train_loader(stream, 0))
    lengths = [max(len(t) for t in b.texts) for b in batches]
    for step, longest in enumerate(lengths):
        assert longest <= step // 5 + 1, (step, longest)
    assert lengths[:5] == [1] * 5  # the first stage holds only one-character labels
    assert max(lengths[15:]) == 4  # by the fourth stage every length is back
    keys = [tuple(b.keys) for b in batches]
    assert _keys(_stream(line_shards, steps=20, curriculum_steps=5, start_step=7)) == keys[7:]
    assert keys != _keys(_stream(line_shards, steps=20))


def test_curriculum_filter_stops_once_every_label_passes(line_shards, monkeypatch):
    """With the family's longest label known (the reader's 4), segments whose limit lets every
    label through read no JSON for lengths, and draw exactly the samples of the filtered stream."""
    keys = _keys(_stream(line_shards, steps=20, curriculum_steps=5))
    reader = make_family("reader", list("0123"))
    assert reader.longest_label == 4 and _stream(line_shards).family.longest_label == 0  # CTC
    limits = []
    filter_ = within_length

    def counting(samples, max_len):
        limits.append(max_len)
        return filter_(samples, max_len)

    monkeypatch.setattr("models.data.within_length", counting)
    assert _keys(_stream(line_shards, steps=20, curriculum_steps=5, family=reader)) == keys
    assert limits == [1, 2, 3]  # segments 0-2 filter; segment 3 (limit 4) does not


def test_label_length_reads_the_json_without_decoding():
    assert label_length({"json": b'{"text": "12+3"}', "png": b"not decoded"}) == 4
    # A bad or missing JSON passes as 0: decode_sample raises the error that names it.
    assert label_length({"json": b"{oops"}) == 0
    assert label_length({"png": b""}) == 0


def test_label_length_counts_characters_not_bytes():
    # shards hold their JSON as UTF-8 text (a hanzi is three bytes): the curriculum's limit is
    # in characters
    line = json.dumps({"text": "中文1"}, ensure_ascii=False).encode()
    assert label_length({"json": line, "png": b""}) == 3


def test_the_curriculum_gives_up_only_on_long_labels_in_a_row(monkeypatch):
    """Patience counts the long labels in a row, not in all: a reader's shards, mostly longer
    than the first stage's one character, skip thousands before each short one, and must not
    be taken for a task with no short label at all."""
    monkeypatch.setattr("models.data.CURRICULUM_PATIENCE", 50)
    long, short = {"json": b'{"text": "abc"}'}, {"json": b'{"text": "a"}'}
    samples = ([long] * 40 + [short]) * 5
    assert len(list(within_length(iter(samples), 1))) == 5  # 200 skipped, never 50 in a row
    with pytest.raises(DataError, match="50 samples in a row"):
        list(within_length(iter([long] * 50 + [short]), 1))


def test_a_curriculum_shorter_than_every_label_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr("models.data.CURRICULUM_PATIENCE", 50)
    paths = write_shards(tmp_path, "train", 1, 20, "0123", LINE, length=(3, 3), seed=5)
    stream = _stream(paths, steps=4, curriculum_steps=10)
    with pytest.raises(DataError, match=r"shard \S*train-000000\.tar\) have labels longer than 1"):
        list(train_loader(stream, 0))


# ---------------------------------------------------------------- where characters are drawn


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _centred_shard(path: Path, metas: list[dict]) -> str:
    """A shard of 64-px-high images, one per ``metas`` entry (its .json as given)."""
    img = np.full((64, 160), 230, np.uint8)
    return _tar(
        path,
        [
            member
            for i, meta in enumerate(metas)
            for member in ((f"k{i}.png", _png(img)), (f"k{i}.json", json.dumps(meta).encode()))
        ],
    )


def test_centres_reach_the_batch_scaled_as_the_image(tmp_path):
    """A line shard's ``centers`` ride with their sample into the batch, scaled as the image
    is to the model's height (64 px to 32: halved); a sample without them carries None."""
    path = _centred_shard(
        tmp_path / "c-000000.tar",
        [{"text": "01", "centers": [40.0, 101.0]}, {"text": "3"}],
    )
    (batch,) = eval_batches([path], LINE, 8, make_family("crnn_vgg", list("0123")))
    by_key = dict(zip(batch.keys, batch.centers, strict=True))
    assert by_key == {"k0": (20.0, 50.5), "k1": None}
    assert batch.images.shape[-2] == 32


@pytest.mark.parametrize(
    "centers", [[40.0], [40.0, "x"], "40", [40.0, True]], ids=["count", "text", "str", "bool"]
)
def test_bad_centres_name_shard_and_key(tmp_path, centers):
    path = _centred_shard(tmp_path / "c-000000.tar", [{"text": "01", "centers": centers}])
    with pytest.raises(DataError, match=r"c-000000\.tar: sample 'k0': bad centers"):
        list(iter_examples([path], LINE, make_family("crnn_vgg", list("0123"))))


def test_the_alignment_loss_refuses_shards_without_centres_before_the_first_step(tmp_path):
    """``train.align_weight`` needs every training sample's centres: a shard of one's own
    without them stops the run when the stream is built, naming the sample and the setting."""
    paths = write_shards(tmp_path, "train", 1, 6, "0123", LINE)
    family = make_family("crnn_vgg", list("0123"))
    _stream(paths, family)  # without the alignment loss: trains
    with pytest.raises(
        DataError,
        match=r"train-000000\.tar: sample 't_train_000000_000000'.*"
        r"no centers.*train\.align_weight: 0",
    ):
        _stream(paths, family, need_centers=True)
    good = _centred_shard(tmp_path / "c-000000.tar", [{"text": "01", "centers": [40.0, 90.0]}])
    _stream([good], family, need_centers=True)


def _tar_with(path, members):
    """A tar of ``(name, data or (tar type, link name))`` members, in order."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, what in members:
            info = tarfile.TarInfo(name)
            if isinstance(what, bytes):
                info.size = len(what)
                tar.addfile(info, io.BytesIO(what))
            else:
                info.type, info.linkname = what
                tar.addfile(info)
    return str(path)


def _every_reader_refuses(url: str, expected: str) -> None:
    """Training's index, evaluation's records and the manifest's count all stop at the shard,
    saying ``expected``."""
    from models.data import index_shard
    from synth.shards import ShardReadError, count_samples, iter_records

    with pytest.raises(ShardError, match=re.escape(expected)):
        index_shard(url)
    with pytest.raises(ShardReadError, match=re.escape(expected)):
        list(iter_records(url))
    with pytest.raises(ShardReadError, match=re.escape(expected)):
        count_samples(url)


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ((tarfile.SYMTYPE, "a.json"), "is a symbolic link (to 'a.json')"),
        ((tarfile.LNKTYPE, "a.json"), "is a hard link (to 'a.json')"),
        ((tarfile.FIFOTYPE, ""), "is not a file"),
    ],
)
def test_a_link_or_special_member_is_an_error_in_every_reader(tmp_path, what, said):
    # WebDataset skips them without a word: the sample they hold would be lost.

    members = [("a.json", b'{"text": "1"}'), ("b.json", what), ("c.json", b'{"text": "3"}')]
    url = _tar_with(tmp_path / "links-000000.tar", members)
    _every_reader_refuses(url, f"shard {url}: member 'b.json' {said}")


def test_every_reader_splits_member_names_as_webdataset_does(tmp_path):
    # A folder with a dot in its name: the key is the folder and the file name to its first dot.
    from models.data import index_shard, read_shard
    from synth.shards import count_samples, iter_records

    members = [
        ("v1.2/a.json", b'{"text": "1"}'),
        ("v1.2/a.PNG", b"png"),
        ("v1.2/b.c.json", b'{"text": "2"}'),
    ]
    url = _tar_with(tmp_path / "names-000000.tar", members)
    records = [(r["__key__"], sorted(k for k in r if k != "__key__")) for r in iter_records(url)]
    assert records == [("v1.2/a", ["json", "png"]), ("v1.2/b", ["c.json"])]
    trained = [
        (r["__key__"], sorted(k for k in r if not k.startswith("__"))) for r in read_shard(url)
    ]
    assert trained == records
    assert count_samples(url) == 2
    # A member without an extension is an error in both, not skipped by one of them.
    for name, said in [("v1.2/README", "has no extension"), ("v1.2/.x.png", "has no name before")]:
        url = _tar_with(tmp_path / "bare-000000.tar", [*members, (name, b"x")])
        _every_reader_refuses(url, f"shard {url}: member {name!r} {said}")
    # The direct reader (plain ustar headers, as synth.shards writes them) says it too.
    from models.data import _plain_ustar_members

    plain = tmp_path / "plain-000000.tar"
    with tarfile.open(plain, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("k0.json", ".json"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    assert _plain_ustar_members(str(plain)) is not None
    with pytest.raises(ShardError, match=re.escape("member '.json' has no name before")):
        index_shard(str(plain))


def test_curriculum_stages_that_end_inside_a_segment_change_the_limit_on_time(line_shards):
    """The limit was read once per segment, at its first step: with checkpoints every 5 steps
    and stages of 3 (configs/gpu.yaml's reader: 1000 and 500), stage 1 drew one character for
    5 steps, not 3, and stage 2 (two characters) never came. The segment is cut where a stage
    ends, and a resume inside either piece still sees what an unbroken run sees."""
    reader = make_family("reader", list("0123"))
    stream = _stream(line_shards, steps=20, curriculum_steps=3, family=reader)
    assert [stream.piece_start(s) for s in range(12)] == [0, 0, 0, 3, 3, 5, 6, 6, 6, 9, 10, 10]
    batches = list(train_loader(stream, 0))
    lengths = [max(len(t) for t in b.texts) for b in batches]
    for step, longest in enumerate(lengths):
        assert longest <= step // 3 + 1, (step, longest)
    assert max(lengths[3:5]) == 2 and 3 in lengths[6:9] and max(lengths[9:]) == 4
    keys = [tuple(b.keys) for b in batches]
    for start in (4, 7, 12):
        resumed = _stream(
            line_shards, steps=20, curriculum_steps=3, family=reader, start_step=start
        )
        assert _keys(resumed) == keys[start:]
    # Two lanes (DataLoader workers): a resume inside a piece replays its lane's earlier steps.
    lanes = dict(steps=20, curriculum_steps=3, family=reader, lanes=2)
    full = _keys(_stream(line_shards, **lanes), workers=2)
    for start in (1, 4, 7, 12):
        assert _keys(_stream(line_shards, **lanes, start_step=start), workers=2) == full[start:]
    # Past the last stage that filters (the reader's labels are at most 4 long), no more cuts.
    assert [stream.piece_start(s) for s in (14, 15, 16)] == [10, 15, 15]
    # A curriculum of whole segments is cut as before, so its runs draw what they drew.
    whole = _stream(line_shards, steps=20, curriculum_steps=10, family=reader)
    assert [whole.piece_start(s) for s in (4, 5, 9, 10, 14)] == [0, 5, 5, 10, 10]


def test_a_piece_cut_inside_a_segment_draws_samples_of_its_own(tmp_path):
    """A piece that starts inside a segment is seeded by its first step too: seeded as its
    segment, it would draw the first piece's samples again. With labels of one character every
    stage lets them all through, so that would show as the same batches twice."""
    paths = write_shards(tmp_path, "train", 2, 30, "0123", LINE, length=(1, 1), seed=4)
    stream = _stream(paths, steps=10, segment_steps=10, curriculum_steps=5)
    assert [stream.piece_start(s) for s in (4, 5, 9)] == [0, 5, 5]
    keys = _keys(stream)
    assert len(keys) == 10 and keys[5:] != keys[:5]
