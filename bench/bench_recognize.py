"""Recognition throughput and accuracy on the CPU: our model in PyTorch, in onnxruntime and in
onnxruntime as int8, side by side with Tesseract (chi_sim, psm 7), on the same line images, in one
run.

    .venv/bin/python bench/bench_recognize.py                      # defaults below
    .venv/bin/python bench/bench_recognize.py --threads 2 --limit 1000 --json bench/out/rec.json
    # arithmetic lines: the expr model against Tesseract (eng, limited to the expr characters,
    # the images scaled 1.5x: the workflow's settings for expr)
    .venv/bin/python bench/bench_recognize.py --checkpoint results/models/expr_crnn/model.pt \
        --shards 'results/shards/expr/test_heldout-*.tar' --lang eng --whitelist '0123456789+-*()' \
        --scale 1.5
    # before the workflow has run: the config's model with random weights, rendered lines
    .venv/bin/python bench/bench_recognize.py --untrained line_crnn_vgg --synthetic 300 --rounds 20

Every engine reads the same decoded images (the first ``--limit`` samples of the shards, in
order) with the same number of CPU threads: PyTorch intra-op threads, onnxruntime intra-op
threads, and that many single-threaded Tesseract processes (``OMP_THREAD_LIMIT=1``, 25 images
per call, so its start-up is amortised as in ``models.tesseract``). Our time covers the whole
path of `models.recognize`: loading to grayscale (polarity check included), resizing, padding,
batching, the forward pass and decoding; each of ours gets a warm-up batch first. The int8
engine is the onnxruntime export quantized as ``models.export --int8`` quantizes it
(`models.quantize`), calibrated on the first 256 images of ``--calibration`` (default:
``train-000000.tar`` beside the measured shards; without one, or with ``--no-int8``, there is no
int8 row), never on the images measured. Tesseract's readings are normalised as in the
evaluation (NFKC, no spaces between hanzi).

Prints a Markdown table (lines/s, speed-up over Tesseract, sequence accuracy, CER) and the
machine; ``--json`` also writes the figures. The engines take turns on ``--rounds`` consecutive
parts of the images, so a change in the load of a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from arguments import experiments_problem, output_file_problem, read_config
from fontTools.ttLib import TTFont
from PIL import Image

from models.checkpoint import CheckpointError, ModelMeta, save_model
from models.cli import positive_int, positive_scale, process_count
from models.evaluate import Reading, Sample, iter_samples, sample_metrics
from models.export import ExportError, export_onnx
from models.quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_OPS, quantize_onnx
from models.recognize import Recognizer, load_recognizer
from models.registry import build_model
from models.tesseract import (
    TesseractError,
    TesseractSpec,
    available_languages,
    read_images,
    tesseract_version,
)
from synth.atomic import write_text_atomic
from synth.charset import build_charset
from synth.render import FontFace, render_line
from synth.text import LineSampler

log = logging.getLogger("bench_recognize")

DEFAULT_CHECKPOINT = "results/models/line_crnn_vgg/model.pt"
DEFAULT_SHARDS = "results/shards/line/test_heldout-*.tar"
WARMUP = 8


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


Engine = Callable[[list[Image.Image]], list[Reading]]


def our_engine(recognizer: Recognizer) -> Engine:
    def read(images: list[Image.Image]) -> list[Reading]:
        return [Reading(p.text, p.confidence, p.top_k) for p in recognizer(images)]

    return read


def tesseract_engine(lang: str, threads: int, whitelist: str = "", scale: float = 1.0) -> Engine:
    spec = TesseractSpec(
        task="line",
        split="bench",
        lang=lang,
        psm=7,
        whitelist=whitelist,
        scale=scale,
        threads=threads,
    )
    return lambda images: read_images(images, spec)


def measure(
    engines: dict[str, Engine], images: list[Image.Image], rounds: int
) -> dict[str, tuple[list[Reading], float]]:
    """Each engine's readings of all images and its total wall seconds.

    The images are split into ``rounds`` consecutive parts and the engines take turns on each
    part, so a change in the machine's load during the run hits every engine alike.
    """
    for read in engines.values():
        read(images[:WARMUP])  # lazy initialisation, first-call allocations
    out: dict[str, tuple[list[Reading], float]] = {name: ([], 0.0) for name in engines}
    step = -(-len(images) // max(1, rounds))
    for start in range(0, len(images), step):
        part = images[start : start + step]
        for name, read in engines.items():
            t0 = time.perf_counter()
            readings = read(part)
            wall = time.perf_counter() - t0
            done, total = out[name]
            out[name] = (done + readings, total + wall)
    return out


@functools.cache
def _codepoints(path: str) -> frozenset[int]:
    """The code points of the first face of a font file."""
    return frozenset(TTFont(path, fontNumber=0, lazy=True).getBestCmap())


def _covers(path: str, text: str) -> bool:
    return all(ord(ch) in _codepoints(path) for ch in text)


def synthetic_samples(cfg: dict[str, Any], n: int) -> list[Sample]:
    """``n`` clean lines of the config's line task (its charset, text sampler, height and font
    sizes), drawn in turn with the first face of each held-out font, each line redrawn until
    the font covers it. A line shows its source's forms (a full-width ``，``), and is labelled
    with their NFKC forms, as in the shards."""
    task = cfg["tasks"]["line"]
    charset = build_charset(**task["charset"])
    sampler = LineSampler(
        charset,
        task["length"],
        task["corpus_fraction"],
        task["mix_fraction"],
        texts=task.get("corpus") or (),
    )
    fonts = sorted(p for pattern in cfg["fonts"]["test_fonts"] for p in glob.glob(pattern))
    if not fonts:
        raise FileNotFoundError(f"none of fonts.test_fonts exists: {cfg['fonts']['test_fonts']}")
    rng = np.random.default_rng(cfg["seed"])
    samples = []
    for i in range(n):
        font = fonts[i % len(fonts)]
        drawn, text = sampler.draw(rng)  # as the shards draw a line: its source's forms
        while not _covers(font, drawn):
            drawn, text = sampler.draw(rng)
        image = render_line(
            drawn,
            FontFace(font),
            task["height"],
            rng,
            font_size=task["font_size"],
            min_char_width=task["min_char_width"],
            chars=len(text),
        )
        samples.append(Sample(f"{i:06d}", Image.fromarray(image), text, Path(font).stem))
    return samples


def untrained_checkpoint(cfg: dict[str, Any], experiment: str, path: Path) -> Path:
    """The config's ``experiment`` model with random weights (seeded), saved to ``path``."""
    exp = cfg["experiments"][experiment]
    kwargs = dict(exp.get("model_kwargs") or {})
    charset = build_charset(**cfg["tasks"][exp["task"]]["charset"])
    torch.manual_seed(cfg["seed"])
    model = build_model(exp["model"], len(charset), **kwargs)
    save_model(path, model, ModelMeta(exp["model"], kwargs, charset, exp["task"]))
    return path


def calibration_source(args: argparse.Namespace, shards: Sequence[str]) -> list[str]:
    """The int8 engine's calibration images: ``--calibration``, else the first training shard
    beside the measured ones (``train-000000.tar``), never the measured split itself; none
    (no int8 engine, with a warning) when neither is there or with ``--no-int8``."""
    if args.no_int8:
        return []
    if args.calibration:
        found = sorted(glob.glob(args.calibration))
        if not found:
            raise FileNotFoundError(f"--calibration {args.calibration!r} matches nothing")
        return found
    beside = [str(Path(s).parent / "train-000000.tar") for s in shards[:1]]
    if beside and Path(beside[0]).is_file():
        return beside
    log.warning("no training shard beside the measured ones and no --calibration: no int8 engine")
    return []


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every engine; returns one row per engine (Tesseract last, the speed-up base)."""
    # read for --synthetic and --untrained alone; checked as the workflow checks it, used as given
    cfg = read_config(args.config)[0] if args.synthetic or args.untrained else {}
    if args.untrained and (
        problem := experiments_problem(cfg, [args.untrained], "--untrained", args.config)
    ):
        raise ValueError(problem)
    shards: list[str] = []
    if args.synthetic:
        samples = synthetic_samples(cfg, args.synthetic)
    else:
        shards = sorted(glob.glob(args.shards))
        if not shards:
            raise FileNotFoundError(
                f"no shards match {args.shards!r}; build them first, e.g. "
                "`snakemake --cores all results/shards/line/test_heldout-000000.tar`, "
                "or use --synthetic N"
            )
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-recognize-") as tmp:
        checkpoint = args.checkpoint
        if args.untrained:
            checkpoint = untrained_checkpoint(cfg, args.untrained, Path(tmp) / "untrained.pt")
        recognizer = load_recognizer(checkpoint, device="cpu", batch_size=args.batch_size)
        if not args.synthetic:  # read as the model's task (an expr model's shards are expr's)
            samples = list(iter_samples(shards, limit=args.limit, task=recognizer.meta.task))
            if not samples:
                raise ValueError(f"no samples in {args.shards}")
        onnx_path = export_onnx(checkpoint, Path(tmp) / "model.onnx")
        onnx_rec = load_recognizer(onnx_path, threads=args.threads, batch_size=args.batch_size)
        engines = {
            "synthocr PyTorch": our_engine(recognizer),
            "synthocr onnxruntime": our_engine(onnx_rec),
        }
        calibration = calibration_source(args, shards)  # none: --synthetic
        if calibration:
            int8_path = Path(tmp) / "int8.onnx"
            ops = args.int8_ops.split(",")
            quantize_onnx(onnx_path, int8_path, calibration, limit=args.calibration_images, ops=ops)
            int8_rec = load_recognizer(int8_path, threads=args.threads, batch_size=args.batch_size)
            named = "" if ops == list(DEFAULT_OPS) else f" ({', '.join(ops)})"
            engines[f"synthocr onnxruntime int8{named}"] = our_engine(int8_rec)
    version = tesseract_version()
    if args.no_tesseract:
        log.warning("tesseract skipped (--no-tesseract)")
    elif version is None:
        log.warning("tesseract is not installed: no baseline")
    elif args.lang not in available_languages():
        log.warning("tesseract has no %r language data: no baseline", args.lang)
    else:
        allowed = f", whitelist {args.whitelist}" if args.whitelist else ""
        scaled = f", scale {args.scale:g}" if args.scale != 1 else ""
        engines[f"Tesseract {version} ({args.lang}, psm 7{allowed}{scaled})"] = tesseract_engine(
            args.lang, args.threads, args.whitelist, args.scale
        )

    results = measure(engines, [s.image for s in samples], args.rounds)
    rows = []
    for engine, (readings, wall) in results.items():
        scores = sample_metrics(samples, readings, "line", with_topk=False)
        rows.append(
            {
                "engine": engine,
                "n": len(samples),
                "wall_s": wall,
                "lines_per_s": len(samples) / wall if wall > 0 else None,
                "seq_acc": scores["seq_acc"],
                "cer": scores["cer"],
            }
        )
    base = rows[-1]["lines_per_s"] if rows[-1]["engine"].startswith("Tesseract") else None
    for row in rows:
        row["speedup"] = row["lines_per_s"] / base if base and row["lines_per_s"] else None
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| engine | lines | wall s | lines/s | x Tesseract | seq_acc | CER |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['n']} | {r['wall_s']:.2f} | {_fmt(r['lines_per_s'], '.1f')} "
            f"| {_fmt(r.get('speedup'), '.1f')} | {_fmt(r['seq_acc'], '.4f')} "
            f"| {_fmt(r['cer'], '.4f')} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--shards", default=DEFAULT_SHARDS, help=f"a glob or a file (default {DEFAULT_SHARDS})"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=300, help="samples read (default 300)"
    )
    parser.add_argument("--threads", type=process_count, default=1, help="CPU threads per engine")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="turns the engines take on parts of the images",
    )
    parser.add_argument("--lang", default="chi_sim", help="Tesseract language (default chi_sim)")
    parser.add_argument(
        "--whitelist", default="", help="characters Tesseract may output (expr: 0123456789+-*())"
    )
    parser.add_argument(
        "--scale",
        type=positive_scale,
        default=1.0,
        help="factor Tesseract's images are scaled by first, as tesseract.<task>.scale (expr: 1.5)",
    )
    parser.add_argument("--no-tesseract", action="store_true")
    parser.add_argument(
        "--calibration",
        help="the int8 engine's calibration images, a glob of shards or images (default: "
        "train-000000.tar beside the measured shards)",
    )
    parser.add_argument(
        "--calibration-images",
        type=positive_int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help=f"images calibrated on (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    parser.add_argument(
        "--int8-ops",
        default=",".join(DEFAULT_OPS),
        help="op types the int8 engine quantizes, comma-separated (default %(default)s)",
    )
    parser.add_argument("--no-int8", action="store_true", help="no int8 onnxruntime engine")
    parser.add_argument(
        "--synthetic",
        type=positive_int,
        metavar="N",
        help="instead of shards, render N lines of the config's line task with its held-out "
        "fonts (fonts.test_fonts), for a run before the workflow has made any shard",
    )
    parser.add_argument(
        "--untrained",
        metavar="EXPERIMENT",
        help="instead of a checkpoint, the config's EXPERIMENT with random weights: its speed is "
        "a trained model's, its accuracy means nothing",
    )
    parser.add_argument("--config", default="configs/config.yaml", help="for the two above")
    parser.add_argument("--json", help="also write the rows and the machine here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.json and (problem := output_file_problem(args.json, "--json")):
        print(f"error: {problem}", file=sys.stderr)  # before the run, not after it
        return 1
    try:
        rows = run(args)
    except (CheckpointError, ExportError, FileNotFoundError, ValueError, TesseractError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    machine = (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, {args.threads} thread(s) per engine; "
        f"Python {platform.python_version()}, PyTorch {torch.__version__}"
    )
    model = f"untrained {args.untrained}" if args.untrained else f"checkpoint {args.checkpoint}"
    data = f"{args.synthetic} synthetic held-out-font lines" if args.synthetic else args.shards
    print(f"{model}; {data}; {rows[0]['n']} lines, {args.rounds} rounds")
    print(f"machine: {machine}\n")
    print(table(rows))
    if args.json:
        record = {"model": model, "data": data, "machine": machine}
        write_text_atomic(
            args.json, json.dumps({**record, "rows": rows}, ensure_ascii=False, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
