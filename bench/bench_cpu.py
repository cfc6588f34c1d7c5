"""CPU training: which memory layout, and one job with every core or one job per core?

For every experiment of a config, in one run, training images per second in three layouts:
one process with ``--cores`` torch threads on contiguous (NCHW) tensors, as `models.train` ran
before; the same with the model and images in channels_last (NHWC), as it runs on the CPU now
(`models.devices.memory_format`); and ``--cores`` processes with one thread each, channels_last,
training at the same time (their rates added up), as a CPU-only Snakemake run schedules its
training jobs with ``experiments.<name>.train.threads: 1``. Ratios: channels_last against
contiguous, side by side against one job, and the new layout against the old one.

Each process trains the experiment's model (the training step of `models.train`: forward,
family loss, backward, clip, AdamW step) on batches already in memory, read from real shards
rendered by ``synth`` (those of ``bench_train.py``), for ``--seconds`` after a warm-up; all
processes start their timed window together. Each round runs the three layouts in turn and each
rate is the median over rounds, so a change in the machine's load hits both alike.

    python bench/bench_cpu.py --cores 2 --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from arguments import (
    experiments_problem,
    output_file_problem,
    output_folder_problem,
    read_config,
)
from bench_train import OUT, emit, make_shards, train_steps

from models.cli import positive_int, positive_seconds
from models.data import TrainStream, train_loader
from models.families import make_family
from models.registry import build_model, input_spec
from models.specs import TrainSpec
from models.train import param_groups
from synth.schema import load_config_file


def worker(args: argparse.Namespace) -> None:
    """One training process: set up, say ``ready``, wait for ``go``, train ``--seconds``,
    print ``{"images": n, "seconds": s}``."""
    torch.set_num_threads(args.threads)
    config = load_config_file(args.config)
    exp = config["experiments"][args.worker]
    spec = TrainSpec.from_config(exp.get("train"))
    kwargs = dict(exp.get("model_kwargs") or {})
    paths, charset = make_shards(
        config, Path(args.config).stem, exp["task"], args.samples, 2, args.out
    )
    family = make_family(exp["model"], charset, kwargs)
    stream = TrainStream(
        paths,
        input_spec(exp["model"], **kwargs),
        family,
        batch_size=spec.batch_size,
        seed=args.seed,
        steps=8,
        segment_steps=spec.checkpoint_every,
    )
    held = list(train_loader(stream, 0))
    torch.manual_seed(args.seed)
    fmt = getattr(torch, args.memory_format)
    batches = itertools.cycle(
        [b._replace(images=b.images.contiguous(memory_format=fmt)) for b in held]
    )
    model = build_model(exp["model"], family.num_classes, **kwargs).to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=1e-4)
    device = torch.device("cpu")
    px = [0]
    # the experiment's own step (its clipping, label smoothing and alignment loss), as trained
    settings = dict(
        label_smoothing=spec.label_smoothing, align_weight=spec.align_weight, amp=spec.amp
    )
    clip = spec.clip_grad
    train_steps(
        model, family, optimizer, itertools.islice(batches, 2), device, clip, px, fmt, **settings
    )
    print("ready", flush=True)
    sys.stdin.readline()
    images, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        images += train_steps(
            model, family, optimizer, [next(batches)], device, clip, px, fmt, **settings
        )
    print(json.dumps({"images": images, "seconds": time.perf_counter() - t0}), flush=True)


LAYOUTS = {
    "one_job_contiguous": ("contiguous_format", False),
    "one_job_channels_last": ("channels_last", False),
    "side_by_side_channels_last": ("channels_last", True),
}


def run_together(
    name: str, threads: list[int], memory_format: str, args: argparse.Namespace
) -> list[float]:
    """Start one worker per entry of ``threads``, time them together; their images/s."""
    cmd = [sys.executable, __file__, "--config", args.config, "--samples", str(args.samples)]
    cmd += ["--out", args.out]
    cmd += ["--seconds", str(args.seconds), "--worker", name, "--memory-format", memory_format]
    procs = [
        subprocess.Popen(
            [*cmd, "--threads", str(t), "--seed", str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, t in enumerate(threads)
    ]
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"bench worker for {name} failed to start (said {line!r})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"bench worker for {name} exited {p.returncode}")
        r = json.loads(out.strip().splitlines()[-1])
        rates.append(r["images"] / r["seconds"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/config.yaml")
    parser.add_argument("--experiments", nargs="*", help="default: all of the config's")
    parser.add_argument("--cores", type=positive_int, default=2, help="cores to share (default 2)")
    parser.add_argument(
        "--seconds", type=positive_seconds, default=20.0, help="timed window per layout"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="alternating rounds (median)"
    )
    parser.add_argument("--samples", type=positive_int, default=400, help="samples per bench shard")
    parser.add_argument("--out", default=str(OUT), help="where rendered shards are kept")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory-format", default="contiguous_format", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        worker(args)
        return
    # checked before the first measurement (a run takes minutes); measured as given
    config, _ = read_config(args.config)
    names = args.experiments or sorted(config["experiments"])
    problems = [
        experiments_problem(config, names, "--experiments", args.config),
        output_folder_problem(args.out, "--out"),
        args.json and output_file_problem(args.json, "--json"),
    ]
    for problem in filter(None, problems):
        sys.exit(f"error: {problem}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"torch {torch.__version__}; median of {args.rounds} alternating rounds of "
        f"{args.seconds:g} s; images/s on batches in memory"
    )
    print("experiment\t" + "\t".join(LAYOUTS) + "\tchannels_last_gain\tside_by_side_gain\toverall")
    emit((measure(name, config, args) for name in names), args.json)


def measure(name: str, config: dict, args: argparse.Namespace) -> dict:
    """One experiment's row: the median rate of each layout, and their ratios."""
    # render the bench shards once, before the workers read them
    task = config["experiments"][name]["task"]
    make_shards(config, Path(args.config).stem, task, args.samples, 2, args.out)
    rates: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for _ in range(args.rounds):
        for layout, (fmt, side_by_side) in LAYOUTS.items():
            threads = [1] * args.cores if side_by_side else [args.cores]
            rates[layout].append(sum(run_together(name, threads, fmt, args)))
    row: dict[str, object] = {"experiment": name}
    row.update({k: round(statistics.median(v), 1) for k, v in rates.items()})
    old, cl, sbs = (float(row[k]) for k in LAYOUTS)
    row.update(
        channels_last_gain=round(cl / old, 2),
        side_by_side_gain=round(sbs / cl, 2),
        overall=round(sbs / old, 2),
    )
    return row


if __name__ == "__main__":
    main()
