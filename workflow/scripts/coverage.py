"""Snakemake adapter: what every face of one role (training or held-out fonts) covers of one
task's charset, as built from its source (before the charset job drops what no face covers)."""

import logging

from synth.fonts import scan_files, split_roles, write_coverage
from synth.specs import CharsetSpec

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
w, params = snakemake.wildcards, snakemake.params
chars = CharsetSpec.from_config(params.charset, f"tasks.{w.task}.charset").build()
# The role's files, less the training files also held out (logged).
files, _ = split_roles(params.patterns, params.held_out)
records = scan_files(files, w.role, chars, params.exclude_families)
write_coverage(records, {w.task: chars}, snakemake.output[0])
