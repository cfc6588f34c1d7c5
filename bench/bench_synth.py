"""Synthesis throughput: our renderer vs trdg, same texts, same fonts, same run, one core each.

    python bench/bench_synth.py [--n 1000] [--trdg-python /tmp/trdgvenv/bin/python]

Measures images/s of one process (one core) for 32-px Chinese lines and 64x64 single hanzi:

- ours (config): render + the degradations of configs/config.yaml for that task;
- ours (heavy): render + background noise and blur on every image (what trdg does to each image
  with background_type=0 and random blur); and the same without ``degrade.legible``'s floors,
  whose check runs on every image (noise on every image is its dearest case);
- trdg 1.8.0 ``FakeTextDataGenerator.generate`` on the same texts and font files (face 0), with a
  Gaussian-noise background, random blur and skew, in memory (no file written);
- shard overhead: the time to write the rendered samples as a shard (PNG + tar), as a share of
  the time to render them; once with our `synth.shards.ShardWriter` (what the shard rule uses)
  and once with ``webdataset.TarWriter`` writing the same bytes (a test checks the two files are
  byte-identical), to show what the writer costs.

trdg needs OpenCV and pillow<10, so it runs in its own virtualenv (``--trdg-python``), never in
the project's .venv; without it, its rows say so and the rest still runs. Every rate, ours and
trdg's, is the best of ``--repeats`` timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from models.cli import positive_int
from synth.augment import degrade, resolve
from synth.charset import build_charset
from synth.fonts import Face
from synth.render import render_hanzi, render_line
from synth.shards import MTIME, OWNER, Sample, encode_json, encode_png, write_samples
from synth.specs import task_spec
from synth.text import LineSampler

REPO = Path(__file__).resolve().parents[1]

# Font files whose face 0 is a Simplified Chinese face (trdg opens face 0 only).
FONTS = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKai-Regular.ttf",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
]
HEAVY = {"gaussian_noise": {"p": 1.0, "sigma": [8, 12]}, "blur": {"p": 1.0, "radius": [0.3, 1.0]}}

TRDG_DRIVER = r"""
import json, sys, time, random
from trdg.data_generator import FakeTextDataGenerator
job = json.load(open(sys.argv[1]))
repeats = int(sys.argv[2])
random.seed(0)
def run(items, size, width):
    t = time.perf_counter()
    for text, font in items:
        FakeTextDataGenerator.generate(
            0, text, font, None, size, "png", 2, True, 1, True, 0, 0, 0, False, 0, width, 1,
            "#282828", 0, 1.0, 0, (2, 2, 2, 2), False, 0, 0, "", 0, "#282828", "L")
    return len(items) / (time.perf_counter() - t)
def best(items, size, width):  # best of repeats, as ours
    return max(run(items, size, width) for _ in range(repeats))
run(job["line"][:50], 32, -1)  # warm-up: font loading
out = {"line": best(job["line"], 32, -1), "hanzi": best(job["hanzi"], 64, 64)}
print(json.dumps(out))
"""


def _faces():
    return [Face(p, 0, Path(p).stem, "", frozenset()) for p in FONTS]


def _best_seconds(fn, repeats: int) -> float:
    """Best of ``repeats`` wall-clock timings: the figure least disturbed by other processes."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_ours(lines, chars, faces, cfg, repeats):
    line_deg = resolve(cfg["tasks"]["line"]["degrade"])
    hanzi_deg = resolve(cfg["tasks"]["hanzi"]["degrade"])
    heavy = resolve(HEAVY)
    unfloored = resolve({**HEAVY, "legible": {"min_contrast": 0, "min_snr": 0}})
    line_items = [(t, faces[i % len(faces)]) for i, t in enumerate(lines)]
    hanzi_items = [(c, faces[i % len(faces)]) for i, c in enumerate(chars)]

    def samples(task, items, deg):
        rng = np.random.default_rng(1)
        for i, (text, face) in enumerate(items):
            if task == "line":
                img = render_line(text, face, 32, rng)
            else:
                img = render_hanzi(text, face, 64, rng)
            yield Sample(f"k_{i:06d}", degrade(img, deg, rng), {"text": text})

    def render_only(task, items, deg):
        return lambda: sum(1 for _ in samples(task, items, deg))

    render_only("line", line_items[:50], line_deg)()  # warm-up: font loading
    render_only("hanzi", hanzi_items[:50], hanzi_deg)()
    out = {}
    for task, items, deg in (("line", line_items, line_deg), ("hanzi", hanzi_items, hanzi_deg)):
        n = len(items)
        render_s = _best_seconds(render_only(task, items, deg), repeats)
        out[f"{task} config"] = n / render_s
        out[f"{task} heavy"] = n / _best_seconds(render_only(task, items, heavy), repeats)
        out[f"{task} heavy, no legibility floors"] = n / _best_seconds(
            render_only(task, items, unfloored), repeats
        )
        # Writing cost alone: the same samples, already rendered, encoded (at the task's PNG
        # level) and written.
        level = task_spec(task, cfg["tasks"][task]).png_level
        rendered = list(samples(task, items, deg))
        with tempfile.TemporaryDirectory() as tmp:
            write_s = _best_seconds(
                lambda: write_samples(Path(tmp) / "s.tar", iter(rendered), level),  # noqa: B023
                repeats,
            )
        out[f"{task} shard overhead"] = write_s / render_s
        import webdataset  # noqa: F401  here, untimed: it pulls in torch, which the rest avoids

        with tempfile.TemporaryDirectory() as tmp:
            wds_s = _best_seconds(
                lambda: _write_with_webdataset(Path(tmp) / "s.tar", rendered, level),  # noqa: B023
                repeats,
            )
        out[f"{task} shard overhead (webdataset.TarWriter)"] = wds_s / render_s
    return out


def _write_with_webdataset(path: Path, samples: list[Sample], level: int) -> None:
    """The same shard as `write_samples`, written by ``webdataset.TarWriter``."""
    import webdataset  # imported (untimed) by the caller first: it pulls in torch

    with (
        open(path, "wb") as f,
        webdataset.TarWriter(f, encoder=False, mtime=MTIME, user=OWNER, group=OWNER) as sink,
    ):
        for s in samples:
            sink.write(
                {"__key__": s.key, "png": encode_png(s.image, level), "json": encode_json(s.meta)}
            )


def bench_trdg(python, lines, chars, faces, repeats):
    if not python or not Path(python).exists():
        return None, f"trdg skipped: no trdg interpreter at {python!r} (see --trdg-python)"
    job = {
        "line": [[t, faces[i % len(faces)].path] for i, t in enumerate(lines)],
        "hanzi": [[c, faces[i % len(faces)].path] for i, c in enumerate(chars)],
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "job.json").write_text(json.dumps(job, ensure_ascii=False))
        (Path(tmp) / "driver.py").write_text(TRDG_DRIVER)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}
        try:
            proc = subprocess.run(
                [python, str(Path(tmp) / "driver.py"), str(Path(tmp) / "job.json"), str(repeats)],
                capture_output=True,
                text=True,
                env=env,
            )
        except OSError as e:  # a folder, or a file that is not a program
            return None, f"trdg skipped: {python!r} does not run ({e.strerror})"
    if proc.returncode != 0:
        return None, f"trdg skipped: it failed to run ({proc.stderr.strip().splitlines()[-1:]})"
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=positive_int, default=1000, help="images per measurement")
    ap.add_argument(
        "--repeats", type=positive_int, default=3, help="best of this many timings (each)"
    )
    ap.add_argument("--trdg-python", default="/tmp/trdgvenv/bin/python")
    args = ap.parse_args()
    missing = [f for f in FONTS if not Path(f).is_file()]
    if missing:  # the faces both renderers draw with, the same in every run
        sys.exit(
            f"error: {', '.join(missing)}: no such font; the benchmark draws with "
            "the Debian fonts the workflow's setup installs (make system-deps)"
        )
    cfg = yaml.safe_load((REPO / "configs" / "config.yaml").read_text())
    charset = build_charset("line")
    rng = np.random.default_rng(42)
    sampler = LineSampler(charset, (1, 20), 0.6, 0.0)
    lines = [sampler.sample(rng) for _ in range(args.n)]  # hanzi only: every font covers them
    hanzi = build_charset("gb2312_level1")
    chars = [hanzi[i] for i in rng.integers(0, len(hanzi), size=args.n)]
    faces = _faces()
    ours = bench_ours(lines, chars, faces, cfg, args.repeats)
    theirs, why = bench_trdg(args.trdg_python, lines, chars, faces, args.repeats)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; one process; {args.n} images each, "
        f"best of {args.repeats} (ours and trdg's); "
        f"mean line length {np.mean([len(t) for t in lines]):.1f} chars"
    )
    print(f"{'measurement':50s} {'images/s':>10s}")
    for k, v in ours.items():
        if "overhead" in k:
            print(f"{k:50s} {100 * v:9.1f}%")
        else:
            print(f"{'ours ' + k:50s} {v:10.0f}")
    for k in ("line", "hanzi"):
        floors = ours[k + " heavy"] / ours[k + " heavy, no legibility floors"]
        print(f"degrade.legible floors, {k}: {floors:.3f}x the images/s without them (heavy)")
    if theirs is None:
        print(why)
        return
    for k, v in theirs.items():
        print(f"{'trdg ' + k:50s} {v:10.0f}")
    for k in ("line", "hanzi"):
        print(
            f"ratio ours/trdg {k:16s} config {ours[k + ' config'] / theirs[k]:.1f}x, "
            f"heavy {ours[k + ' heavy'] / theirs[k]:.1f}x"
        )


if __name__ == "__main__":
    main()
