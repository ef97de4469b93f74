#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
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
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
