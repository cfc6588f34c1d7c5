# synthocr: fonts in, trained and evaluated text recognizers out.
#
#   snakemake --cores all results/crnn_report.csv            default config (configs/config.yaml)
#   snakemake --cores all --configfile configs/smoke.yaml    another config instead of the default
#   snakemake --cores all --configfile configs/lines_cpu.yaml  the default, with line models that read
#   snakemake --cores all --configfile configs/lines_cpu_long.yaml  and both trained on, past Tesseract
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the default config rather than being merged into it: each config file
# is complete on its own (missing keys take the schema's defaults), or names the config it builds
# on (`extends: config.yaml`, as configs/lines_cpu.yaml does; common.smk lays it on that base).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/configs/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"


wildcard_constraints:
    task="|".join(TASKS),
    split="|".join(SPLITS),
    role="|".join(ROLES),
    shard=r"\d{6}",
    experiment="|".join(EXPERIMENTS) if EXPERIMENTS else "(?!)",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
