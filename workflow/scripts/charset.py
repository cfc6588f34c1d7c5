"""Snakemake adapter: build a task's charset, check it against the training fonts' coverage
table, write it."""

import logging

from synth import joblog
from synth.charset import write_charset
from synth.fonts import apply_uncovered_policy, read_coverage
from synth.specs import CharsetSpec

joblog.start(snakemake.log[0])
task, params = snakemake.wildcards.task, snakemake.params
chars = CharsetSpec.from_config(params.charset, f"tasks.{task}.charset").build()
# The task's own exclude_families apply here (the coverage job applied fonts.exclude_families).
faces = read_coverage(snakemake.input.coverage, task, chars, "train", params.exclude_families)
chars = apply_uncovered_policy(
    chars, faces, params.uncovered, f"tasks.{task}.charset", params.misdrawn
)
write_charset(chars, snakemake.output[0])
logging.getLogger(__name__).info("%s: %d characters", task, len(chars))
