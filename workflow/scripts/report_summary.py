"""Snakemake adapter: results/summary.md from the metrics files and the config's references."""

from models.report import build_reports
from synth import joblog

joblog.start(snakemake.log[0])
build_reports(
    list(snakemake.input.crnn),
    list(snakemake.input.hanzi),
    list(snakemake.input.reader),
    snakemake.params.references,
    snakemake.output[0],
    plots=list(snakemake.input.plots),
    targets=snakemake.params.targets,
)
