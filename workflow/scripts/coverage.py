"""Snakemake adapter: what every face of one role (training or held-out fonts) covers of one
task's charset, as built from its source (before the charset job drops what no face covers)."""

from synth import joblog
from synth.fonts import files_log, resolve_font_files, scan_files, write_coverage
from synth.specs import CharsetSpec

joblog.start(snakemake.log[0])
w, params = snakemake.wildcards, snakemake.params
chars = CharsetSpec.from_config(params.charset, f"tasks.{w.task}.charset").build()
# The role's files are the job's inputs, resolved when the workflow started: a training file
# that is also held out is not among them. They are not a parameter, so listing a held-out font
# that a training glob matches too (one put in fonts/) reruns no training job. The patterns are
# resolved again here for their warnings (a pattern matching nothing, a broken link). Those, and
# why a file is left out, go to the job's log alone (files_log): the workflow said them once on
# the console when it started, and the task's four coverage jobs would say them four times.
inputs = set(snakemake.input.fonts)
files = []
for f in resolve_font_files(params.patterns):
    if f.path in inputs:
        files.append(f)
    else:
        files_log.warning(
            "font %s: left out of the %s fonts when the workflow started: %s (its warning there "
            "says which)",
            f.path,
            "training" if w.role == "train" else "held-out",
            "held out (fonts.test_fonts lists it, a copy or another version of it), the same "
            "bytes as another training font, or faces another training file holds"
            if w.role == "train"
            else "the same bytes as another held-out font",
        )
records = scan_files(files, w.role, chars, params.exclude_families, params.misdrawn)
write_coverage(records, {w.task: chars}, snakemake.output[0])
