"""Tesseract's settings on one task's test shards: which serve the peer best, same images, one run.

    python bench/bench_tesseract.py TASK SHARD... [--charset results/charsets/TASK.txt]
        [--scales 1 2 3] [--psms 7] [--whitelists charset none] [--max-samples 300] [--threads 2]

The reports compare our models with Tesseract; a fair comparison gives Tesseract the settings
it reads best with. Every combination of page segmentation mode, scale factor and whitelist
(``charset``: the task's charset, ``none``: any character of the language model) reads the same
first ``--max-samples`` samples through `models.tesseract.read_images`, the path the workflow's
``tesseract`` rule takes. Prints one markdown row per setting: whole-sequence accuracy, character
error rate and images per second, best accuracy first. The workflow's default per task is
`models.tesseract.TASK_DEFAULTS` (config ``tesseract.<task>``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import time

from models.evaluate import iter_samples, sample_metrics
from models.tesseract import TASKS, TesseractSpec, read_images, tesseract_version
from synth.charset import read_charset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("shards", nargs="+", help="the test split's shards, in order")
    parser.add_argument("--charset", help="the task's charset file (for --whitelists charset)")
    parser.add_argument("--lang", help="language model (default: the task's)")
    parser.add_argument("--psms", type=int, nargs="+", help="page segmentation modes")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument(
        "--whitelists", nargs="+", choices=["charset", "none"], default=["charset", "none"]
    )
    parser.add_argument("--max-samples", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="tesseract processes at once")
    args = parser.parse_args()
    if "charset" in args.whitelists and not args.charset:
        parser.error("--whitelists charset needs --charset FILE")
    charset = read_charset(args.charset) if args.charset else None
    version = tesseract_version()
    if version is None:
        parser.error("tesseract is not installed")

    # the workflow's settings for the task (its defaults), then each combination asked for; the
    # whitelist is set per combination below, so a missing --charset is no error here
    base = TesseractSpec.from_config(
        args.task,
        "bench",
        {"max_samples": args.max_samples},
        threads=args.threads,
        charset=charset or [],
    )
    if args.lang:
        base = dataclasses.replace(base, lang=args.lang)
    samples = list(iter_samples(args.shards, limit=args.max_samples, task=args.task))
    if not samples:
        raise SystemExit(f"no samples in {', '.join(args.shards)}")
    images = [s.image for s in samples]
    keep_spaces = charset is not None and " " in charset

    print(f"{platform.processor() or platform.machine()}, tesseract {version}, {base.lang}")
    print(f"{args.task}: the first {len(samples)} samples of {len(args.shards)} shard(s)")
    rows = []
    for psm, scale, whitelist in itertools.product(
        args.psms or [base.psm], args.scales, args.whitelists
    ):
        spec = dataclasses.replace(
            base,
            psm=psm,
            scale=scale,
            whitelist="".join(charset) if whitelist == "charset" and charset else "",
        )
        start = time.perf_counter()
        readings = read_images(images, spec, keep_spaces=keep_spaces)
        wall = time.perf_counter() - start
        scores = sample_metrics(samples, readings, args.task, with_topk=False)
        rows.append((scores["seq_acc"], scores["cer"], psm, scale, whitelist, len(samples) / wall))
    print("| psm | scale | whitelist | seq_acc | cer | img/s |")
    print("|---:|---:|---|---:|---:|---:|")
    for acc, cer, psm, scale, whitelist, rate in sorted(rows, key=lambda r: -r[0]):
        print(f"| {psm} | {scale:g} | {whitelist} | {acc:.4f} | {cer:.4f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
