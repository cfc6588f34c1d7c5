"""Shard indexing before training: the direct ustar header reader vs Python's tarfile, same
shards, same run, one core.

    python bench/bench_index.py SHARD... [--rounds 3]

`models.data.TrainStream` indexes every training shard (where each sample's members lie) before
its first step. The two ways alternate round by round on the same files (warm in the page cache
after the first read of each, so the figures are the parsing cost, not the disk's); the indexes
they build are checked to be equal. Prints microseconds per sample and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from models import data
from models.cli import positive_int
from models.evaluate import shard_arguments_problem


def _tarfile_only(url: str):
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", help="tar shards to index")
    parser.add_argument("--rounds", type=positive_int, default=3)
    args = parser.parse_args()
    if problem := shard_arguments_problem(args.shards):
        sys.exit(f"error: {problem}")
    direct = data._plain_ustar_members
    for url in args.shards:  # once each, untimed: into the page cache, and the two indexes agree
        try:
            a = data.index_shard(url)
        except data.ShardError as e:  # names the shard
            sys.exit(f"error: {e}")
        data._plain_ustar_members = _tarfile_only
        try:
            agree = data.index_shard(url) == a
        finally:
            data._plain_ustar_members = direct
        if not agree:  # a benchmark of two readers that disagree measures nothing (not -O's)
            sys.exit(f"error: {url}: the direct and tarfile indexes differ (a bug in direct)")
    samples = sum(len(data.index_shard(u).samples) for u in args.shards)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{len(args.shards)} shards, {samples} samples")
    print("| round | direct us/sample | tarfile us/sample | tarfile / direct |")
    print("|---|---:|---:|---:|")
    for r in range(1, args.rounds + 1):
        times = {}
        for name, reader in (("direct", direct), ("tarfile", _tarfile_only)):
            data._plain_ustar_members = reader
            try:
                start = time.perf_counter()
                for url in args.shards:
                    data.index_shard(url)
                times[name] = (time.perf_counter() - start) / samples * 1e6
            finally:
                data._plain_ustar_members = direct
        ratio = times["tarfile"] / times["direct"]
        print(f"| {r} | {times['direct']:.1f} | {times['tarfile']:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
