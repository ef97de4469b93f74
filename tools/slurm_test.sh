#!/usr/bin/env bash
# Usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
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
    $PYTHON -u "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher="slurm" "${@:5}"
