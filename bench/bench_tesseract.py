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
import sys
import time

from models.cli import page_segmentation_mode, positive_int, positive_scale, process_count
from models.evaluate import iter_samples, sample_metrics, shard_arguments_problem
from models.tesseract import TASKS, TesseractError, TesseractSpec, read_images, tesseract_version
from synth.charset import read_charset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("shards", nargs="+", help="the test split's shards, in order")
    parser.add_argument("--charset", help="the task's charset file (for --whitelists charset)")
    parser.add_argument("--lang", help="language model (default: the task's)")
    parser.add_argument(
        "--psms", type=page_segmentation_mode, nargs="+", help="page segmentation modes"
    )
    parser.add_argument("--scales", type=positive_scale, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument(
        "--whitelists", nargs="+", choices=["charset", "none"], default=["charset", "none"]
    )
    parser.add_argument("--max-samples", type=positive_int, default=300)
    parser.add_argument(
        "--threads", type=process_count, default=1, help="tesseract processes at once"
    )
    args = parser.parse_args()
    if "charset" in args.whitelists and not args.charset:
        parser.error("--whitelists charset needs --charset FILE")
    # failures, not usage errors: exit status 1, with the file at fault
    if problem := shard_arguments_problem(args.shards):
        sys.exit(f"error: {problem}")
    try:
        charset = read_charset(args.charset) if args.charset else None
    except OSError as e:  # CharsetError names the file; a missing one is named here
        sys.exit(f"error: --charset {args.charset}: {e.strerror}")
    except ValueError as e:
        sys.exit(f"error: --charset: {e}")
    version = tesseract_version()
    if version is None:
        sys.exit("error: tesseract is not installed")

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
    try:
        samples = list(iter_samples(args.shards, limit=args.max_samples, task=args.task))
    except ValueError as e:  # a damaged shard or sample (DataError, ShardReadError), named
        sys.exit(f"error: {e}")
    if not samples:
        sys.exit(f"error: no samples in {', '.join(args.shards)}")
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
        try:
            readings = read_images(images, spec, keep_spaces=keep_spaces)
        except TesseractError as e:  # a language without data, a mode it refuses
            sys.exit(f"error: {e}")
        wall = time.perf_counter() - start
        scores = sample_metrics(samples, readings, args.task, with_topk=False)
        rows.append((scores["seq_acc"], scores["cer"], psm, scale, whitelist, len(samples) / wall))
    print("| psm | scale | whitelist | seq_acc | cer | img/s |")
    print("|---:|---:|---|---:|---:|---:|")
    for acc, cer, psm, scale, whitelist, rate in sorted(rows, key=lambda r: -r[0]):
        print(f"| {psm} | {scale:g} | {whitelist} | {acc:.4f} | {cer:.4f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
