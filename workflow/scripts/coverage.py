"""Snakemake adapter: coverage of every training and held-out face against every charset."""

import logging

from synth.charset import read_charset
from synth.fonts import scan_fonts, write_coverage
from synth.specs import FontsSpec

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
fonts = FontsSpec.from_config(snakemake.params.fonts)
tasks = snakemake.params.tasks
charsets = {t: read_charset(p) for t, p in zip(tasks, snakemake.input.charsets, strict=True)}
chars = set().union(*charsets.values())
records = scan_fonts(fonts.paths, fonts.test_fonts, chars, fonts.exclude_families)
write_coverage(records, charsets, snakemake.output[0])
