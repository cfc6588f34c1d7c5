"""Helpers of the device check's ``run.sh``: configs per stage, the kill-and-resume check, the
recognition check, the full-size shards drawn on the device (``render``) from the faces
``prepare.py`` cuts down here (``fonts``), and the summary. Plain Python over the project's
modules; ``run.sh`` (and ``prepare.py``, for ``fonts``) calls each as a subcommand.

    python bench/device_check/kit.py config BASE OUT --steps hanzi_cnn=800 --set log_every=25
    python bench/device_check/kit.py unpack .devcheck/data.tar.xz DEST
    python bench/device_check/kit.py info CONFIG EXPERIMENT          # task and eval decoder
    python bench/device_check/kit.py resume --config C --results R --experiment E --device D
    python bench/device_check/kit.py recognize --model M --shard S --dest DIR --device D --json J
    python bench/device_check/kit.py summarize --work W --out OUT --device D
    python bench/device_check/kit.py fonts --results R --config C --tasks expr short --dest DIR
    python bench/device_check/kit.py render --config C --fonts DIR/faces.json --charsets R/charsets
        --tasks short --splits train val test_heldout --dest RESULTS --workers 16
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml

from synth.atomic import atomic_write, write_bytes_atomic, write_text_atomic
from synth.schema import load_config_file

# run.sh's stage table: stage, item, status (ok, fail, timeout, skipped), exit code, seconds
STAGES_FILE = "stages.tsv"
# run.sh's full-size stages: stage -> the experiment it trains as gpu.yaml has it; their targets
# are the stage config's report.targets, and the reader's adds deep_reader's training time (its
# 87% within five minutes)
FULL_RUNS = {"reader": "short_reader", "expr": "expr_crnn"}
FIVE_MINUTES = 300
PIPELINE_TARGET = 0.9  # bench_train's: the pipeline's share of the in-memory rate
LOG_ROW = re.compile(r"step (\d+)/(\d+) (.*)$")
# The run a training log names (models.train: "..., run KEY" and "resuming run KEY from ...").
RUN_NAMED = re.compile(r"\brun ([0-9a-f]{16})\b")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def cmd_config(args: argparse.Namespace) -> None:
    """A copy of ``base`` whose experiments' train blocks take ``--set`` (all, or ``--only``
    one's) and ``--steps`` (per experiment) values, checked as the workflow checks a config
    (every problem named)."""
    config = load_config_file(args.base)  # an overlay with its base: the copy stands alone
    common = dict(kv.split("=", 1) for kv in args.set)
    steps = dict(kv.split("=", 1) for kv in args.steps)
    unknown = sorted(set(steps) - set(config["experiments"]))
    if unknown:
        sys.exit(f"error: --steps names unknown experiments {unknown}")
    if args.only and args.only not in config["experiments"]:
        sys.exit(f"error: --only names an unknown experiment {args.only!r}")
    for name, exp in config["experiments"].items():
        train = exp.setdefault("train", {})
        if args.only in (None, name):
            train.update({k: _value(v) for k, v in common.items()})
        if name in steps:
            train["steps"] = int(steps[name])
    # checked here, as the workflow and models.train check it: a misspelt --set key or a bad
    # value stops the script before any device time goes to a training that refuses it (the
    # keys alone, as python -m models.configcheck --no-files: the files, and the variables a
    # path names, are the device's)
    from models.configcheck import start_check, workflow_config_problems
    from synth.schema import problems_error

    filled, problems = workflow_config_problems(config, files=False)
    if not problems:
        problems = start_check(filled, files=False).problems
    if problems:
        given = [
            *([f"--only {args.only}"] if args.only else []),
            *([f"--set {' '.join(args.set)}"] if args.set else []),
            *([f"--steps {' '.join(args.steps)}"] if args.steps else []),
        ]
        sys.exit(f"error: {' '.join([args.base, 'with', *given])}: {problems_error(problems)}")
    write_text_atomic(args.out, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def cmd_unpack(args: argparse.Namespace) -> None:
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.tarball) as tar:
        tar.extractall(dest, filter="data")


def cmd_info(args: argparse.Namespace) -> None:
    exp = load_config_file(args.config)["experiments"][args.name]
    print(exp["task"], (exp.get("eval") or {}).get("decoder", "greedy"))


def _resume_files(results: Path, experiment: str) -> list[Path]:
    return sorted((results / "models" / experiment / "resume").glob("*/last.pt"))


def _saved_step(path: Path) -> int:
    from models.checkpoint import load_checkpoint

    return int(load_checkpoint(path)["resume"]["step"])


def cmd_resume(args: argparse.Namespace) -> None:
    """Train, SIGKILL the run (its DataLoader workers too: its whole process group) once its
    first resumable checkpoint is written, rerun the same command, and check that the rerun
    resumed from the checkpoint's step and finished. Writes ``--json``; exits 1 on a failed
    check."""
    results = Path(args.results)
    cmd = [
        sys.executable, "-m", "models.train", "--config", args.config,
        "--experiment", args.experiment, "--results", str(results), "--device", args.device,
    ]  # fmt: skip
    record: dict[str, Any] = {"experiment": args.experiment, "ok": False}
    log = open(args.log, "w")  # noqa: SIM115  both runs write to it, one after the other
    t0 = time.perf_counter()
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while first.poll() is None and not _resume_files(results, args.experiment):
        time.sleep(0.1)
    if first.poll() is not None:
        record["error"] = f"the first run exited ({first.returncode}) before it was killed"
    else:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        record["killed_after_s"] = round(time.perf_counter() - t0, 1)
        record["saved_step"] = _saved_step(_resume_files(results, args.experiment)[-1])
        log.write(f"\n=== SIGKILLed after its checkpoint of step {record['saved_step']}\n\n")
        log.flush()
        second = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        record["rerun_rc"] = second.returncode
        info_path = results / "models" / args.experiment / "train.json"
        if second.returncode == 0 and info_path.is_file():
            info = json.loads(info_path.read_text())
            record.update(resumed_from=info["resumed_from"], steps=info["steps"])
            record["expected_steps"] = info["train"]["steps"]
            record["ok"] = (
                info["resumed_from"] == record["saved_step"] > 0
                and info["steps"] == info["train"]["steps"]
            )
    log.close()
    write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    sys.exit(0 if record["ok"] else 1)


def cmd_recognize(args: argparse.Namespace) -> None:
    """The user's command, ``python -m models.recognize``, on ``--n`` images written out of a
    test shard (PNG files, as a user's would be): on ``--device``, then on the CPU. Records how
    many each read, how many readings match their labels, and how many the two read alike.
    Writes ``--json``; exits 1 when a run failed or read fewer images than it was given."""
    from models.data import read_shard
    from synth.shards import record_json, record_text

    folder = Path(args.dest)
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, str] = {}
    for sample in read_shard(args.shard):
        if len(labels) >= args.n:
            break
        name = f"{len(labels):04d}.png"
        write_bytes_atomic(folder / name, sample["png"])
        labels[name] = record_text(record_json(sample["json"], name), name)
    record: dict[str, Any] = {"model": args.model, "n": len(labels), "runs": {}}
    readings: dict[str, dict[str, str | None]] = {}
    devices = list(dict.fromkeys([args.device, "cpu"]))
    for device in devices:
        cmd = [
            sys.executable, "-m", "models.recognize", args.model, str(folder),
            "--format", "json", "--device", device,
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        readings[device] = {Path(r["path"]).name: r.get("text") for r in rows}
        record["runs"][device] = {
            "rc": proc.returncode,
            "s": round(time.perf_counter() - t0, 1),
            "read": sum(r.get("text") is not None for r in rows),
            "correct": sum(readings[device].get(n) == t for n, t in labels.items()),
            "error": proc.stderr.strip()[-300:] if proc.returncode else None,
        }
    if len(devices) == 2:
        a, b = (readings[d] for d in devices)
        record["same_reading"] = sum(a.get(n) == b.get(n) for n in labels)
    record["ok"] = all(r["rc"] == 0 and r["read"] == len(labels) for r in record["runs"].values())
    write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    sys.exit(0 if record["ok"] else 1)


# ---------------------------------------------------------------- fonts and shards for the device

FACES_FILE = "faces.json"
ROLES = ("train", "test")  # the coverage tables' roles: training faces, held-out ones


def _checked_config(path: str | os.PathLike) -> dict[str, Any]:
    """A config file as the workflow reads it: its base laid under it, the schema's defaults
    filled in (so a task's settings, and the shards drawn with them, are the workflow's)."""
    from synth.schema import check_schema, problems_error

    checked = check_schema(load_config_file(path))
    if checked.problems:
        raise problems_error(checked.problems)
    return checked.config


# Kept in every subset beside the face's covered characters: FreeType's auto-hinter, which draws
# the faces without hinting of their own, sets its zones from the Latin letters and digits a face
# has (ASCII), and draws the others differently without them.
AUTOHINT_CHARS = frozenset(range(0x20, 0x7F))


def _subset(face: Any, out: Path) -> None:
    """``face`` cut down to the characters it covers, every table that draws them kept: hinting,
    embedded bitmaps (the AR PL faces' strikes, which FreeType draws at small sizes) and layout
    features, so FreeType draws each covered character as the whole file does."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # tables it drops, odd timestamps
    font = TTFont(
        face.path, fontNumber=face.index, lazy=False, recalcBBoxes=False, recalcTimestamp=False
    )
    options = subset.Options()
    options.drop_tables = ["DSIG"]  # a signature of the whole file; nothing else goes
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.legacy_kern = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(set(map(ord, face.covered)) | AUTOHINT_CHARS))
    subsetter.subset(font)
    with atomic_write(out, "wb") as f:
        font.save(f)


def cmd_fonts(args: argparse.Namespace) -> None:
    """Here, before the device: the faces a workflow's shards of ``--tasks`` are drawn with (its
    coverage tables and charsets in ``--results``, read as ``workflow/scripts/shard.py`` reads
    them), each cut down to the characters it covers of its task's charset, into ``--dest``,
    with ``faces.json`` (task -> role -> faces: file, family, style, covered characters).
    ``render`` draws the same images from them on a machine without the fonts."""
    from synth.charset import read_charset
    from synth.fonts import read_coverage
    from synth.specs import split_config, task_spec

    results, dest = Path(args.results), Path(args.dest)
    config = _checked_config(args.config)
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for task in args.tasks:
        charset = read_charset(results / "charsets" / f"{task}.txt")
        spec = task_spec(task, split_config(task, config["tasks"][task], "train"))
        (dest / task).mkdir(parents=True, exist_ok=True)
        table[task] = {}
        for role in ROLES:
            coverage = results / "fonts" / task / f"{role}.tsv"
            faces = read_coverage(coverage, task, charset, role, spec.exclude_families)
            rows = table[task][role] = []
            for i, face in enumerate(faces):
                # its own folder, under the file's name: the shards' font_file, which the
                # per-file figures group by, is the workflow's
                name = f"{task}/{role}-{i:03d}/{Path(face.path).name}"
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                _subset(face, dest / name)
                covered = "".join(c for c in charset if c in face.covered)
                source = f"{face.path}#{face.index}"
                rows.append(
                    {
                        "file": name,
                        "family": face.family,
                        "style": face.style,
                        "covered": covered,
                        "source": source,
                    }
                )
    write_text_atomic(dest / FACES_FILE, json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    files = sum(len(rows) for roles in table.values() for rows in roles.values())
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"{dest}: {files} faces, {size / 2**20:.2f} MiB")


def read_faces(path: str | os.PathLike) -> dict[str, dict[str, list[Any]]]:
    """``faces.json`` as `synth.fonts.Face` lists, their files beside it."""
    from synth.fonts import Face

    path = Path(path)
    table = json.loads(path.read_text())
    return {
        task: {
            role: [
                Face(
                    str(path.parent / r["file"]),
                    0,
                    r["family"],
                    r["style"],
                    frozenset(r["covered"]),
                )
                for r in rows
            ]
            for role, rows in roles.items()
        }
        for task, roles in table.items()
    }


def _render_shard(job: tuple) -> tuple[str, int]:
    from synth.shards import write_shard
    from synth.specs import ShardSpec, task_spec

    path, task, split, number, samples, seed, task_cfg, charset, faces = job
    shard = ShardSpec(task, split, number, samples, seed)
    return path, write_shard(path, task_spec(task, task_cfg), shard, charset, faces)


def cmd_render(args: argparse.Namespace) -> None:
    """On the device: the shards of ``--splits`` of ``--tasks`` that the workflow renders for
    ``--config`` (every shard of each split, its sample count and seed, the task's settings with
    the split's merged in), drawn with ``fonts``'s faces, ``--workers`` at a time, into
    ``--dest``/shards/{task}/ (and the charsets into ``--dest``/charsets/). The images and labels
    are those Snakemake's shard jobs write, byte for byte; each sample's ``face`` is 0 (a face
    of a collection is a file of its own here). Prints images per second."""
    import multiprocessing

    from synth.charset import read_charset
    from synth.specs import canonical, font_role, split_config

    config = _checked_config(args.config)
    faces = read_faces(args.fonts)
    dest = Path(args.dest)
    jobs = []
    for task in args.tasks:
        source = Path(args.charsets) / f"{task}.txt"
        charset = read_charset(source)
        write_bytes_atomic(dest / "charsets" / source.name, source.read_bytes())
        (dest / "shards" / task).mkdir(parents=True, exist_ok=True)
        cfg = config["tasks"][task]
        for split in args.splits:
            task_cfg = canonical(split_config(task, cfg, split))
            shards, samples = cfg["splits"][split]["shards"], cfg["splits"][split]["samples"]
            role_faces = faces[task][font_role(split)]
            for number in range(shards):
                path = str(dest / "shards" / task / f"{split}-{number:06d}.tar")
                jobs.append(
                    (
                        path,
                        task,
                        split,
                        number,
                        samples,
                        config["seed"],
                        task_cfg,
                        charset,
                        role_faces,
                    )
                )
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(max(1, min(args.workers, len(jobs)))) as pool:
        done = pool.map(_render_shard, jobs, chunksize=1)
    seconds = time.perf_counter() - t0
    images = sum(n for _, n in done)
    rate = images / seconds
    print(f"rendered {len(done)} shards, {images} images in {seconds:.1f} s ({rate:.0f}/s)")


# ---------------------------------------------------------------- summary


def _stages(work: Path) -> list[dict[str, Any]]:
    path = work / STAGES_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        stage, item, status, rc, seconds = line.split("\t")
        rows.append({"stage": stage, "item": item, "status": status, "rc": rc, "s": float(seconds)})
    return rows


def _log_rows(log: Path) -> list[dict[str, Any]]:
    """History rows from a training log (``step N/M k=v ...`` lines), for a run stopped by its
    time limit before its first checkpoint."""
    rows = []
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            m = LOG_ROW.search(line)
            if m and "=" in m.group(3):
                row = {"step": int(m.group(1))}
                for kv in m.group(3).split():
                    k, _, v = kv.partition("=")
                    row[k] = _value(v)
                rows.append(row)
    return rows


def _history(folder: Path, log: Path) -> tuple[list[dict[str, Any]], str]:
    """The training's history rows and where they were read: its history.csv, written when
    training ends; for a run stopped by its time limit, the copy written with its last
    checkpoint (``resume/<run>/history.csv``, the run its log names: a reused folder can hold
    an older run's), else its log."""
    runs = RUN_NAMED.findall(log.read_text(errors="replace")) if log.is_file() else []
    if runs:
        kept = [folder / "resume" / runs[-1] / "history.csv"]
    else:  # a log that names no run: the newest kept history
        kept = sorted(folder.glob("resume/*/history.csv"), key=lambda p: p.stat().st_mtime)[-1:]
    for path in [folder / "history.csv", *kept]:
        if path.is_file():
            with open(path, newline="") as f:
                rows = [{k: _value(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
            return rows, str(path.relative_to(folder))
    return _log_rows(log), "log"


def _training(folder: Path, log: Path) -> dict[str, Any]:
    """Steps, images/s, losses (first and last logged window), finiteness, validation."""
    rows, source = _history(folder, log)
    info_path = folder / "train.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    losses = [float(r["train_loss"]) for r in rows if "train_loss" in r]
    rates = [float(r["images_per_s"]) for r in rows if "images_per_s" in r]
    vals = [r for r in rows if "val_acc" in r]
    out: dict[str, Any] = {
        "source": "train.json" if info else source,
        "steps": info.get("steps", rows[-1]["step"] if rows else 0),
        "planned_steps": info.get("train", {}).get("steps"),
        "finished": bool(info),
        "device": info.get("device"),
        "images_per_s": round(info["images_per_s"], 1)
        if info
        else (round(statistics.median(rates), 1) if rates else None),
        "wall_s": round(info["wall_s"], 1) if info else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "val_acc": vals[-1]["val_acc"] if vals else None,
    }
    out["loss_fell"] = bool(len(losses) >= 2 and out["finite"] and losses[-1] < losses[0])
    out["ok"] = out["finite"] and out["loss_fell"]
    return out


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _bench(work: Path) -> list[dict[str, Any]]:
    rows = _json(work / "bench.json")
    if rows is None:  # stopped before the end: the rows it printed
        rows = []
        log = work / "logs" / "bench-all.log"
        keys = [
            "experiment",
            "model",
            "batch_size",
            "workers",
            "pipeline_img_s",
            "memory_img_s",
            "ratio",
            "pixel_ratio",
        ]
        for line in log.read_text().splitlines() if log.is_file() else []:
            parts = line.split("\t")
            if len(parts) == len(keys) and not line.startswith(("#", "experiment")):
                rows.append({k: _value(v) for k, v in zip(keys, parts, strict=True)})
    for row in rows:
        row["target_met"] = max(row["ratio"], row["pixel_ratio"]) >= PIPELINE_TARGET
    return rows


def _parity(log: Path) -> float | None:
    m = (
        re.search(r"max abs logit difference ([0-9.eE+-]+)", log.read_text())
        if log.is_file()
        else None
    )
    return float(m.group(1)) if m else None


def summarize(work: Path, device: str) -> dict[str, Any]:
    stages = _stages(work)
    status = {(s["stage"], s["item"]): s for s in stages}
    logs = work / "logs"
    summary: dict[str, Any] = {"device": device, "stages": stages}
    env = _json(work / "env.json")
    if env:
        summary["env"] = env
    train = {}
    for (stage, item), s in status.items():
        if stage == "train":
            row = _training(work / "train" / "models" / item, logs / f"train-{item}.log")
            train[item] = {"status": s["status"], "stage_s": s["s"], **row}
    summary["train"] = train
    summary["resume"] = _json(work / "resume.json")
    ddp = {}
    for (stage, item), s in status.items():
        if stage == "ddp":
            row = _training(work / item / "models" / "expr_crnn", logs / f"ddp-{item}.log")
            info = _json(work / item / "models" / "expr_crnn" / "train.json") or {}
            log = logs / f"ddp-{item}.log"
            text = log.read_text(errors="replace") if log.is_file() else ""
            backend = re.search(r"joined the (\w+) process group", text)
            ddp[item] = {
                "status": s["status"],
                "world_size": info.get("world_size"),
                "backend": backend.group(1) if backend else None,
                "steps": row["steps"],
                "images_per_s": row["images_per_s"],
                "error": None if s["status"] == "ok" else _error_line(text),
            }
    summary["ddp"] = ddp
    summary["bench"] = _bench(work)
    evaluation = {}
    for (stage, item), s in status.items():
        if stage in ("evaluate", "export"):
            entry = evaluation.setdefault(item, {})
            if stage == "evaluate":
                metrics = _json(work / "eval" / item / "metrics.json") or {}
                keep = ("n", "seq_acc", "cer", "top1", "top5", "value_acc")
                entry["evaluate"] = s["status"]
                entry["metrics"] = {k: metrics[k] for k in keep if metrics.get(k) is not None}
            else:
                entry["export"] = s["status"]
                entry["onnx_max_abs_diff"] = _parity(logs / f"export-{item}.log")
    summary["evaluate"] = evaluation
    summary["recognize"] = {
        item: {"status": s["status"], **(_json(work / "recognize" / f"{item}.json") or {})}
        for (stage, item), s in status.items()
        if stage == "recognize"
    }
    for stage, experiment in FULL_RUNS.items():
        summary[stage] = _full_run(work, status, stage, experiment)
    return summary


def _targets(config: Path, experiment: str) -> dict[str, float]:
    """The config's ``report.targets`` of ``experiment`` on test_heldout: metric -> value."""
    if not config.is_file():
        return {}
    report = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("report") or {}
    return {
        t["metric"]: t["value"]
        for t in report.get("targets") or []
        if t.get("experiment") == experiment and t.get("split", "test_heldout") == "test_heldout"
    }


def _full_run(
    work: Path, status: dict[tuple[str, str], dict[str, Any]], stage: str, experiment: str
) -> dict[str, Any]:
    """A full-size stage (``run.sh``'s ``full``): its training, and its held-out figures
    against the stage config's targets."""
    if (stage, "train") not in status:
        return {}
    folder = work / stage / "models" / experiment
    row = _training(folder, work / "logs" / f"{stage}-train.log")
    out = {"experiment": experiment, "status": status[stage, "train"]["status"], **row}
    metrics = _json(work / stage / "eval" / "metrics.json")
    if metrics:
        targets = _targets(work / f"{stage}.yaml", experiment)
        out["checkpoint"] = "model.pt" if row["finished"] else "resume last.pt"
        out["checkpoint_step"] = metrics.get("train_steps")
        out["n"] = metrics.get("n")
        out["heldout"] = {
            k: metrics[k] for k in ("seq_acc", "value_acc", "cer") if metrics.get(k) is not None
        }
        out["targets"] = targets
        out["target_met"] = bool(targets) and all(
            (metrics.get(k) or 0) >= v for k, v in targets.items()
        )
        if experiment == "short_reader":
            # gpu.yaml's figure is deep_reader's: 87% within 5 minutes of training
            out["within_5_min"] = row["finished"] and row["wall_s"] <= FIVE_MINUTES
    return out


def _error_line(text: str) -> str | None:
    lines = [x for x in text.splitlines() if re.search(r"Error|error|failed", x)]
    return lines[-1][-300:] if lines else None


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(s: dict[str, Any]) -> str:
    out = [f"# Device check: {s['device']}", ""]
    env = s.get("env") or {}
    if env:
        out += [", ".join(f"{k} {v}" for k, v in env.items()), ""]
    out += ["| stage | item | status | s |", "|---|---|---|---:|"]
    out += [f"| {r['stage']} | {r['item']} | {r['status']} | {r['s']:.0f} |" for r in s["stages"]]
    if s["train"]:
        amp = ", bf16 autocast" if s["device"] == "cuda" else ""
        out += ["", f"Training (models.train on {s['device']}{amp}):", ""]
        out += [
            "| experiment | steps | img/s | loss first -> last | finite, fell | val_acc | from |"
        ]
        out += ["|---|---:|---:|---|---|---:|---|"]
        for name, r in s["train"].items():
            out.append(
                f"| {name} | {r['steps']}/{_fmt(r['planned_steps'])} | {_fmt(r['images_per_s'])} "
                f"| {_fmt(r['first_loss'])} -> {_fmt(r['last_loss'])} "
                f"| {r['finite']}, {r['loss_fell']} | {_fmt(r['val_acc'])} | {r['source']} |"
            )
    if s.get("resume"):
        r = s["resume"]
        out += [
            "",
            f"Kill and resume ({r['experiment']}): killed after checkpoint of step "
            f"{_fmt(r.get('saved_step'))}, rerun resumed from {_fmt(r.get('resumed_from'))}, "
            f"{_fmt(r.get('steps'))}/{_fmt(r.get('expected_steps'))} steps: "
            f"{'ok' if r['ok'] else 'FAILED ' + str(r.get('error', ''))}",
        ]
    for name, r in s["ddp"].items():
        out.append(
            f"torchrun {name}: {r['status']}, world size {_fmt(r['world_size'])}, backend "
            f"{_fmt(r['backend'])}, {r['steps']} steps, {_fmt(r['images_per_s'])} img/s"
            + (f"; {r['error']}" if r["error"] else "")
        )
    if s["bench"]:
        out += ["", "bench_train (pipeline vs in-memory, target >= 0.9):", ""]
        out += [
            "| experiment | workers | pipeline img/s | memory img/s | ratio | pixel ratio | met |"
        ]
        out += ["|---|---:|---:|---:|---:|---:|---|"]
        for r in s["bench"]:
            out.append(
                f"| {r['experiment']} | {r['workers']} | {r['pipeline_img_s']} "
                f"| {r['memory_img_s']} | {r['ratio']} | {r['pixel_ratio']} | {r['target_met']} |"
            )
    if s["evaluate"]:
        out += ["", "Evaluation on test_heldout, ONNX export (onnxruntime vs PyTorch):", ""]
        for name, r in s["evaluate"].items():
            metrics = " ".join(f"{k}={_fmt(v)}" for k, v in r.get("metrics", {}).items())
            out.append(
                f"- {name}: evaluate {r.get('evaluate', '-')} {metrics}; export "
                f"{r.get('export', '-')}, max |diff| {_fmt(r.get('onnx_max_abs_diff'))}"
            )
    if s.get("recognize"):
        title = "models.recognize on PNG files from test_heldout (the device, then the CPU):"
        out += ["", title, ""]
        for name, r in s["recognize"].items():
            runs = "; ".join(
                f"{d}: rc {v['rc']}, read {v['read']}/{r['n']}, {v['correct']} correct, {v['s']} s"
                for d, v in r.get("runs", {}).items()
            )
            out.append(
                f"- {name}: {r['status']}; {runs or '-'}; same reading on both: "
                f"{_fmt(r.get('same_reading'))}"
            )
    for stage in FULL_RUNS:
        r = s.get(stage) or {}
        if not r:
            continue
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in (r.get("heldout") or {}).items())
        targets = ", ".join(f"{k} >= {v}" for k, v in (r.get("targets") or {}).items())
        met = bool(r.get("target_met"))
        if r["experiment"] == "short_reader":
            targets += f" within {FIVE_MINUTES} s"
            met = met and bool(r.get("within_5_min"))
        out += [
            "",
            f"{stage.capitalize()} (gpu.yaml's {r['experiment']} in full, on the shards the render "
            f"stage drew): {r['status']}, {r['steps']}/{_fmt(r['planned_steps'])} steps in "
            f"{_fmt(r['wall_s'])} s, {_fmt(r['images_per_s'])} img/s; held out: {figures or '-'} "
            f"on {_fmt(r.get('n'))} ({_fmt(r.get('checkpoint'))}, step "
            f"{_fmt(r.get('checkpoint_step'))}); target {targets or '-'}: "
            f"{'met' if met else 'not met'}",
        ]
    return "\n".join(out) + "\n"


def cmd_summarize(args: argparse.Namespace) -> None:
    summary = summarize(Path(args.work), args.device)
    out = Path(args.out)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    write_text_atomic(out / "summary.md", text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config")
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--set", nargs="*", default=[], help="KEY=VALUE for every train block")
    p.add_argument("--steps", nargs="*", default=[], help="EXPERIMENT=STEPS")
    p.add_argument("--only", help="--set this experiment's train block alone")
    p.set_defaults(run=cmd_config)
    p = sub.add_parser("unpack")
    p.add_argument("tarball")
    p.add_argument("dest")
    p.set_defaults(run=cmd_unpack)
    p = sub.add_parser("info")
    p.add_argument("config")
    p.add_argument("name")
    p.set_defaults(run=cmd_info)
    p = sub.add_parser("resume")
    for name in ("--config", "--results", "--experiment", "--device", "--log", "--json"):
        p.add_argument(name, required=True)
    p.set_defaults(run=cmd_resume)
    p = sub.add_parser("recognize")
    for name in ("--model", "--shard", "--dest", "--device", "--json"):
        p.add_argument(name, required=True)
    p.add_argument("--n", type=int, default=64, help="images taken from the shard")
    p.set_defaults(run=cmd_recognize)
    p = sub.add_parser("fonts")
    for name in ("--results", "--config", "--dest"):
        p.add_argument(name, required=True)
    p.add_argument("--tasks", nargs="+", required=True)
    p.set_defaults(run=cmd_fonts)
    p = sub.add_parser("render")
    for name in ("--config", "--fonts", "--charsets", "--dest"):
        p.add_argument(name, required=True)
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "val", "test_heldout"])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.set_defaults(run=cmd_render)
    p = sub.add_parser("summarize")
    for name in ("--work", "--out", "--device"):
        p.add_argument(name, required=True)
    p.set_defaults(run=cmd_summarize)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
