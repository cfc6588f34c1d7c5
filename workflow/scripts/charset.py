"""Snakemake adapter: build a task's charset, check it against the training fonts, write it."""

import logging

from synth.charset import write_charset
from synth.fonts import covered_charset
from synth.specs import CharsetSpec, FontsSpec

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
task = snakemake.wildcards.task
spec = CharsetSpec.from_config(snakemake.params.charset, f"tasks.{task}.charset")
fonts = FontsSpec.from_config(snakemake.params.fonts)
chars = spec.build()
exclude = (*fonts.exclude_families, *snakemake.params.exclude_families)  # and the task's own
chars = covered_charset(chars, fonts.paths, exclude, fonts.uncovered, task, fonts.test_fonts)
write_charset(chars, snakemake.output[0])
logging.getLogger(__name__).info("%s: %d characters", task, len(chars))
