"""Snakemake adapter: the per-task and per-role coverage tables merged into one overview."""

import logging

from synth.fonts import merge_coverage

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
merge_coverage(list(snakemake.input), snakemake.output[0])
