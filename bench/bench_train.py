"""Training throughput: does the data pipeline keep each model fed?

For every experiment of a config, in one run: training images/s through the real pipeline
(shards -> `models.data.TrainStream` -> DataLoader workers -> step) and on batches already in
memory (the same step, no data loading), and their ratio. The pipeline should reach >= 90% of
the in-memory rate.

Rounds alternate the two modes and each rate is the median over rounds, so a change in the
machine's load affects both alike. Before each pipeline round the batches the workers
prefetched meanwhile are discarded, so the pipeline gets no head start, and as many steps are
then trained through the pipeline untimed, so the round starts where a training run is, not
from the drained queue (where each worker still has a pool of 8 line batches to decode before
it hands out its first). The loader is `models.data.train_loader`, the one training uses: on a
GPU its batches are pinned, and the batches held in memory are pinned too. (The first GPU run,
timed from the drained queue and without pinned batches, put the line pipeline at about half
the rate that training reached through it; BENCHMARKS.md, "Device check".)

Shards: real ones rendered by ``synth`` for the config's tasks (one font, WenQuanYi Micro Hei,
``--samples`` per shard; written once under ``--out``, bench/out by default, and reused), or
with ``--results`` the training shards and charsets a workflow run wrote
(``{results}/shards/{task}/train-*.tar``; no font needed, as on a machine without CJK fonts).

    python bench/bench_train.py --threads 2 --steps 4 --rounds 3
    python bench/bench_train.py --config configs/config.yaml --experiments line_crnn_vgg
    python bench/bench_train.py --config configs/gpu.yaml --results results --device cuda
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from arguments import experiments_problem, output_file_problem, output_folder_problem, read_config

from models.cli import non_negative_int, positive_int, process_count
from models.data import PREFETCH, DataError, TrainStream, train_loader
from models.devices import DeviceError, autocast, memory_format, resolve_device
from models.families import make_family
from models.registry import build_model, input_spec
from models.specs import TrainSpec
from models.train import clip_gradients, param_groups, training_objective
from synth.atomic import write_text_atomic
from synth.charset import read_charset
from synth.fonts import Face, covered_charset
from synth.shards import write_shard
from synth.specs import ShardSpec, task_spec

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
OUT = Path(__file__).resolve().parent / "out"


def make_shards(
    config: dict, name: str, task: str, samples: int, shards: int, out: Path = OUT
) -> tuple[list[str], list[str]]:
    """Render (once) ``shards`` training shards of ``task`` of config ``name`` with synth, under
    ``out``/shards; returns their paths and the charset. They are kept under a digest of the
    task's settings and the seed, so an edited task (another charset, say) renders new ones."""
    cfg = config["tasks"][task]
    spec = task_spec(task, cfg)
    c = spec.charset
    chars = c.build()
    chars = covered_charset(chars, [FONT], [], "drop", task)
    face = Face(FONT, 0, "WenQuanYi Micro Hei", "Regular", frozenset(chars))
    settings = json.dumps([cfg, config.get("seed", 0), FONT], sort_keys=True, default=str)
    folder = (
        Path(out) / "shards" / name / f"{task}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(shards):
        path = folder / f"train-{i:06d}-{samples}.tar"
        if not path.exists():
            shard = ShardSpec(task, "train", i, samples, int(config.get("seed", 0)))
            write_shard(path, spec, shard, chars, [face])
        paths.append(str(path))
    return paths, chars


def workflow_shards(results: Path, task: str) -> tuple[list[str], list[str]]:
    """The training shards and charset of ``task`` that a workflow run wrote under ``results``."""
    paths = sorted(str(p) for p in (results / "shards" / task).glob("train-*.tar"))
    if not paths:
        raise FileNotFoundError(f"no training shards {results}/shards/{task}/train-*.tar")
    return paths, read_charset(results / "charsets" / f"{task}.txt")


def emit(rows: Iterable[dict], json_path: str | None) -> None:
    """Print each row as a tab-separated line as it is measured; then write them all as JSON to
    ``json_path`` (if given), atomically: a run stopped half way leaves the file as it was."""
    done = []
    for row in rows:
        done.append(row)
        print("\t".join(str(v) for v in row.values()), flush=True)
    if json_path:
        write_text_atomic(json_path, json.dumps(done, indent=2) + "\n")


def train_steps(
    model,
    family,
    optimizer,
    batches,
    device,
    clip: float,
    pixels: list,
    layout=None,
    *,
    label_smoothing: float = 0.0,
    align_weight: float = 0.0,
    amp: bool = True,
) -> int:
    """The training step of `models.train` (forward, family loss with ``label_smoothing``, plus
    the alignment loss where ``align_weight`` is set, backward, clip, step), images in
    ``layout`` (default: `models.devices.memory_format`, as training uses; the model must be in
    it too). Give it the experiment's ``train`` settings: a line model trained with the
    alignment loss (the default config's) pays for it every step (with ``align_steps`` set,
    training drops it after that step: timed here as its first steps run). Returns the images
    trained on; adds the padded pixels fed to ``pixels[0]``."""
    layout = memory_format(device) if layout is None else layout
    n = 0
    for batch in batches:
        pixels[0] += batch.images.numel()
        images = batch.images.to(device, non_blocking=True, memory_format=layout)
        targets = family.encode(batch.texts)
        with autocast(device, amp):
            outputs = model(images)
        objective = training_objective(
            family, outputs, targets, batch, label_smoothing, align_weight
        )[2]
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        clip_gradients(model, clip)  # as training clips (0: not at all)
        optimizer.step()
        objective.item()  # the loop syncs on the loss every step
        n += len(batch.texts)
    return n


def bench_experiment(name, exp, config, args, device) -> dict:
    task = exp["task"]
    spec = TrainSpec.from_config(exp.get("train"))
    kwargs = dict(exp.get("model_kwargs") or {})
    workers = args.workers if args.workers is not None else spec.num_workers
    if args.results:
        paths, charset = workflow_shards(Path(args.results), task)
    else:
        paths, charset = make_shards(
            config, Path(args.config).stem, task, args.samples, args.shards, args.out
        )
    family = make_family(exp["model"], charset, kwargs)
    geometry = input_spec(exp["model"], **kwargs)
    torch.manual_seed(0)
    model = build_model(exp["model"], family.num_classes, **kwargs)
    model = model.to(device, memory_format=memory_format(device)).train()
    optimizer = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=1e-4)
    clip = spec.clip_grad

    def stream(steps: int, lanes: int) -> TrainStream:
        return TrainStream(
            paths,
            geometry,
            family,
            batch_size=spec.batch_size,
            seed=1,
            steps=steps,
            segment_steps=spec.checkpoint_every,
            lanes=lanes,
            shuffle_buffer=spec.shuffle_buffer,
            need_centers=spec.align_weight > 0,  # training refuses a line without them
        )

    # In memory: distinct batches from the same pipeline, collected first (in this process: one
    # lane, as a stream of several lanes needs as many workers).
    held = list(train_loader(stream(8, 1), 0, device))  # pinned on a GPU, as the loader's are
    memory = itertools.cycle(held)
    # Through the pipeline: one loader for the whole run (worker start-up is the warm-up).
    prefetched = PREFETCH * workers  # what the workers hold ready after a memory round
    total = args.warmup + args.rounds * (args.steps + 2 * prefetched)
    piped = iter(train_loader(stream(total, max(1, workers)), workers, device))
    step = functools.partial(
        train_steps,
        model,
        family,
        optimizer,
        device=device,
        clip=clip,
        label_smoothing=spec.label_smoothing,
        align_weight=spec.align_weight,
        amp=spec.amp,
    )
    px = [0]
    step(itertools.islice(memory, args.warmup), pixels=px)
    step(itertools.islice(piped, args.warmup), pixels=px)
    # Rounds alternate the two modes, so a change in machine load hits both alike.
    rates: dict[str, list[float]] = {"memory": [], "pipeline": []}
    px_rates: dict[str, list[float]] = {"memory": [], "pipeline": []}
    for _ in range(args.rounds):
        for mode, source in (("memory", memory), ("pipeline", piped)):
            if mode == "pipeline":
                for _ in itertools.islice(piped, prefetched):  # made while the model was idle
                    pass
                # from the drained queue to the state of a training run, untimed
                step(itertools.islice(piped, prefetched), pixels=[0])
            px = [0]
            t = time.perf_counter()
            n = step(itertools.islice(source, args.steps), pixels=px)
            dt = time.perf_counter() - t
            rates[mode].append(n / dt)
            px_rates[mode].append(px[0] / dt)
    mem_rate = statistics.median(rates["memory"])
    pipe_rate = statistics.median(rates["pipeline"])
    return {
        "experiment": name,
        "model": exp["model"],
        "batch_size": spec.batch_size,
        "workers": workers,
        "pipeline_img_s": round(pipe_rate, 1),
        "memory_img_s": round(mem_rate, 1),
        "ratio": round(pipe_rate / mem_rate, 3),
        # line batches differ in width: the pipeline's share of the pixel rate is the fair ratio
        "pixel_ratio": round(
            statistics.median(px_rates["pipeline"]) / statistics.median(px_rates["memory"]), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/config.yaml")
    parser.add_argument("--experiments", nargs="*", help="default: all of the config's")
    parser.add_argument(
        "--threads", type=process_count, default=2, help="torch threads (default 2)"
    )
    parser.add_argument(
        "--workers", type=non_negative_int, help="DataLoader workers (default: config's)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=4, help="timed steps per mode and round"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="alternating rounds (median)"
    )
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps per mode")
    parser.add_argument("--samples", type=positive_int, default=1000, help="samples per shard")
    parser.add_argument("--shards", type=positive_int, default=2, help="training shards per task")
    parser.add_argument(
        "--results", help="use the workflow's shards and charsets in this results folder"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(OUT), help="where rendered shards are kept")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Everything a run needs is checked before the first measurement: a run takes minutes.
    config, _ = read_config(args.config)  # measured as given, as before the check
    names = args.experiments or sorted(config["experiments"])
    if problem := experiments_problem(config, names, "--experiments", args.config):
        sys.exit(f"error: {problem}")
    problems = [
        args.json and output_file_problem(args.json, "--json"),
        None if args.results else output_folder_problem(args.out, "--out"),
    ]
    if args.results:
        for task in sorted({config["experiments"][name]["task"] for name in names}):
            try:
                workflow_shards(Path(args.results), task)
            except (OSError, ValueError) as e:  # each names the file or the pattern
                problems.append(f"--results {args.results}: {e}")
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        problems.append(f"--device: {e}")
    for problem in filter(None, problems):
        sys.exit(f"error: {problem}")
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"torch {torch.__version__}, {args.threads} threads, device {device}, "
        f"median of {args.rounds} alternating rounds of {args.steps} steps per mode"
    )
    header = "experiment model batch workers pipeline_img_s memory_img_s ratio pixel_ratio"
    print(header.replace(" ", "\t"))
    experiments = config["experiments"]
    rows = (bench_experiment(name, experiments[name], config, args, device) for name in names)
    try:
        emit(rows, args.json)
    except DataError as e:  # shards training would refuse too (each names the shard and sample)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
