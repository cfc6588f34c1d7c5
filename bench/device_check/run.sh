#!/usr/bin/env bash
# The GPU device check: the one command of a `run` call on the device machine (BENCHMARKS.md,
# "Device check"). Needs .devcheck/ from bench/device_check/prepare.py, carried with the call.
#
#   bash bench/device_check/run.sh                          on the device: cuda, about 9 min
#   DEVICE=cpu PYTHON=.venv/bin/python bash bench/device_check/run.sh   rehearsal, tiny steps
#   STAGES="reader" T_READER=300 bash bench/device_check/run.sh         one stage again
#
# Stages (each command hard-stopped by `timeout`; a failed or stopped one is recorded and the
# next one runs; the whole script stops itself at BUDGET_S):
#   env       nvidia-smi, torch and CUDA versions, every module the stages run imported (the
#             carried wheels are installed into $SITE first, before anything imports them)
#   train     python -m models.train on cuda (bf16 autocast) for each experiment, STEPS steps
#   resume    a training SIGKILLed after its first checkpoint, rerun: resumed from that step?
#   ddp       torchrun --standalone, 1 process, then 2 processes (where there are 2 GPUs)
#   evaluate  models.evaluate on test_heldout for every model the train stage wrote, and
#             models.export (onnxruntime parity) for those of EXPORTS
#   recognize models.recognize (the user's command) on PNG files out of test_heldout, for each
#             of RECOGNIZE: on the device, then on the CPU (same readings?)
#   render    the shards of RENDER_TASKS at gpu.yaml's full size (its train, val and
#             test_heldout splits), drawn on the device's cores from the faces prepare.py cut
#             down to each task's characters (kit.py fonts; the images are the workflow's, byte
#             for byte); the reader and expr stages train on them
#   reader    gpu.yaml's short_reader in full (10,000 steps) within T_READER s, then its
#             held-out whole-word accuracy (target 0.87 within 5 min of training)
#   expr      gpu.yaml's expr_crnn in full (20,000 steps, about 7 min on the H200) within
#             T_EXPR s, then its held-out sequence and value accuracy (target 0.999); not in the
#             default STAGES: it needs most of a session's device time, so run it on its own:
#             STAGES="env render expr" BUDGET_S=560 bash bench/device_check/run.sh
#   bench     bench/bench_train.py: pipeline vs in-memory images/s (target >= 0.9), for each
#             of BENCH_EXPERIMENTS; last, as it gets the time the others leave (a row is
#             printed, and kept, as each experiment is measured)
# Results: $OUT/summary.md (also printed last), summary.json, run.log, env.txt, results.tar.gz
# (every stage's log, history.csv, train.json, metrics.json, bench.json).
set -uo pipefail

# ---- what runs, and for how long (seconds); edit here or set in the environment -------------
DEVICE=${DEVICE:-cuda}
STAGES=${STAGES:-"env train resume ddp evaluate recognize render reader bench"}
EXPERIMENTS=${EXPERIMENTS:-"hanzi_cnn expr_crnn line_crnn_vgg line_crnn_grcnn short_reader"}
EXPORTS=${EXPORTS:-"expr_crnn line_crnn_vgg short_reader"}  # fixed size, dynamic width, attention
RECOGNIZE=${RECOGNIZE:-"hanzi_cnn line_crnn_vgg"}  # a classifier, and lines of any width
# the line model first: its ratio was the furthest from the target in the first GPU run
BENCH_EXPERIMENTS=${BENCH_EXPERIMENTS:-"line_crnn_vgg hanzi_cnn expr_crnn line_crnn_grcnn short_reader"}
MIN_LEFT_S=${MIN_LEFT_S:-15}    # a command with less than this left is skipped
# the tasks the render stage draws: those of the full-size stages asked for
RENDER_TASKS=${RENDER_TASKS:-"$([[ " $STAGES " == *" reader "* ]] && echo short) $([[ " $STAGES " == *" expr "* ]] && echo expr)"}
RENDER_TASKS=$(echo $RENDER_TASKS) # one space between names, none around them
T_ENV=${T_ENV:-60}              # the install, and the imports
if [ "$DEVICE" = cpu ]; then    # the rehearsal: every stage end to end, a few small steps each
  STEPS=${STEPS:-"hanzi_cnn=3 expr_crnn=3 line_crnn_vgg=3 line_crnn_grcnn=3 short_reader=4"}
  SMALL="batch_size=8 val_batches=1 num_workers=2"
  TRAIN_SET=${TRAIN_SET:-"log_every=1 $SMALL"}
  RESUME_SET=${RESUME_SET:-"steps=8 checkpoint_every=3 val_every=4 log_every=1 $SMALL"}
  DDP_SET=${DDP_SET:-"steps=3 log_every=1 $SMALL"}
  BENCH_SET=${BENCH_SET:-"batch_size=8"}
  BENCH_ARGS=${BENCH_ARGS:-"--steps 2 --rounds 1 --warmup 1 --workers 2"}
  READER_SET=${READER_SET:-"steps=20 curriculum_steps=5 val_batches=1 num_workers=2"}
  INSTALL=${INSTALL:-0}         # the environment running it has the packages
  BUDGET_S=${BUDGET_S:-1800} T_TRAIN=${T_TRAIN:-120} T_RESUME=${T_RESUME:-180}
  T_DDP=${T_DDP:-120} T_BENCH=${T_BENCH:-300} T_EVALUATE=${T_EVALUATE:-240} T_READER=${T_READER:-120}
  T_RECOGNIZE=${T_RECOGNIZE:-120} N_RECOGNIZE=${N_RECOGNIZE:-16}
  T_RENDER=${T_RENDER:-120} T_EXPR=${T_EXPR:-120}
  EXPR_SET=${EXPR_SET:-"steps=6 val_batches=1 num_workers=2 batch_size=8"}
  FULL_CONFIG=${FULL_CONFIG:-}  # the kit's config: its small splits are rendered again
else
  # Sized on the H200 run of 2026-12-04 (BENCHMARKS.md, "Device check"): the stages before the
  # reader should take about 240 s and the render some 15 s, the reader's 10,000 steps about
  # 200 s, and the bench, last, the 70 s or so that are left.
  BUDGET_S=${BUDGET_S:-570}     # the whole script; run it with timeout_s >= BUDGET_S + 30
  T_TRAIN=${T_TRAIN:-50}        # per experiment
  T_RESUME=${T_RESUME:-60}      # both runs
  T_DDP=${T_DDP:-40}            # per torchrun
  T_BENCH=${T_BENCH:-120}       # all experiments (last: it gets what is left)
  T_EVALUATE=${T_EVALUATE:-25}  # per experiment, and as much again for its export
  T_RECOGNIZE=${T_RECOGNIZE:-30} N_RECOGNIZE=${N_RECOGNIZE:-64}  # per experiment, both devices
  # training: its 10,000 steps took about 200 s of the stage on the H200, and it now reads
  # 320,000 training labels first (seconds); its evaluation gets up to 30 s more
  T_READER=${T_READER:-235}
  T_RENDER=${T_RENDER:-90}      # 16 cores: 330,000 images of short and 225,000 of expr take 212 s on 2
  # training: 432 s of steps at the H200's 5,930 images/s; stopped at the limit, its last
  # checkpoint (every 1000 steps) is read. Its call: STAGES="env render expr" BUDGET_S=560,
  # timeout_s 600: env and render about 65 s, training at most 450 s, then evaluation (its
  # figures are in run.log as it ends) and the summary by about 580 s
  T_EXPR=${T_EXPR:-450}
  EXPR_SET=${EXPR_SET:-""}      # nothing: gpu.yaml's training of expr_crnn as it stands
  # steps of the train stage: about 15-30 s of training each on the H200 (hanzi_cnn 20,000
  # images/s at batch 256, expr_crnn 5900, line_crnn_vgg 4200, line_crnn_grcnn 1500 at 128,
  # short_reader 1800 at 32); the reader stage trains short_reader in full
  STEPS=${STEPS:-"hanzi_cnn=800 expr_crnn=600 line_crnn_vgg=400 line_crnn_grcnn=200 short_reader=300"}
  TRAIN_SET=${TRAIN_SET:-"log_every=25"}
  RESUME_SET=${RESUME_SET:-"steps=300 checkpoint_every=100 val_every=100 log_every=25"}
  DDP_SET=${DDP_SET:-"steps=200 log_every=25"}
  BENCH_SET=${BENCH_SET:-""}    # nothing: gpu.yaml's batch sizes and workers
  # rounds of 40 steps: a GPU step takes milliseconds (rounds of 20 lasted 0.1-1.7 s)
  BENCH_ARGS=${BENCH_ARGS:-"--steps 40 --rounds 3 --warmup 5"}
  READER_SET=${READER_SET:-""}  # nothing: gpu.yaml's training of short_reader as it stands
  INSTALL=${INSTALL:-1}
  FULL_CONFIG=${FULL_CONFIG:-configs/gpu.yaml}  # its splits in full
fi
# ---------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
KIT=${KIT:-$ROOT/.devcheck}
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
WHEELS=${WHEELS:-$KIT/wheels}
WORK=${WORK:-/tmp/devcheck}
export WORK                 # the env stage's Python writes env.json there
OUT=${OUT:-$WORK/out}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S - 10))  # 10 s for the summary
LOGS=$WORK/logs
rm -rf "$WORK"
mkdir -p "$LOGS" "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
CONFIG=$KIT/config.yaml
FULL_CONFIG=${FULL_CONFIG:-$CONFIG}
DATA=$WORK/data/results   # charsets/ and shards/, unpacked from data.tar.xz
FONTS=$WORK/data/devfonts/faces.json  # the faces the render stage draws with
FULL=$WORK/full           # charsets/ and shards/ the render stage writes
kit() { "$PYTHON" "$ROOT/bench/device_check/kit.py" "$@"; }
wants() { [[ " $STAGES " == *" $1 "* ]]; }

# step STAGE ITEM LIMIT CMD...: CMD under `timeout` (at most LIMIT s, never past the deadline),
# its output in $LOGS/STAGE-ITEM.log; a row in stages.tsv; returns CMD's status
step() {
  local stage=$1 item=$2 limit=$3 left rc status t0
  shift 3
  left=$((DEADLINE - $(date +%s)))
  if ((left < MIN_LEFT_S)); then
    printf '%s\t%s\tskipped\t-\t0\n' "$stage" "$item" >>"$WORK/stages.tsv"
    echo "== $stage $item: skipped, ${left}s left of the budget"
    return 99
  fi
  ((limit > left)) && limit=$left
  echo "== $stage $item (limit ${limit}s, $((DEADLINE - START - left))s elapsed): $*"
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" >"$LOGS/$stage-$item.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=fail ;; esac
  printf '%s\t%s\t%s\t%s\t%.1f\n' "$stage" "$item" "$status" "$rc" \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" >>"$WORK/stages.tsv"
  echo "   $status (rc $rc); last lines:"
  tail -n 3 "$LOGS/$stage-$item.log" | cut -c1-200 | sed 's/^/   | /'
  return $rc
}

# results_dir NAME [DATA]: a results folder of its own (models/ apart) over the unpacked data
# (or over DATA's charsets/ and shards/)
results_dir() {
  local data=${2:-$DATA}
  mkdir -p "$WORK/$1"
  ln -sfn "$data/charsets" "$WORK/$1/charsets"
  ln -sfn "$data/shards" "$WORK/$1/shards"
  echo "$WORK/$1"
}

# full STAGE EXPERIMENT LIMIT SET...: EXPERIMENT trained as FULL_CONFIG has it (SET's train
# keys over it) on the rendered shards, at most LIMIT s, then read on all of its task's
# rendered test_heldout shards (its last resumable checkpoint when the limit stopped it)
full() {
  local stage=$1 exp=$2 limit=$3 task decoder res model left
  shift 3
  if [ ! -d "$FULL/shards" ]; then
    printf '%s\ttrain\tskipped\t-\t0\n' "$stage" >>"$WORK/stages.tsv"
    echo "== $stage: skipped, nothing rendered (the render stage)"
    return
  fi
  read -r task decoder < <(kit info "$FULL_CONFIG" "$exp")
  kit config "$FULL_CONFIG" "$WORK/$stage.yaml" --only "$exp" --set "$@"
  res=$(results_dir "$stage" "$FULL")
  left=$((DEADLINE - $(date +%s) - 30))
  ((left < limit)) && echo "   $exp gets ${left}s, not ${limit}s: the budget"
  step "$stage" train "$limit" "$PYTHON" -m models.train --config "$WORK/$stage.yaml" \
    --experiment "$exp" --results "$res" --device "$DEVICE"
  model=$res/models/$exp/model.pt
  [ -f "$model" ] || model=$(ls -t "$res/models/$exp"/resume/*/last.pt 2>/dev/null | head -1)
  # the grammar decoder reads the expressions the task draws, as the workflow's evaluation does
  local grammar=()
  [ "$decoder" = grammar ] && grammar=(--task-config "$WORK/$stage.yaml")
  if [ -n "$model" ]; then
    DEADLINE=$((DEADLINE + 30)) step "$stage" evaluate 60 "$PYTHON" -m models.evaluate "$model" \
      "$FULL/shards/$task"/test_heldout-*.tar --out "$WORK/$stage/eval" --device "$DEVICE" \
      --decoder "$decoder" "${grammar[@]}"
  fi
}

echo "device check: DEVICE=$DEVICE, stages: $STAGES; budget ${BUDGET_S}s; python $PYTHON"
if [ ! -f "$KIT/data.tar.xz" ]; then
  echo "error: $KIT/data.tar.xz missing: run bench/device_check/prepare.py and carry .devcheck"
  exit 2
fi
# The carried wheels before anything else: kit.py, the unpacking below too, imports the
# project's config code, which needs jsonschema (the first device run stopped right here).
if [ "$INSTALL" = 1 ]; then
  step env install "$T_ENV" "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
fi
kit unpack "$KIT/data.tar.xz" "$WORK/data" || exit 2

if wants env; then
  { nvidia-smi || echo "(no nvidia-smi)"; uname -a; nproc; free -g; } >"$OUT/env.txt" 2>&1
  step env imports "$T_ENV" "$PYTHON" - <<'PY'
import json, os, sys
import torch
sys.path.insert(0, "bench")
import models.train, models.evaluate, models.export, models.data, bench_train  # noqa
cuda = torch.cuda.is_available()
env = {
    "python": sys.version.split()[0],
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0) if cuda else None,
    "bf16": torch.cuda.is_bf16_supported() if cuda else None,
    "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None,
    "cpus": os.cpu_count(),
}
print(json.dumps(env))
open(os.environ["WORK"] + "/env.json", "w").write(json.dumps(env))
PY
fi

if wants train; then
  kit config "$CONFIG" "$WORK/train.yaml" --steps $STEPS --set $TRAIN_SET
  res=$(results_dir train)
  for exp in $EXPERIMENTS; do
    step train "$exp" "$T_TRAIN" "$PYTHON" -m models.train --config "$WORK/train.yaml" \
      --experiment "$exp" --results "$res" --device "$DEVICE"
  done
fi

if wants resume; then
  kit config "$CONFIG" "$WORK/resume.yaml" --set $RESUME_SET
  step resume expr_crnn "$T_RESUME" "$PYTHON" "$ROOT/bench/device_check/kit.py" resume \
    --config "$WORK/resume.yaml" --results "$(results_dir resume)" --experiment expr_crnn \
    --device "$DEVICE" --log "$LOGS/resume-runs.log" --json "$WORK/resume.json"
fi

if wants ddp; then
  # models.train joins a process group only with more than one process: one process checks
  # torchrun's launch alone; two check DDP and NCCL, where there are two GPUs (a rank needs one
  # of its own: NCCL refuses two ranks on one device, and models.devices says so first)
  kit config "$CONFIG" "$WORK/ddp.yaml" --set $DDP_SET
  gpus=2
  [ "$DEVICE" = cuda ] && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  ((gpus < 1)) && gpus=1 # no nvidia-smi: one process runs on any GPU
  for n in 1 2; do
    if ((n > gpus)); then
      printf 'ddp\tnproc%s\tskipped\t-\t0\n' "$n" >>"$WORK/stages.tsv"
      echo "== ddp nproc$n: skipped, ${gpus} GPU(s) here: each rank needs a GPU of its own"
      continue
    fi
    step ddp "nproc$n" "$T_DDP" "$PYTHON" -m torch.distributed.run --standalone \
      --nproc_per_node="$n" -m models.train --config "$WORK/ddp.yaml" --experiment expr_crnn \
      --results "$(results_dir "nproc$n")" --device "$DEVICE"
  done
fi

if wants evaluate; then
  for exp in $EXPERIMENTS; do
    model=$WORK/train/models/$exp/model.pt
    [ -f "$model" ] || continue
    read -r task decoder < <(kit info "$CONFIG" "$exp")
    step evaluate "$exp" "$T_EVALUATE" "$PYTHON" -m models.evaluate "$model" \
      "$DATA/shards/$task/test_heldout-000000.tar" --out "$WORK/eval/$exp" \
      --decoder "$decoder" --device "$DEVICE"
    [[ " $EXPORTS " == *" $exp "* ]] || continue
    mkdir -p "$WORK/onnx"
    step export "$exp" "$T_EVALUATE" "$PYTHON" -m models.export "$model" "$WORK/onnx/$exp.onnx"
  done
fi

if wants recognize; then
  for exp in $RECOGNIZE; do
    model=$WORK/train/models/$exp/model.pt
    [ -f "$model" ] || continue
    read -r task _ < <(kit info "$CONFIG" "$exp")
    mkdir -p "$WORK/recognize"
    step recognize "$exp" "$T_RECOGNIZE" "$PYTHON" "$ROOT/bench/device_check/kit.py" recognize \
      --model "$model" --shard "$DATA/shards/$task/test_heldout-000000.tar" --n "$N_RECOGNIZE" \
      --dest "$WORK/recognize/$exp-images" --device "$DEVICE" --json "$WORK/recognize/$exp.json"
  done
fi

if wants render && [ -n "$RENDER_TASKS" ]; then
  step render "${RENDER_TASKS// /+}" "$T_RENDER" "$PYTHON" "$ROOT/bench/device_check/kit.py" \
    render --config "$FULL_CONFIG" --fonts "$FONTS" --charsets "$DATA/charsets" \
    --tasks $RENDER_TASKS --dest "$FULL" --workers "$(nproc)"
fi

wants reader && full reader short_reader "$T_READER" $READER_SET
wants expr && full expr expr_crnn "$T_EXPR" $EXPR_SET

if wants bench; then
  kit config "$CONFIG" "$WORK/bench.yaml" --set $BENCH_SET
  step bench all "$T_BENCH" "$PYTHON" bench/bench_train.py --config "$WORK/bench.yaml" --results "$DATA" \
    --device "$DEVICE" $BENCH_ARGS --json "$WORK/bench.json" --experiments $BENCH_EXPERIMENTS
fi

kit summarize --work "$WORK" --out "$OUT" --device "$DEVICE"
cp "$WORK/stages.tsv" "$LOGS/" 2>/dev/null
(cd "$WORK" && tar -czf "$OUT/results.tar.gz" logs ./*.json ./*.yaml \
  $(find . -path ./data -prune -o \( -name history.csv -o -name train.json -o -name metrics.json \) -print) \
  $(find ./recognize -maxdepth 1 -name '*.json' 2>/dev/null) \
  2>/dev/null)
echo "device check done in $(($(date +%s) - START))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
