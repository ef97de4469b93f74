#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args]; multi-node: set NNODES, NODE_RANK,
# MASTER_ADDR on every node. CPU-only machines run it with the gloo backend.
CONFIG=$1
GPUS=$2
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
    "$DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
