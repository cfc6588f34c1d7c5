"""Snakemake adapter: a task's shard manifest (split, shard, samples, bytes, sha256)."""

from synth import joblog
from synth.shards import write_manifest

joblog.start(snakemake.log[0])
write_manifest(list(snakemake.input), snakemake.output[0])
