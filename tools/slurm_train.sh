#!/usr/bin/env bash
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# GPUS (total), GPUS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS come from the environment.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
DIR=$(dirname "$0")
# The project's environment (made by `make install`) unless PYTHON says
# otherwise; without .venv, the `python` on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$DIR/../.venv/bin/python" ]; then
    PYTHON="$DIR/../.venv/bin/python"
  else
    PYTHON=python
  fi
fi

PYTHONPATH="$DIR/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:$GPUS_PER_NODE \
    --ntasks=$GPUS \
    --ntasks-per-node=$GPUS_PER_NODE \
    --cpus-per-task=$CPUS_PER_TASK \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    $PYTHON -u "$DIR/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher="slurm" "${@:5}"
