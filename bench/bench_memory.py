"""Each job's measured peak memory beside the memory it declares (``resources: mem_mb``).

    python bench/bench_memory.py [TARGET ...] [--directory DIR] [--configfile CONFIG ...]

Run it after the workflow, with the arguments that ran it. Every rule has a ``benchmark:``
record (``logs/{rule}/....benchmark.tsv``: Snakemake samples the job's process tree, every half
second for its first 15 s and every 30 s after that). Their peaks are set beside what the same
jobs declare, as a dry run of the targets (default ``all``) lists them: a cluster executor asks
for ``mem_mb`` and may kill a job that goes over it, so every job should fit with room to spare.

Prints one markdown row per rule, over the jobs that have a record: how many, the longest wall
time, the largest peak PSS (proportional set size: pages a job shares with other processes, such
as libraries, font files and a forked DataLoader worker's pages, shared out among them) and RSS
(those pages counted in full in every process), the declared ``mem_mb`` and the largest PSS over
it. Exits with status 1 when a job's PSS is over its declaration.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    rule: str
    benchmark: str
    mem_mb: int


def declared_jobs(targets: list[str], directory: str, configfiles: list[str]) -> list[Job]:
    """Every job of the targets (a forced dry run) with its benchmark record's path and mem_mb;
    ``configfiles`` as the run's ``--configfile`` gave them (none: the Snakefile's default)."""
    if not os.path.isdir(directory):  # the dry run would make it, and find nothing in it
        what = "not a folder" if os.path.exists(directory) else "no such folder"
        sys.exit(f"error: --directory {directory}: {what}")
    for path in configfiles:
        if os.path.isdir(path):
            sys.exit(f"error: --configfile {path}: a folder, not a config file")
        if not os.path.isfile(path):
            sys.exit(f"error: --configfile {path}: no such file")
    cmd = [str(SNAKEMAKE), "-n", "--forceall", "--cores", "2"]
    cmd += ["--snakefile", str(REPO / "Snakefile"), "--directory", directory, *targets]
    if configfiles:
        cmd += ["--configfile", *map(os.path.abspath, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # Snakemake 9 prints its error on stdout, a warning on stderr
        said = "\n".join(part.strip() for part in (proc.stderr, proc.stdout) if part.strip())
        sys.exit(f"error: the dry run failed:\n{said[-3000:]}")
    jobs: list[Job] = []
    rule = benchmark = None
    for line in proc.stdout.splitlines():
        line = line.strip()
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule, benchmark = m.group(1), None
        elif line.startswith("benchmark: "):
            benchmark = line.split(": ", 1)[1]
        elif line.startswith("resources: ") and rule and benchmark:
            mem = re.search(r"\bmem_mb=(\d+)", line)
            if mem:
                jobs.append(Job(rule, benchmark, int(mem.group(1))))
            rule = benchmark = None
    return jobs


def read_record(path: Path) -> dict[str, float]:
    """A Snakemake benchmark record: its first (only) row, the numeric columns; a record
    without one (a file cut short) or that is not text ends the command, naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            row = next(csv.DictReader(f, delimiter="\t"), None)
    except (UnicodeDecodeError, csv.Error) as e:
        sys.exit(f"error: {path}: not a benchmark record ({e})")
    if row is None:
        sys.exit(f"error: {path}: not a benchmark record (no row under a header)")
    out = {}
    for key, value in row.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["all"])
    parser.add_argument("--directory", default=".", help="where the workflow ran")
    parser.add_argument(
        "--configfile",
        nargs="+",
        default=[],
        help="its config file(s), as the run gave them (default: configs/config.yaml); it "
        "takes every word after it, so give targets before it",
    )
    args = parser.parse_intermixed_args(argv)

    jobs = declared_jobs(args.targets, args.directory, args.configfile)
    rows: dict[str, dict[str, float]] = {}
    over = []
    for job in jobs:
        path = Path(args.directory) / job.benchmark
        if not path.is_file():
            continue
        rec = read_record(path)
        pss, rss, wall = rec.get("max_pss", 0.0), rec.get("max_rss", 0.0), rec.get("s", 0.0)
        r = rows.setdefault(
            job.rule, {"jobs": 0, "wall": 0.0, "pss": 0.0, "rss": 0.0, "mem_mb": 0, "ratio": 0.0}
        )
        r["jobs"] += 1
        r["wall"] = max(r["wall"], wall)
        r["pss"] = max(r["pss"], pss)
        r["rss"] = max(r["rss"], rss)
        r["mem_mb"] = max(r["mem_mb"], job.mem_mb)
        r["ratio"] = max(r["ratio"], pss / job.mem_mb)
        if pss > job.mem_mb:
            over.append(f"{job.benchmark}: {pss:.0f} MB PSS, declares {job.mem_mb}")
    if not rows:
        sys.exit(f"error: no benchmark records of these jobs under {args.directory}")
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{sum(int(r['jobs']) for r in rows.values())} of {len(jobs)} jobs have a record")
    print("| rule | jobs | longest s | peak PSS MB | peak RSS MB | mem_mb | PSS / mem_mb |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rule, r in sorted(rows.items(), key=lambda kv: -kv[1]["ratio"]):
        print(
            f"| {rule} | {int(r['jobs'])} | {r['wall']:.1f} | {r['pss']:.0f} | {r['rss']:.0f} "
            f"| {int(r['mem_mb'])} | {r['ratio']:.2f} |"
        )
    for line in over:
        print(f"over: {line}")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
