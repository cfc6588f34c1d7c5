"""Snakemake adapter: a contact sheet of a task's samples with their labels."""

from synth import joblog
from synth.charset import read_charset
from synth.fonts import read_coverage
from synth.preview import contact_sheet

joblog.start(snakemake.log[0])
charset = read_charset(snakemake.input.charset)
faces = read_coverage(snakemake.input.coverage, snakemake.wildcards.task, charset, "train")
# Labels are drawn with the training face that covers most of the charset.
best = max(faces, key=lambda f: len(f.covered)) if faces else None
contact_sheet(
    list(snakemake.input.shards), snakemake.output[0], n=snakemake.params.n, label_font=best
)
