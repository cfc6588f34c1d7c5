"""Snakemake adapter: render and write one shard."""

from synth import joblog
from synth.charset import read_charset
from synth.fonts import read_coverage
from synth.shards import write_shard
from synth.specs import ShardSpec, task_spec

joblog.start(snakemake.log[0])
w = snakemake.wildcards
spec = task_spec(w.task, snakemake.params.task)
shard = ShardSpec(w.task, w.split, int(w.shard), snakemake.params.samples, snakemake.params.seed)
charset = read_charset(snakemake.input.charset)
role = "test" if w.split == "test_heldout" else "train"
faces = read_coverage(snakemake.input.coverage, w.task, charset, role, spec.exclude_families)
write_shard(snakemake.output[0], spec, shard, charset, faces, misdrawn=snakemake.params.misdrawn)
