"""A model's readings as print gets bolder or thinner, beside Tesseract's: one test split drawn
again at several stroke weights, the same texts, faces and degradations, in one run.

    python bench/bench_weight.py CHECKPOINT|MODEL.onnx --config configs/config.yaml
        [--split test_heldout] [--amounts -0.5 0 0.5 1] [--samples N] [--decoder grammar]
        [--tesseract] [--threads 1] [--out bench/out/weight]

Run in the workflow's folder once its charsets and coverage tables exist (any run that rendered the
task's shards made them): the split's first shard is rendered again as the shard job renders it
(`synth.shards.write_shard`, the config's seed and the split's settings), with every render's
strokes moved by each amount of a pixel before its degradations (`synth.augment.stroke_weight`:
above 0 bolder, below 0 thinner; ``degrade.weight`` trains on such images). At amount 0, with the
split's sample count, that is the workflow's own shard, byte for byte. Each shard is read by
`models.evaluate` (``--decoder grammar`` reads with the config's ``tasks.<task>`` grammar, as the
workflow evaluates expr) and, with ``--tesseract``, by `models.tesseract` with the task's default
settings (those of ``tesseract.<task>``, which the shipped configs keep), every sample. Prints a
markdown row per amount; the shards, metrics and predictions stay under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from arguments import output_folder_problem, read_config

from models.checkpoint import CheckpointError
from models.cli import positive_int, process_count
from models.evaluate import main as evaluate_main
from models.export import ExportError, read_model_meta
from models.tesseract import main as tesseract_main
from synth.atomic import write_text_atomic
from synth.charset import read_charset
from synth.fonts import read_coverage
from synth.shards import ShardSpec, write_shard
from synth.specs import font_role, split_config, task_spec


def _amount(text: str) -> float:
    value = float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a stroke weight is between -1 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", help="model.pt of the split's task, or its .onnx export (float or int8)"
    )
    parser.add_argument("--config", required=True, help="the workflow config that drew the split")
    parser.add_argument(
        "--split", default="test_heldout", choices=["train", "val", "test_seen", "test_heldout"]
    )
    parser.add_argument("--amounts", type=_amount, nargs="+", default=[-0.5, 0.0, 0.5, 1.0])
    parser.add_argument(
        "--samples", type=positive_int, help="samples per shard (default: the split's)"
    )
    parser.add_argument("--decoder", choices=["greedy", "beam", "grammar"])
    parser.add_argument("--tesseract", action="store_true", help="Tesseract reads them too")
    parser.add_argument(
        "--threads", type=process_count, default=1, help="CPU threads of each reader"
    )
    parser.add_argument("--out", default="bench/out/weight", help="folder for shards and metrics")
    args = parser.parse_args(argv)

    _, config = read_config(args.config)  # the schema's defaults filled in, as the workflow's
    try:
        meta = read_model_meta(args.checkpoint)
    except (CheckpointError, ExportError) as e:
        parser.error(str(e))
    task = meta.task
    settings = split_config(task, config["tasks"][task], args.split)
    spec = task_spec(task, settings)
    samples = args.samples or config["tasks"][task]["splits"][args.split]["samples"]
    role = font_role(args.split)
    charset_file, coverage = f"results/charsets/{task}.txt", f"results/fonts/{task}/{role}.tsv"
    for needed in (charset_file, coverage):
        if not Path(needed).is_file():
            parser.error(
                f"{needed} not found: run this in a results folder that has {task}'s shards"
            )
    if problem := output_folder_problem(args.out, "--out"):
        parser.exit(1, f"error: {problem}\n")
    try:
        charset = read_charset(charset_file)
        faces = read_coverage(coverage, task, charset, role, spec.exclude_families)
    except ValueError as e:  # a damaged charset or coverage table, named
        parser.exit(1, f"error: {e}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    readers = {"model": evaluate_main}
    if args.tesseract:
        readers["tesseract"] = tesseract_main
    rows = []
    for amount in args.amounts:
        shard = out / f"{task}-{args.split}-w{amount:+.2f}.tar"
        write_shard(
            shard,
            spec,
            ShardSpec(task, args.split, 0, samples, config["seed"]),
            charset,
            faces,
            amount,
        )
        row = {"amount": amount, "n": samples}
        for name, read in readers.items():
            where = out / f"{task}-{args.split}-w{amount:+.2f}" / name
            extra = ["--checkpoint", args.checkpoint] if name == "tesseract" else [args.checkpoint]
            if name == "model" and args.decoder:
                extra += ["--decoder", args.decoder]
                if args.decoder == "grammar":
                    extra += ["--task-config", args.config]
            code = read([*extra, str(shard), "--out", str(where), "--threads", str(args.threads)])
            if code:
                return code
            record = json.loads((where / "metrics.json").read_text(encoding="utf-8"))
            row[name] = {k: record.get(k) for k in ("seq_acc", "cer", "value_acc", "top1")}
        rows.append(row)

    names = list(readers)
    print(f"\n{args.checkpoint} ({meta.model}, {task}), {args.split}: {samples} samples per amount")
    print("| stroke weight | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for row in rows:
        cells = []
        for name in names:
            m = row[name]
            acc = m["top1"] if m["top1"] is not None else m["seq_acc"]
            cells.append(
                f"{100 * acc:.2f}%"
                + (f" (CER {100 * m['cer']:.2f}%)" if m["cer"] is not None else "")
            )
        print(f"| {row['amount']:+.2f} | " + " | ".join(cells) + " |")
    python = sys.version.split()[0]
    print(f"\nMachine: {platform.machine()}, Python {python}, {args.threads} thread(s) per reader")
    write_text_atomic(out / "weight.json", json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
