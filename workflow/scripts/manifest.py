"""Snakemake adapter: a task's shard manifest (split, shard, samples, bytes, sha256)."""

import logging

from synth.shards import write_manifest

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
write_manifest(list(snakemake.input), snakemake.output[0])
