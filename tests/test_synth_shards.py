"""Shards: same bytes from the same seed, WebDataset-readable, covering faces, manifests."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from conftest import NOTO_SANS, font_with_damaged_outlines
from fontTools.ttLib import TTCollection
from PIL import Image

from synth import shards
from synth.augment import ORDER, stroke_weight
from synth.charset import build_charset
from synth.fonts import read_coverage, scan_fonts, with_forms, write_coverage
from synth.preview import contact_sheet
from synth.render import FontFace
from synth.shards import (
    MTIME,
    OWNER,
    ShardWriter,
    encode_png,
    generate,
    read_manifest,
    write_manifest,
    write_shard,
)
from synth.specs import ShardSpec, split_config, task_spec
from synth.text import evaluate

SMALL = {
    "hanzi": {"charset": {"source": "gb2312_level1", "limit": 50}},
    "expr": {"degrade": {k: {"p": 0.3} for k in ("gaussian_noise", "affine", "jpeg", "invert")}},
    "line": {"charset": {"source": "line", "limit": 80}, "length": [1, 8]},
    "short": {"charset": {"source": "chars", "chars": "AB啊座0123"}},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, cjk_font, latin_font, heldout_font):
    """Charsets of the small tasks; coverage of WenQuanYi + DejaVu (train), UKai (test)."""
    tmp = tmp_path_factory.mktemp("cov")
    charsets = {}
    for task, cfg in SMALL.items():
        spec = task_spec(task, cfg)
        c = spec.charset
        charsets[task] = c.build()
    chars = set().union(*charsets.values())
    records = scan_fonts(
        [str(cjk_font), str(latin_font)], [str(heldout_font)], chars, [r"\b(HK|TW)\b"]
    )
    write_coverage(records, charsets, tmp / "coverage.tsv")
    return charsets, tmp / "coverage.tsv"


def _faces(setup, task, role="train"):
    charsets, coverage = setup
    return read_coverage(coverage, task, charsets[task], role)


def _write(setup, tmp_path, task, split="train", shard=0, samples=24, seed=11, name="a.tar", **cfg):
    """A shard of the small task, with ``cfg`` keys overriding its config; faces picked as
    workflow/scripts/shard.py picks them (the split's role, the task's exclude_families)."""
    charsets, coverage = setup
    role = "test" if split == "test_heldout" else "train"
    spec = task_spec(task, {**SMALL[task], **cfg})
    faces = read_coverage(coverage, task, charsets[task], role, spec.exclude_families)
    path = tmp_path / task / name
    write_shard(path, spec, ShardSpec(task, split, shard, samples, seed), charsets[task], faces)
    return path


@pytest.mark.parametrize("task", ["hanzi", "expr", "line", "short"])
def test_same_seed_same_bytes(setup, tmp_path, task):
    a = _write(setup, tmp_path, task, name="a.tar")
    _write(setup, tmp_path, task, shard=1, name="other.tar")  # another job in between
    b = _write(setup, tmp_path, task, name="b.tar")
    assert a.read_bytes() == b.read_bytes()
    c = _write(setup, tmp_path, task, seed=12, name="c.tar")
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("task", ["expr", "line", "short"])
def test_a_fixed_stroke_weight_draws_the_same_samples_bolder(setup, tmp_path, task):
    """``write_shard(..., weight=)`` (bench/bench_weight.py's probe): 0 writes the workflow's
    bytes; another amount the same texts, faces and keys, each image bolder (or thinner)."""
    charsets, coverage = setup
    # Poisson and gamma noise take as many numbers from the generator as their pixels ask
    noisy = {"poisson_noise": {"p": 0.5}, "gamma_noise": {"p": 0.5}, "blur": {"p": 0.5}}
    spec = task_spec(task, {**SMALL[task], "degrade": noisy})
    faces = read_coverage(coverage, task, charsets[task], "train", spec.exclude_families)
    shard = ShardSpec(task, "train", 0, 12, 11)
    paths = {}
    for amount in (0.0, 1.0, -0.5):
        paths[amount] = tmp_path / f"w{amount}.tar"
        write_shard(paths[amount], spec, shard, charsets[task], faces, amount)
    workflows = _write(setup, tmp_path, task, samples=12, degrade=noisy)
    assert paths[0.0].read_bytes() == workflows.read_bytes()
    base, bold, thin = (list(shards.iter_records(paths[a])) for a in (0.0, 1.0, -0.5))
    for b, heavy, light in zip(base, bold, thin, strict=True):
        assert b["__key__"] == heavy["__key__"] == light["__key__"]
        assert json.loads(b["json"]) == json.loads(heavy["json"]) == json.loads(light["json"])
        images = [np.asarray(Image.open(io.BytesIO(r["png"]))) for r in (b, heavy, light)]
        assert not np.array_equal(images[0], images[1])
        assert not np.array_equal(images[0], images[2])
    # without degradations, each image is stroke_weight of the one the workflow draws
    plain = task_spec(task, {**SMALL[task], "degrade": {}})
    a = tmp_path / "p0.tar"
    write_shard(a, plain, shard, charsets[task], faces)
    for amount in (1.0, -0.5):
        b = tmp_path / f"p{amount}.tar"
        write_shard(b, plain, shard, charsets[task], faces, amount)
        for ra, rb in zip(shards.iter_records(a), shards.iter_records(b), strict=True):
            clean = np.asarray(Image.open(io.BytesIO(ra["png"])))
            drawn = np.asarray(Image.open(io.BytesIO(rb["png"])))
            assert np.array_equal(drawn, stroke_weight(clean, amount))


# A shard as _write writes it, in another process: argv = tests folder, task, coverage, out.
_ANOTHER_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from test_synth_shards import SMALL
from synth.fonts import read_coverage
from synth.shards import write_shard
from synth.specs import ShardSpec, task_spec
task, coverage, out = sys.argv[2:5]
spec = task_spec(task, SMALL[task])
charset = spec.charset.build()
faces = read_coverage(coverage, task, charset, "train", spec.exclude_families)
write_shard(out, spec, ShardSpec(task, "train", 0, 24, 11), charset, faces)
"""


@pytest.mark.parametrize("task", ["hanzi", "expr", "line", "short"])
def test_same_bytes_in_another_process_and_environment(setup, tmp_path, task):
    """Another hash seed, time zone, locale (ASCII, not UTF-8) and umask change no byte of a
    shard, nor of the charset it is built from (the same config, the same bytes anywhere)."""
    here = _write(setup, tmp_path, task)
    there = tmp_path / "there.tar"
    tests = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PYTHONPATH": str(tests.parent),
        "PYTHONHASHSEED": "12345",
        "TZ": "Asia/Shanghai",
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
    }
    subprocess.run(
        [sys.executable, "-c", _ANOTHER_PROCESS, str(tests), task, str(setup[1]), str(there)],
        env=env,
        check=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o077),
    )
    assert there.read_bytes() == here.read_bytes()


# A shard drawn with the one font file in a folder, as the locale lists it: argv = folder, out.
_NAMED_FONT = """
import glob, sys
from synth.fonts import Face
from synth.shards import write_shard
from synth.specs import ShardSpec, task_spec
(path,) = glob.glob(sys.argv[1] + "/*.ttf")
spec = task_spec("expr", {})
charset = spec.charset.build()
face = Face(path, 0, "DejaVu Sans", "Book", frozenset(charset))
write_shard(sys.argv[2], spec, ShardSpec("expr", "train", 0, 4, 11), charset, [face])
"""


def test_a_font_file_named_in_hanzi_is_recorded_alike_in_any_locale(tmp_path, latin_font):
    """A sample's ``font_file`` is the file name's bytes read as UTF-8, not as the locale reads
    file names: under a Latin-1 locale 字.ttf was recorded as three Latin-1 characters, under
    GB18030 as other hanzi, and under an ASCII one the shard job failed."""
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "字体.ttf").write_bytes(latin_font.read_bytes())
    tests = Path(__file__).resolve().parent
    shards_written = []
    for name, locale in (("utf8.tar", {"PYTHONUTF8": "1"}), ("ascii.tar", {"PYTHONUTF8": "0"})):
        env = {**os.environ, "PYTHONPATH": str(tests.parent), "LC_ALL": "C", "LANG": "C", **locale}
        proc = subprocess.run(
            [sys.executable, "-c", _NAMED_FONT, "fonts", name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        shards_written.append((tmp_path / name).read_bytes())
    assert shards_written[0] == shards_written[1]
    files = {json.loads(r["json"])["font_file"] for r in shards.iter_records(tmp_path / "utf8.tar")}
    assert files == {"字体.ttf"}


def test_oldstyle_draws_from_the_generator_only_for_faces_that_have_old_style_digits(setup):
    """tasks.expr.oldstyle: a face whose digits onum changes (Lato) draws them old-style with
    its probability; a face without (the fixture's DejaVu Sans and WenQuanYi) draws exactly
    what it drew without the option, so adding it keeps those faces' images and draws."""
    plain, both = (
        task_spec("expr", SMALL["expr"]),
        task_spec("expr", {**SMALL["expr"], "oldstyle": 1.0}),
    )
    for face in _faces(setup, "expr"):
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        assert np.array_equal(
            shards.draw(plain, "12+3", face, a)[0], shards.draw(both, "12+3", face, b)[0]
        )
        assert a.random() == b.random()
    lato = FontFace("/usr/share/fonts/truetype/lato/Lato-Regular.ttf")
    lining = shards.draw(plain, "10-3", lato, np.random.default_rng(5))[0]
    oldstyle = shards.draw(both, "10-3", lato, np.random.default_rng(5))[0]
    assert not np.array_equal(lining, oldstyle)


def test_each_sample_names_the_degradations_its_image_got(setup, tmp_path):
    """A sample's ``degrade`` is what its image got: with inversion at one half, the samples
    that list it are white on black, the others black on white."""
    path = _write(setup, tmp_path, "short", samples=24, degrade={"invert": {"p": 0.5}})
    listed = []
    for s in wds.WebDataset(str(path), shardshuffle=False):
        meta = json.loads(s["json"])
        border = np.asarray(Image.open(io.BytesIO(s["png"])))[[0, -1]].mean()
        assert ("invert" in meta["degrade"]) == (border < 128), (meta["degrade"], border)
        listed.append("invert" in meta["degrade"])
    assert any(listed) and not all(listed)


def test_splits_and_shards_differ(setup, tmp_path):
    a = _write(setup, tmp_path, "line", split="train", name="a.tar")
    b = _write(setup, tmp_path, "line", split="test_seen", name="b.tar")
    c = _write(setup, tmp_path, "line", shard=1, name="c.tar")
    assert len({a.read_bytes(), b.read_bytes(), c.read_bytes()}) == 3


@pytest.mark.parametrize("task", ["hanzi", "expr", "line", "short"])
def test_shard_reads_back_with_webdataset(setup, tmp_path, task):
    path = _write(setup, tmp_path, task, samples=12)
    samples = list(wds.WebDataset(str(path), shardshuffle=False))
    assert len(samples) == 12
    charset = set(setup[0][task])
    spec = task_spec(task, SMALL[task])
    for s in samples:
        assert "." not in s["__key__"] and s["__key__"].startswith(f"{task}_train_000000_")
        meta = json.loads(s["json"])
        assert {"text", "task", "split", "font", "font_file", "face", "width", "height"} <= set(
            meta
        )
        assert meta["task"] == task and meta["split"] == "train"
        assert meta["seed"] == ShardSpec(task, "train", 0, 12, 11).entropy
        assert isinstance(meta["degrade"], list) and set(meta["degrade"]) <= {*ORDER, "legible"}
        # the font size drawn at: at most the task's largest (a line's is a share of its height),
        # smaller only where the text was shrunk to fit
        largest = spec.font_size[1] * (meta["height"] if task == "line" else 1)
        assert 4 <= meta["font_size"] <= round(largest), (meta["font_size"], spec.font_size)
        assert set(meta["text"]) <= charset
        img = Image.open(io.BytesIO(s["png"]))
        assert img.mode == "L" and img.size == (meta["width"], meta["height"])
        if task == "expr":
            assert meta["value"] == evaluate(meta["text"])
        if task == "hanzi":
            assert img.size == (64, 64)
        if task == "line":  # where each label character is drawn, in order, inside the image
            xs = meta["centers"]
            assert len(xs) == len(meta["text"]) and xs == sorted(xs)
            assert all(isinstance(x, float) and 0 <= x < img.width for x in xs)
        else:
            assert "centers" not in meta


def test_aliased_shards_hold_one_bit_glyphs(setup, tmp_path):
    """``aliased: 1`` draws every sample without anti-aliasing; ``aliased: 0`` is the default."""
    path = _write(setup, tmp_path, "short", samples=12, name="aliased.tar", aliased=1.0)
    for s in wds.WebDataset(str(path), shardshuffle=False):
        assert len(np.unique(np.asarray(Image.open(io.BytesIO(s["png"]))))) == 2
    default = _write(setup, tmp_path, "short", name="default.tar")
    explicit = _write(setup, tmp_path, "short", name="zero.tar", aliased=0.0)
    assert explicit.read_bytes() == default.read_bytes()


def test_aliased_zero_draws_nothing_from_the_generator(cjk_font):
    """A config without ``aliased`` renders the same pixels as before the option existed."""
    from synth.fonts import Face
    from synth.render import render_short
    from synth.shards import draw

    face = Face(str(cjk_font), 0, "WenQuanYi", "Regular", frozenset("AB3"))
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    ours = draw(task_spec("short", {}), "AB3", face, a)[0]
    plain = render_short("AB3", face, 40, b, font_size=(10, 14))
    assert np.array_equal(ours, plain)
    assert a.random() == b.random()  # the streams are still aligned


def test_a_font_with_damaged_outlines_is_named_with_the_text_it_cannot_draw(latin_font, tmp_path):
    """The coverage scan counts glyphs FreeType cannot draw as missing; a face said to cover
    them anyway (a coverage table of older code, a Face made by hand) stops the shard job with
    an error naming the font and the text, not FreeType's bare one."""
    from synth.fonts import Face, FontError

    bad = font_with_damaged_outlines(latin_font, "0123456789+-*()", tmp_path / "damaged.ttf")
    face = Face(str(bad), 0, "DejaVu Sans", "Book", frozenset("0123456789+-*()"))
    shard = ShardSpec("expr", "train", 0, 5, 1)
    with pytest.raises(
        FontError, match=rf"expr/train: font {bad} \(face 0, DejaVu Sans Book\) cannot draw '"
    ) as e:
        list(generate(task_spec("expr", {}), shard, list("0123456789+-*()"), [face]))
    assert e.value.key == "fonts.paths"
    assert not list(tmp_path.glob("*.tar"))


@pytest.mark.parametrize("task", ["expr", "short"])
def test_a_font_whose_advances_are_out_of_scale_is_named_not_drawn_as_specks(
    latin_font, tmp_path, task
):
    """Every advance 15 em wide: at the smallest size the text still overran its image, and the
    samples showed specks of its ends under their whole labels; no legibility floor saw it."""
    from fontTools.ttLib import TTFont

    from synth.fonts import Face, FontError

    font = TTFont(str(latin_font))
    hmtx = font["hmtx"]
    for name, (_, lsb) in list(hmtx.metrics.items()):
        hmtx.metrics[name] = (30000, lsb)
    font["hhea"].advanceWidthMax = 30000
    wide = tmp_path / "wide.ttf"
    font.save(str(wide))
    chars = "0123456789+-*()" if task == "expr" else "ABCD"
    face = Face(str(wide), 0, "DejaVu Sans", "Book", frozenset(chars))
    message = (
        rf"{task}/train: font {wide} \(face 0, DejaVu Sans Book\) cannot draw '.+': '.+' is "
        r"\d+ x \d+ px at \d+ px, the smallest size, in an image of .*: a damaged or odd file"
    )
    with pytest.raises(FontError, match=message):
        list(generate(task_spec(task, {}), ShardSpec(task, "train", 0, 5, 1), list(chars), [face]))


def test_a_task_can_exclude_font_families(setup, tmp_path):
    """``tasks.<task>.exclude_families`` keeps matching faces out of that task's shards only."""
    charsets, coverage = setup
    every = {f.family for f in read_coverage(coverage, "expr", charsets["expr"], "train")}
    assert {"DejaVu Sans", "WenQuanYi Micro Hei"} <= every
    kept = read_coverage(coverage, "expr", charsets["expr"], "train", [r"^DejaVu"])
    assert {f.family for f in kept} == every - {"DejaVu Sans"}
    dejavu = next(
        f
        for f in read_coverage(coverage, "expr", charsets["expr"], "train")
        if f.family == "DejaVu Sans"
    )
    by_face = read_coverage(coverage, "expr", charsets["expr"], "train", [f"^{dejavu.name}$"])
    assert {f.name for f in by_face} == {f.name for f in kept}  # the face, by family and style
    spec = task_spec("expr", {**SMALL["expr"], "exclude_families": ["^DejaVu"]})
    assert spec.exclude_families == ("^DejaVu",)
    path = _write(setup, tmp_path, "expr", exclude_families=["^DejaVu"])
    fonts = {json.loads(s["json"])["font"] for s in wds.WebDataset(str(path), shardshuffle=False)}
    assert fonts and not any(f.startswith("DejaVu") for f in fonts)


def test_held_out_split_uses_only_held_out_faces(setup, tmp_path):
    path = _write(setup, tmp_path, "line", split="test_heldout", samples=30)
    fonts = {json.loads(s["json"])["font"] for s in wds.WebDataset(str(path), shardshuffle=False)}
    assert fonts == {"AR PL UKai CN Book"}


def test_no_sample_is_drawn_with_a_face_lacking_a_character(setup):
    # DejaVu Sans (a training face here) has A, B and digits but no hanzi.
    charsets, _ = setup
    faces = _faces(setup, "short")
    dejavu = next(f for f in faces if f.family == "DejaVu Sans")
    assert "啊" not in dejavu.covered and "A" in dejavu.covered
    by_name = {f.name: f for f in faces}
    spec = task_spec("short", SMALL["short"])
    used = set()
    for s in generate(spec, ShardSpec("short", "train", 0, 300, 3), charsets["short"], faces):
        face = by_name[s.meta["font"]]
        assert set(s.meta["text"]) <= face.covered, (s.meta["text"], face.name)
        used.add(face.family)
    assert "DejaVu Sans" in used  # it is used, for the texts it covers


def test_hanzi_classes_are_balanced(setup):
    charsets, _ = setup
    spec = task_spec("hanzi", SMALL["hanzi"])
    texts = []
    for shard in range(2):
        gen = generate(
            spec,
            ShardSpec("hanzi", "train", shard, 50, 1),
            charsets["hanzi"],
            _faces(setup, "hanzi"),
        )
        texts += [s.meta["text"] for s in gen]
    assert sorted(texts) == sorted(charsets["hanzi"] * 2)
    # Shards of another size than the charset continue the order where the last one stopped:
    # 60 samples of 50 classes draw each once or twice
    spec_shards = [ShardSpec("hanzi", "val", shard, 20, 1) for shard in range(3)]
    faces = _faces(setup, "hanzi")
    counts = Counter(
        s.meta["text"] for one in spec_shards for s in generate(spec, one, charsets["hanzi"], faces)
    )
    assert set(counts) == set(charsets["hanzi"]) and set(counts.values()) == {1, 2}


def test_hanzi_classes_stay_balanced_when_the_faces_lack_some(setup, cjk_font):
    """A character the split's faces lack gave its turn in the order to the next, which was
    drawn twice (after a run of them, more): the held-out figures leaned on a few classes."""
    from synth.fonts import Face

    charsets, _ = setup
    charset = charsets["hanzi"]
    lacked = set(charset[5:10]) | set(charset[30:45])  # runs of characters no face draws
    face = Face(str(cjk_font), 0, "WenQuanYi", "Regular", frozenset(charset) - lacked)
    drawn = len(charset) - len(lacked)
    spec = task_spec("hanzi", SMALL["hanzi"])
    shards_ = [ShardSpec("hanzi", "test_heldout", i, drawn, 1) for i in range(3)]
    texts = [s.meta["text"] for one in shards_ for s in generate(spec, one, charset, [face])]
    assert sorted(texts) == sorted([c for c in charset if c not in lacked] * 3)


def test_writer_matches_webdataset_tarwriter_bytes():
    rng = np.random.default_rng(0)
    samples = [
        (f"k_{i:06d}", {"png": rng.bytes(int(rng.integers(1, 3000))), "json": b'{"text":"x"}'})
        for i in range(40)
    ]
    ours, theirs = io.BytesIO(), io.BytesIO()
    w = ShardWriter(ours)
    t = wds.TarWriter(theirs, encoder=False, mtime=MTIME, user=OWNER, group=OWNER)
    for key, parts in samples:
        w.write(key, parts)
        t.write({"__key__": key, **parts})
    w.close()
    t.tarstream.close()
    assert ours.getvalue() == theirs.getvalue()


def test_a_shard_that_fails_half_way_leaves_the_old_shard_and_no_part_of_the_new(setup, tmp_path):
    """A shard job stopped by an error after some samples (a font that cannot draw a text,
    say) leaves the shard as it was, not a shorter tar that reads as whole."""
    path = _write(setup, tmp_path, "expr", samples=4)
    before = path.read_bytes()

    def failing():
        yield shards.Sample("expr_train_000000_000000", np.full((8, 8), 255, np.uint8), {})
        raise ValueError("font cannot draw the second text")

    with pytest.raises(ValueError, match="second text"):
        shards.write_samples(path, failing())
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_manifest_lists_shards_with_counts_and_sha256(setup, tmp_path):
    paths = [
        _write(setup, tmp_path, "expr", split="train", shard=0, samples=7, name="train-000000.tar"),
        _write(setup, tmp_path, "expr", split="val", shard=0, samples=5, name="val-000000.tar"),
    ]
    out = tmp_path / "expr" / "manifest.tsv"
    write_manifest(paths[::-1], out)  # rows sorted by path, whatever order they come in
    rows = read_manifest(out)
    assert [(r["split"], r["shard"], r["samples"]) for r in rows] == [
        ("train", "train-000000.tar", 7),
        ("val", "val-000000.tar", 5),
    ]
    for r in rows:
        data = (out.parent / r["path"]).read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["bytes"] == len(data)


def test_contact_sheet_is_written(setup, tmp_path, cjk_font):
    shard = _write(setup, tmp_path, "line", samples=10)
    out = tmp_path / "sheet.png"
    assert contact_sheet([shard], out, n=8) == 8
    with Image.open(out) as img:
        assert img.width > 100 and img.height > 64


def test_preview_command(setup, tmp_path, capsys, latin_font):
    from synth.preview import main

    shard = _write(setup, tmp_path, "expr", samples=6)
    assert main([str(shard), "-n", "4", "-o", str(tmp_path / "p.png")]) == 0
    assert "4 samples" in capsys.readouterr().out
    assert (tmp_path / "p.png").stat().st_size > 0
    # the labels drawn with the font (and face) given
    out = tmp_path / "latin.png"
    assert main([str(shard), "-o", str(out), "--font", str(latin_font), "--face", "0"]) == 0
    assert capsys.readouterr().out == f"{out}: 6 samples\n" and out.stat().st_size > 0
    # A label font that cannot be read is an error naming the file and face, nothing written
    # (a warning, and the sheet drawn with a system font); --face needs --font.
    (tmp_path / "notes.ttf").write_text("not a font")
    for font, face, said in [
        (tmp_path / "gone.ttf", "0", "does not exist"),
        (tmp_path / "notes.ttf", "0", "not a font this project reads: 10 bytes: too short"),
        (latin_font, "1", "no such face (the file has 1; faces count from 0)"),
        # a collection: its faces counted by fontTools, as the coverage tables read them
        (NOTO_SANS, "99", f"no such face (the file has {len(TTCollection(NOTO_SANS).fonts)}; "),
    ]:
        argv = [str(shard), "-o", str(tmp_path / "x.png"), "--font", str(font), "--face", face]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(
            f"python -m synth.preview: error: label font {font} (face {face}): {said}"
        ), err
        assert err.count("\n") == 1 and not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit) as usage:
        main([str(shard), "-o", str(tmp_path / "x.png"), "--face", "1"])
    assert usage.value.code == 2 and not (tmp_path / "x.png").exists()
    assert "argument --face: not allowed without argument --font" in capsys.readouterr().err
    # A missing or damaged shard is one line, not a traceback; -n below 1 is refused.
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00not a tar" * 100)
    for bad, said in ((tmp_path / "gone.tar", "No such file"), (garbage, "not a readable tar")):
        assert main([str(bad), "-o", str(tmp_path / "x.png")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("python -m synth.preview: error: ") and said in err, err
        assert "Traceback" not in err and not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit) as usage:
        main([str(shard), "-n", "0", "-o", str(tmp_path / "x.png")])
    assert usage.value.code == 2
    assert "expected a whole number from 1, got '0'" in capsys.readouterr().err
    # the sheet over its own input: refused, the shard kept (it was overwritten with a PNG)
    kept = shard.read_bytes()
    for out, said in ((shard, "is one of the shards given"), (tmp_path / "x.jpg", "give a .png")):
        with pytest.raises(SystemExit) as usage:
            main([str(shard), "-o", str(out)])
        assert usage.value.code == 2 and said in capsys.readouterr().err
    assert shard.read_bytes() == kept


@pytest.mark.parametrize("part", ["png", "json"])
def test_preview_names_the_shard_and_sample_of_a_damaged_member(tmp_path, capsys, part):
    # The contact sheet reads shards as training and evaluation do: a sample whose image or
    # label does not decode is named, not reported as Pillow's or the codec's bare message.
    from synth.preview import main

    png = bytearray(encode_png(np.full((8, 8), 200, np.uint8)))
    good = {"png": bytes(png), "json": json.dumps({"text": "1", "font": "F"}).encode()}
    idat = png.index(b"IDAT") + 4
    png[idat : idat + 6] = b"\xff" * 6
    bad = {"png": bytes(png), "json": b'{"text": "\xff"}'}
    shard = tmp_path / "damaged.tar"
    with open(shard, "wb") as f:
        writer = ShardWriter(f)
        writer.write("k_000000", good)
        writer.write("k_000001", {**good, part: bad[part]})
        writer.close()
    assert main([str(shard), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"python -m synth.preview: error: shard {shard}: sample 'k_000001': cannot decode .{part}: "
    ), err
    assert err.count("\n") == 1 and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_levels_decode_to_the_same_pixels(level):
    """Every ``png_level`` is lossless; 0 stores, so it is the largest; noise is stored raw."""
    rng = np.random.default_rng(0)
    clean = np.full((64, 64), 255, np.uint8)
    clean[20:40, 10:50] = 0
    noisy = rng.integers(0, 256, (32, 90), dtype=np.uint8)
    for image in (clean, noisy):
        png = encode_png(image, level)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    assert len(encode_png(clean, level)) <= len(encode_png(clean, 0))
    if level:
        assert len(encode_png(clean, level)) < len(encode_png(clean, 0)) / 4


def test_expr_shards_with_division_label_whole_number_values(tmp_path, cjk_font):
    charset = list("0123456789+-*/()")
    write_coverage(scan_fonts([str(cjk_font)], [], charset), {"expr": charset}, tmp_path / "c.tsv")
    faces = read_coverage(tmp_path / "c.tsv", "expr", charset, "train")
    spec = task_spec("expr", {"charset": {"chars": "".join(charset)}, "operators": "+-*/"})
    path = tmp_path / "div.tar"
    write_shard(path, spec, ShardSpec("expr", "train", 0, 40, 5), charset, faces)
    records = [json.loads(r["json"]) for r in wds.WebDataset(str(path), shardshuffle=False)]
    assert any("/" in r["text"] for r in records)
    for r in records:
        assert isinstance(r["value"], int) and r["value"] == evaluate(r["text"]), r


def test_an_operator_the_charset_lacks_is_an_error_naming_it(setup, tmp_path):
    with pytest.raises(ValueError, match=r"tasks\.expr\.operators: '/' not in the task's charset"):
        _write(setup, tmp_path, "expr", operators="+/")
    with pytest.raises(ValueError, match=r"tasks\.expr\.operators"):
        task_spec("expr", {"operators": "+%"})


def test_png_level_is_a_task_setting():
    assert task_spec("hanzi", {}).png_level == 0
    assert task_spec("line", {"png_level": 6}).png_level == 6


@pytest.mark.parametrize("task", ["hanzi", "expr", "line", "short"])
def test_task_spec_defaults_match_the_schema(task):
    """A library caller (`task_spec(task, {})`) gets the defaults the workflow's schema gives."""
    import dataclasses
    from pathlib import Path

    import yaml

    schema_path = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    props = schema["properties"]["tasks"]["properties"][task]["properties"]
    spec = task_spec(task, {})
    fields = {f.name for f in dataclasses.fields(spec)}
    assert set(props) - {"splits"} == fields
    charset_keys = set(schema["definitions"]["charset"]["properties"])
    assert charset_keys == {f.name for f in dataclasses.fields(spec.charset)}
    for key in fields - {"degrade"}:
        if "default" not in props[key]:
            # Unset in the workflow's config, so its shard params stay those of a config without
            # it: off here (tasks.line.corpus empty, tasks.expr.oldstyle 0).
            assert getattr(spec, key) in ((), 0.0), (task, key)
            continue
        default = props[key]["default"]
        if key == "charset":
            assert spec.charset == task_spec(task, {"charset": default}).charset, task
        else:
            ours = getattr(spec, key)
            assert (list(ours) if isinstance(ours, tuple) else ours) == default, (task, key)


def test_a_split_can_override_its_tasks_degradations():
    task = {
        "height": 32,
        "degrade": {"blur": {"p": 0.3, "radius": [0.3, 1.2]}, "legible": {"min_snr": 2}},
        "splits": {
            "train": {"shards": 2, "samples": 10},
            "test_heldout": {
                "shards": 1,
                "samples": 5,
                "degrade": {"legible": {"ink": "stroke"}, "jpeg": {"p": 0.5}},
            },
        },
    }
    # No override: the task's settings as they are, so the shards' keys do not change.
    assert split_config("expr", task, "train") == {k: v for k, v in task.items() if k != "splits"}
    merged = split_config("expr", task, "test_heldout")
    assert merged["degrade"] == {
        "blur": {"p": 0.3, "radius": [0.3, 1.2]},
        "legible": {"min_snr": 2, "ink": "stroke"},  # parameter by parameter
        "jpeg": {"p": 0.5},
    }
    assert task["degrade"]["legible"] == {"min_snr": 2}  # the task's own settings untouched
    assert task_spec("expr", merged).degrade["legible"]["ink"] == "stroke"
    bad = {**task, "splits": {"val": {"degrade": {"legible": {"inks": "stroke"}}}}}
    with pytest.raises(ValueError, match=r"tasks\.expr\.splits\.val: degrade\.legible.*'inks'"):
        split_config("expr", bad, "val")
    bad = {**task, "splits": {"val": {"degrade": {"sparkle": {"p": 1}}}}}
    with pytest.raises(ValueError, match=r"tasks\.expr\.splits\.val: .*sparkle"):
        split_config("expr", bad, "val")


def test_line_shards_draw_their_corpus_lines_from_the_users_own_text(setup, tmp_path):
    """``tasks.line.corpus``: every corpus line is a window of the files' running text, with
    what the charset lacks (whitespace, other characters) taken out."""
    hanzi = [c for c in setup[0]["line"] if "\u4e00" <= c <= "\u9fff"]
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(hanzi, size=int(rng.integers(2, 6)))) for _ in range(300)]
    corpus = tmp_path / "mine.txt"
    corpus.write_text(" ".join(words) + "\n龘 ✓\n", encoding="utf-8")
    running = "".join(words)
    mine = {"corpus_fraction": 1.0, "mix_fraction": 0.0, "corpus": [str(corpus)]}
    path = _write(setup, tmp_path, "line", samples=40, **mine)
    texts = [json.loads(s["json"])["text"] for s in wds.WebDataset(str(path), shardshuffle=False)]
    assert len(texts) == 40 and all(t in running for t in texts)
    assert len(set(texts)) > 30  # windows at many places, not one line again and again
    again = _write(setup, tmp_path, "line", samples=40, name="b.tar", **mine)
    assert again.read_bytes() == path.read_bytes()
    # Without it, jieba's words: other texts, from the same seed
    default = _write(setup, tmp_path, "line", samples=40, corpus_fraction=1.0, name="c.tar")
    assert default.read_bytes() != path.read_bytes()


def test_only_the_first_training_shard_warns_of_what_a_corpus_loses(setup, tmp_path, caplog):
    """Every line shard job reads the corpus; what the charset takes out of it is a warning from
    the first training shard's job and INFO in the others' logs: one line on the console per
    run, not one per shard."""
    hanzi = [c for c in setup[0]["line"] if "\u4e00" <= c <= "\u9fff"]
    corpus = tmp_path / "mine.txt"
    corpus.write_text("".join(np.random.default_rng(1).choice(hanzi, 400)) + "龘\n", "utf-8")
    mine = {"corpus_fraction": 1.0, "mix_fraction": 0.0, "corpus": [str(corpus)]}
    with caplog.at_level("INFO"):
        for shard in (1, 0):
            _write(setup, tmp_path, "line", shard=shard, samples=2, name=f"{shard}.tar", **mine)
    said = [r.levelname for r in caplog.records if "not in the charset" in r.getMessage()]
    assert said == ["INFO", "WARNING"]


def test_a_split_whose_fonts_draw_nothing_of_the_charset_says_which_fonts(setup, tmp_path):
    charsets, _ = setup
    latin = [f for f in _faces(setup, "hanzi") if f.family == "DejaVu Sans"]
    assert latin and not latin[0].covered & set(charsets["hanzi"])
    spec = task_spec("hanzi", SMALL["hanzi"])
    for split, key in (("test_heldout", "fonts.test_fonts"), ("train", "fonts.paths")):
        with pytest.raises(
            ValueError,
            match=rf"hanzi/{split}: none of the 1 faces of {key} \(DejaVu Sans\) draws a "
            rf"character of task hanzi's charset; add a font that does to {key}",
        ):
            list(generate(spec, ShardSpec("hanzi", split, 0, 4, 1), charsets["hanzi"], latin))
        with pytest.raises(ValueError, match=rf"hanzi/{split}: no usable font face .*{key}"):
            list(generate(spec, ShardSpec("hanzi", split, 0, 4, 1), charsets["hanzi"], []))


def test_line_shards_keep_one_space_between_words_when_the_charset_has_it(tmp_path, latin_font):
    """``tasks.line.charset.space``: the space is a class (covered by a face that maps it, though
    its glyph draws nothing); corpus lines keep one space between words, where the text had any
    run of whitespace or a word the charset lacks, and none at either end."""
    from synth.charset import read_charset, write_charset

    letters = "abcdefghijklmnopqrstuvwxyz"
    charset = build_charset("chars", chars=letters, space=True)
    assert charset == [*letters, " "]
    write_charset(charset, tmp_path / "line.txt")
    assert read_charset(tmp_path / "line.txt") == charset
    write_coverage(
        scan_fonts([str(latin_font)], [], charset), {"line": charset}, tmp_path / "c.tsv"
    )
    [face] = read_coverage(tmp_path / "c.tsv", "line", charset, "train")
    assert face.covered == set(charset)
    corpus = tmp_path / "en.txt"
    corpus.write_text("the quick  brown fox,\njumps\tover the ½ lazy dog\n" * 30, encoding="utf-8")
    cfg = {
        "charset": {"source": "chars", "chars": letters, "space": True},
        "corpus": [str(corpus)],
        "corpus_fraction": 1.0,
        "mix_fraction": 0.0,
        "length": [1, 16],
    }
    path = tmp_path / "en.tar"
    write_shard(path, task_spec("line", cfg), ShardSpec("line", "train", 0, 60, 5), charset, [face])
    texts = [json.loads(s["json"])["text"] for s in wds.WebDataset(str(path), shardshuffle=False)]
    running = " ".join(["the quick brown fox jumps over the lazy dog"] * 30)
    assert all(t and t == t.strip() and "  " not in t and t in running for t in texts), texts
    assert sum(" " in t for t in texts) > 30
    with pytest.raises(ValueError, match=r"tasks\.short\.charset\.space: only the line task"):
        task_spec("short", {"charset": {"chars": "AB", "space": True}})
    # Without the space, the same text runs its words together, as before
    plain = {**cfg, "charset": {"source": "chars", "chars": letters}}
    write_shard(
        tmp_path / "p.tar",
        task_spec("line", plain),
        ShardSpec("line", "train", 0, 20, 5),
        list(letters),
        [face],
    )
    plain_texts = [
        json.loads(s["json"])["text"]
        for s in wds.WebDataset(str(tmp_path / "p.tar"), shardshuffle=False)
    ]
    assert all(" " not in t and t in running.replace(" ", "") for t in plain_texts)


def test_held_out_shards_name_the_characters_no_held_out_face_draws(
    tmp_path, latin_font, heldout_font, caplog
):
    """A character only the training fonts draw never appears in a held-out sample: the
    held-out shard job says which, so a held-out figure is not read as covering them."""
    charset = [*"中文", "✓"]  # UKai draws the hanzi, not the check mark; DejaVu draws it
    write_coverage(
        scan_fonts([str(latin_font)], [str(heldout_font)], charset),
        {"line": charset},
        tmp_path / "c.tsv",
    )
    held_out = read_coverage(tmp_path / "c.tsv", "line", charset, "test")
    assert held_out and not any("✓" in f.covered for f in held_out)
    spec = task_spec("line", {"charset": {"source": "chars", "chars": "".join(charset)}})
    with caplog.at_level("WARNING", logger="synth.shards"):
        texts = [
            s.meta["text"]
            for s in generate(spec, ShardSpec("line", "test_heldout", 0, 20, 3), charset, held_out)
        ]
    assert texts and not any("✓" in t for t in texts)
    assert (
        "line/test_heldout: 1 character(s) of the charset are drawn by no held-out face, so no "
        "held-out sample holds them and the held-out figures leave them out: '✓' (U+2713)"
        in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="synth.shards"):
        list(generate(spec, ShardSpec("line", "test_heldout", 0, 2, 3), charset[:2], held_out))
    assert "no held-out face" not in caplog.text


def test_a_face_that_draws_no_sample_of_a_shard_is_named(tmp_path, cjk_font, latin_font, caplog):
    """A face that covers some of the charset but none of the task's texts (digits that draw
    nothing: every expression has a digit) draws no sample at all. The coverage table shows it
    covering 5 of 15 characters, and no other message named it: the shard job says so, and
    logs how many samples each face drew."""
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.tables._g_l_y_f import Glyph

    font = TTFont(latin_font)
    cmap, glyf = font.getBestCmap(), font["glyf"]
    for d in "0123456789":
        glyf[cmap[ord(d)]] = Glyph()  # mapped, but draws nothing
    for r in font["name"].names:
        if r.nameID in (1, 16):
            r.string = "No Digits"
    font.save(tmp_path / "nodigits.ttf")
    spec = task_spec("expr", {})
    charset = spec.charset.build()
    write_coverage(
        scan_fonts([str(cjk_font), str(tmp_path / "nodigits.ttf")], [], charset, ["Mono"]),
        {"expr": charset},
        tmp_path / "c.tsv",
    )
    faces = read_coverage(tmp_path / "c.tsv", "expr", charset, "train")
    assert [f.family for f in faces if f.covered == frozenset("+-*()")] == ["No Digits"]
    with caplog.at_level("INFO", logger="synth.shards"):
        samples = list(generate(spec, ShardSpec("expr", "train", 0, 40, 3), charset, faces))
    assert {s.meta["font"] for s in samples} == {"WenQuanYi Micro Hei Regular"}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    named = "expr/train: 1 face(s) draw characters of the charset but none of this shard's 40"
    assert any(named in w and "No Digits Book (nodigits.ttf)" in w for w in warnings), warnings
    assert "samples by face: WenQuanYi Micro Hei Regular x40" in caplog.text
    # A shard too small to tell (fewer than 10 samples a face) names nobody.
    caplog.clear()
    with caplog.at_level("WARNING", logger="synth.shards"):
        list(generate(spec, ShardSpec("expr", "train", 0, 12, 3), charset, faces))
    assert "none of this shard" not in caplog.text


def test_contact_sheet_shows_every_face_it_can(setup, tmp_path):
    """The sheet is where a user looks at what their fonts draw (a symbol font mapping letters
    to pictures): its samples take each face's first before a second of any face."""
    from synth.preview import take

    for seed in range(8):
        shard = _write(setup, tmp_path, "short", samples=24, seed=seed, name=f"s{seed}.tar")
        drawn = {(m["font_file"], m["face"]) for _, _, m in take([shard], 24)}
        assert len(drawn) >= 2  # WenQuanYi Micro Hei, its Mono face, DejaVu Sans for some
        shown = take([shard], len(drawn))
        assert {(m["font_file"], m["face"]) for _, _, m in shown} == drawn, seed
    assert len(take([shard], 30)) == 24  # all there is, in order
    assert [k for k, _, _ in take([shard], 24)] == sorted(k for k, _, _ in take([shard], 24))


def test_contact_sheet_marks_the_faces_training_never_saw(setup, tmp_path, monkeypatch):
    """The workflow's sheets take turns between a training and a test_heldout shard: each
    held-out tile's face line starts with "[held out]" (kept where the name is shortened to the
    tile), as the per-font plot marks those fonts; a training tile's is the face alone."""
    import synth.preview as preview

    train = _write(setup, tmp_path, "short", samples=4, name="train.tar")
    held = _write(setup, tmp_path, "short", split="test_heldout", samples=4, name="held.tar")
    drawn = []
    fit = preview._fit
    monkeypatch.setattr(preview, "_fit", lambda text, *a: drawn.append(text) or fit(text, *a))
    assert contact_sheet([train, held], tmp_path / "sheet.png", n=8) == 8
    shown = preview.take([train, held], 8)
    lines = drawn[1::2]  # each tile's label, then its face line
    for line, (_, _, meta) in zip(lines, shown, strict=True):
        held_out = meta["split"] == "test_heldout"
        assert line == ("[held out] " if held_out else "") + meta["font"], meta
    assert {m["split"] for _, _, m in shown} == {"train", "test_heldout"}


def test_the_samples_caption_says_the_sheet_is_in_shard_order(setup, tmp_path):
    """The report's caption of the contact sheets tells the order the tiles are in: the shards'
    (`take` picks every face's first, then shows them in order), not each face's first before a
    second of any, which a sheet of a shard whose second sample repeats its first face is not."""
    from synth.preview import take

    shard = _write(setup, tmp_path, "short", samples=24, seed=0)
    shown = [(m["font_file"], m["face"]) for _, _, m in take([shard], 24)]
    first = list(dict.fromkeys(shown))
    assert shown[: len(first)] != first  # a face comes again before the last face's first
    caption = Path(__file__).resolve().parents[1] / "workflow/report/samples.rst"
    text = " ".join(caption.read_text(encoding="utf-8").split())
    assert "shown in shard order" in text
    assert "every face's first sample is among them" in text
    assert "before a second of any" not in text


FW_HANZI = "今天气很好我们一起去公园散步的走吧"


@pytest.fixture(scope="module")
def no_fullwidth_font(tmp_path_factory, cjk_font):
    """WenQuanYi Micro Hei cut down (fontTools.subset) to a few hanzi, ASCII punctuation and
    full-width brackets: a face without the full-width comma and exclamation mark (U+FF0C,
    U+FF01) a corpus has."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(cjk_font, fontNumber=0)
    options = subset.Options()
    options.name_IDs = ["*"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in FW_HANZI + ",!?()（）"])
    subsetter.subset(font)
    for r in font["name"].names:
        if r.nameID in (1, 16):
            r.string = "No Fullwidth"
    path = tmp_path_factory.mktemp("subset") / "nofullwidth.ttf"
    font.save(path)
    cmap = TTFont(path).getBestCmap()
    assert ord("，") not in cmap and ord("！") not in cmap and ord(",") in cmap
    return path


def _full_width_line_spec(tmp_path, charset):
    """A line task drawing a Chinese text's lines alone: its ``，！（）`` are full-width."""
    corpus = tmp_path / "zh.txt"
    corpus.write_text("今天，天气很好！我们一起去公园（散步），好的，走吧！\n" * 20, "utf-8")
    cfg = {
        "charset": {"source": "chars", "chars": "".join(charset)},
        "corpus": [str(corpus)],
        "corpus_fraction": 1.0,
        "mix_fraction": 0.0,
        "length": [2, 8],
    }
    return task_spec("line", cfg)


def test_line_shards_draw_the_corpus_full_width_forms_labelled_in_nfkc(
    tmp_path, cjk_font, no_fullwidth_font
):
    """Lines show the punctuation as the user's text has it (``，！`` from a Chinese text), and
    their labels are its NFKC form (``,!``). A face lacking a full-width form draws its NFKC form
    in its place (the label is the same), so no sample shows a missing-glyph box."""
    from fontTools.ttLib import TTFont

    charset = build_charset("chars", chars=FW_HANZI + ",!()")
    write_coverage(
        scan_fonts([str(cjk_font), str(no_fullwidth_font)], [], charset, ["Mono"]),
        {"line": charset},
        tmp_path / "c.tsv",
    )
    faces = read_coverage(tmp_path / "c.tsv", "line", charset, "train")
    assert {f.family for f in faces} == {"WenQuanYi Micro Hei", "No Fullwidth"}
    spec = _full_width_line_spec(tmp_path, charset)
    samples = list(generate(spec, ShardSpec("line", "train", 0, 120, 5), charset, faces))
    cmaps = {f.name: TTFont(f.path, fontNumber=f.index).getBestCmap() for f in faces}
    drawn_by: dict[str, str] = {name: "" for name in cmaps}
    for s in samples:
        label, drawn = s.meta["text"], s.meta.get("drawn", s.meta["text"])
        assert label == unicodedata.normalize("NFKC", drawn) and set(label) <= set(charset)
        assert all(ord(c) in cmaps[s.meta["font"]] for c in drawn), (drawn, s.meta["font"])
        drawn_by[s.meta["font"]] += drawn
    full, cut = drawn_by["WenQuanYi Micro Hei Regular"], drawn_by["No Fullwidth Regular"]
    assert "，" in full and "！" in full and "（" in full and "," not in full
    assert "," in cut and "!" in cut and "（" in cut  # what it has of the forms, it draws
    # The images show the forms: the same text and generator state, drawn with ',' or '，'
    face = next(f for f in faces if f.family == "WenQuanYi Micro Hei")
    ascii_, wide = (
        shards.draw(spec, t, face, np.random.default_rng(0), label="好,走")[0]
        for t in ("好,走", "好，走")
    )
    assert ascii_.shape != wide.shape or not np.array_equal(ascii_, wide)
    # The same config, the same bytes
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    for path in (a, b):
        write_shard(path, spec, ShardSpec("line", "train", 0, 40, 5), charset, faces)
    assert a.read_bytes() == b.read_bytes()


def test_a_form_fonts_misdrawn_names_for_a_face_is_drawn_in_its_nfkc_form_there(tmp_path, cjk_font):
    """``fonts.misdrawn`` reaches the forms a line shows beside its charset's: a face it names
    for ``，`` draws the label's ``,`` in its place (as a face lacking the form does), its other
    forms as before, and the faces it does not name are as they were."""
    charset = build_charset("chars", chars=FW_HANZI + ",!()")
    write_coverage(
        scan_fonts([str(cjk_font)], [], charset, ["Mono"]), {"line": charset}, tmp_path / "c.tsv"
    )
    faces = read_coverage(tmp_path / "c.tsv", "line", charset, "train")
    forms = set("，！（）")
    assert all(forms <= f.covered for f in with_forms(faces, forms))
    wrong = {"^WenQuanYi Micro Hei$": "，"}
    for f in with_forms(faces, forms, wrong):
        assert "，" not in f.covered and set("！（）") <= f.covered
        assert f.covered - set(charset) == set("！（）")
    assert with_forms(faces, forms, {"^Other$": "，"}) == with_forms(faces, forms)
    spec = _full_width_line_spec(tmp_path, charset)
    shard = ShardSpec("line", "train", 0, 60, 5)
    plain = list(generate(spec, shard, charset, faces))
    told = list(generate(spec, shard, charset, faces, misdrawn=wrong))
    drawn = [s.meta.get("drawn", s.meta["text"]) for s in told]
    assert "，" in "".join(s.meta.get("drawn", "") for s in plain)
    assert "，" not in "".join(drawn) and "！" in "".join(drawn)
    # the same texts, labels and faces: only how the comma is drawn differs
    assert [s.meta["text"] for s in told] == [s.meta["text"] for s in plain]
    assert [d.replace(",", "，") for d in drawn] == [
        s.meta.get("drawn", s.meta["text"]).replace(",", "，") for s in plain
    ]
    a = tmp_path / "a.tar"
    write_shard(a, spec, ShardSpec("line", "train", 0, 20, 5), charset, faces, misdrawn=wrong)
    records = [json.loads(r["json"]) for r in wds.WebDataset(str(a), shardshuffle=False)]
    assert len(records) == 20 and "，" not in "".join(r.get("drawn", "") for r in records)


def _generate_before_full_width_forms(spec, shard, charset, faces):
    """The samples (text, face, image) of `generate` as it was before lines drew full-width
    forms, for the tasks other than line: their shards must keep every byte."""
    from synth.augment import degrade
    from synth.specs import SPLIT_IDS, TASK_IDS, ExprSpec, HanziSpec
    from synth.text import balanced_index, expression, short_text

    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(shard.entropy)))
    base = shard.shard * shard.samples
    perm_seed = [shard.seed, TASK_IDS[shard.task], SPLIT_IDS[shard.split]]
    for i in range(shard.samples):
        for attempt in range(shards.MAX_TRIES):
            if isinstance(spec, HanziSpec):
                text = charset[balanced_index(base + i + attempt, len(charset), perm_seed)]
            elif isinstance(spec, ExprSpec):
                text = expression(
                    rng, spec.baidu_fraction, spec.operands, spec.max_digits, spec.operators
                )
            else:
                text = short_text(rng, charset, spec.length)
            candidates = [f for f in faces if f.covers(text)]
            face = candidates[int(rng.integers(0, len(candidates)))] if candidates else None
            if face is not None:
                break
        image = degrade(shards.draw(spec, text, face, rng)[0], spec.degrade, rng)
        yield text, face.name, image


@pytest.mark.parametrize("task", ["hanzi", "expr", "short"])
def test_hanzi_expr_and_short_samples_are_those_drawn_before_full_width_forms(setup, task):
    charsets, _ = setup
    spec = task_spec(task, SMALL[task])
    faces = _faces(setup, task)
    for split in ("train", "test_seen"):
        shard = ShardSpec(task, split, 1, 30, 11)
        new = list(generate(spec, shard, charsets[task], faces))
        old = list(_generate_before_full_width_forms(spec, shard, charsets[task], faces))
        assert len(new) == len(old) == 30
        for s, (text, font, image) in zip(new, old, strict=True):
            assert (s.meta["text"], s.meta["font"]) == (text, font)
            assert "drawn" not in s.meta and np.array_equal(s.image, image)


@pytest.fixture(scope="module")
def digits_only_font(tmp_path_factory, latin_font):
    """DejaVu Sans cut down to its digits: a user's label font without ``=`` or letters."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(latin_font)
    subsetter = subset.Subsetter(subset.Options())
    subsetter.populate(unicodes=[ord(c) for c in "0123456789"])
    subsetter.subset(font)
    path = tmp_path_factory.mktemp("digits") / "digits.ttf"
    font.save(path)
    return path


def test_a_caption_its_label_font_cannot_draw_falls_back_and_never_shows_a_box(
    digits_only_font, cjk_font, monkeypatch
):
    """Captions were drawn with the training face covering most of the charset, whatever they
    held: with a user's font lacking ``=`` and Latin letters, each ``=`` and font name was a
    row of missing-glyph boxes."""
    import synth.preview as preview
    from synth.fonts import drawn_chars
    from synth.render import FontFace

    monkeypatch.setattr(preview, "LABEL_FONTS", ((str(cjk_font), 0),))
    digits = FontFace(str(digits_only_font), 0)
    captions = preview._Captions([digits], ["12", "1+2 = 3", "DejaVu Sans", "\U0001d11e"])
    assert captions.font("12", 16)[0].path == str(digits_only_font)  # the given font first
    font, text = captions.font("1+2 = 3", 16)
    assert font.path == str(cjk_font) and text == "1+2 = 3"
    font, text = captions.font("DejaVu Sans", 11)
    assert font.path == str(cjk_font) and text == "DejaVu Sans" and font.size == 11
    # A character no font draws (a musical symbol) is shown as ?, not as a box.
    assert not drawn_chars(str(cjk_font), 0, "\U0001d11e")
    assert captions.font("a\U0001d11e", 16)[1] == "a?"
    # No font at all: Pillow's own, which draws ASCII alone.
    monkeypatch.setattr(preview, "LABEL_FONTS", ())
    assert preview._Captions([], ["中"]).font("中 = 1", 16)[1] == "? = 1"


def test_texts_no_one_face_draws_are_redrawn_with_a_warning_naming_their_characters(
    latin_font, cjk_font, caplog
):
    """Two faces, each drawing half the charset: most mixed texts no one face covers are drawn
    again, which skews the split towards texts one face draws whole; the split's first shard
    says so as a warning naming the characters the fewest faces draw, the others at INFO."""
    import logging

    from synth.fonts import Face

    charset = list("AB中文")
    faces = [
        Face(str(latin_font), 0, "DejaVu Sans", "Book", frozenset("AB")),
        Face(str(cjk_font), 0, "WenQuanYi", "Regular", frozenset("中文")),
    ]
    spec = task_spec("short", {"length": [3, 4]})
    with caplog.at_level(logging.INFO, logger="synth.shards"):
        texts = [
            s.meta["text"]
            for s in generate(spec, ShardSpec("short", "train", 0, 20, 1), charset, faces)
        ]
    assert all(set(t) <= set("AB") or set(t) <= set("中文") for t in texts)
    [warning] = [r for r in caplog.records if "redrawn" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert re.match(r"short/train: \d+ texts redrawn for 20 samples, no one face covering", message)
    for c in "AB中文":
        assert f"{c!r} (1 face)" in message, message
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="synth.shards"):
        list(generate(spec, ShardSpec("short", "train", 1, 20, 1), charset, faces))
    [later] = [r for r in caplog.records if "redrawn" in r.getMessage()]
    assert later.levelno == logging.INFO
