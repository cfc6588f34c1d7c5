# Two GPU jobs never share one GPU on one machine, with or without a profile: unless --resources
# gpu=N (or a profile's `resources`) says how many GPUs there are, a local run has one. Training
# and evaluation declare gpu=1 on a GPU (common.smk's accelerator_jobs). On a cluster
# (--executor slurm) nothing is set here: the executor gives each job a GPU of its own. Snakemake
# reads this file before it loads its executor (workflow.local_exec is True here whatever
# --executor says), so a cluster run is told by what it asks for: --jobs (nodes), no --cores.
from snakemake.resources import Resource

_cluster = workflow.nodes is not None and workflow.resource_settings.cores is None
if not _cluster and "gpu" not in workflow.global_resources:
    workflow.global_resources["gpu"] = Resource("gpu", 1)
