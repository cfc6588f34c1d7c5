"""Snakemake adapter: the per-task and per-role coverage tables merged into one overview."""

from synth import joblog
from synth.fonts import merge_coverage

joblog.start(snakemake.log[0])
merge_coverage(list(snakemake.input), snakemake.output[0])
