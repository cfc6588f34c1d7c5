"""Snakemake adapter: every experiment's validation curves, overlaid task by task."""

from models.plots import plot_compare_curves
from synth import joblog

joblog.start(snakemake.log[0])
histories = {
    experiment: (task, history)
    for experiment, task, history in zip(
        snakemake.params.experiments, snakemake.params.tasks, snakemake.input, strict=True
    )
}
plot_compare_curves(histories, snakemake.output[0])
