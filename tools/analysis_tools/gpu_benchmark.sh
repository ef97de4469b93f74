#!/usr/bin/env bash
# The GPU figures of docs/benchmark.md in one run: the paper config on one
# 36 x 300 x 540 clip against mmdet's Mask2Former-VIS R50 in the same process,
# predict in fp32 and bf16 (with and without torch.compile), then one training
# iteration in fp32 and bf16 with activation checkpointing, then TT-SRN's
# predict as CUDA graphs (test_cfg.cuda_graphs; the peer as it is), also with
# the deformable conv compiled by inductor or as one Triton kernel
# (mask_head.cuda_deform='compiled' / 'triton', the latter also with
# --compile).
#
#   tools/analysis_tools/gpu_benchmark.sh [OUT_DIR]
#
# Each run writes OUT_DIR/<name>.jsonl (benchmark.py's JSON lines) and
# OUT_DIR/<name>.log (all its output); a run that fails or passes RUN_TIMEOUT seconds is
# reported and the next one starts. PYTHON overrides the interpreter
# (default: the project's .venv when it exists, else python); DEVICE, FRAMES
# and SIZE the clip, for a dry run (DEVICE=cpu FRAMES=2 SIZE="64 96"); RUNS
# the names of the runs to do, separated by spaces (default: all twelve, in
# the order below).
set -u
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-work_dirs/gpu_benchmark}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
CONFIG=configs/ttsrn/ttsrn_yvis.py
PEER=mmdet::mask2former_vis/mask2former_r50_8xb2-8e_youtubevis2019.py
# shellcheck disable=SC2206
CLIP=(--frames "${FRAMES:-36}" --size ${SIZE:-300 540} --device "${DEVICE:-cuda}")
GRAPHS=(--cfg-options model.test_cfg.cuda_graphs=1)
CHECKPOINTING=(--cfg-options model.backbone.with_cp=True
               model.track_head.transformer.with_cp=True)
# The names of the bench calls at the end; RUNS may name only these.
NAMES=" predict_fp32 predict_bf16 train_fp32 train_bf16 predict_bf16_compile
 predict_fp32_compile predict_bf16_graph predict_fp32_graph
 predict_bf16_compile_graph predict_bf16_graph_compiled_deform
 predict_bf16_graph_triton_deform predict_bf16_compile_graph_triton_deform "
NAMES=$(echo $NAMES)
NAMES=" $NAMES "
for name in ${RUNS:-}; do
    case "$NAMES" in *" $name "*) ;; *)
        echo "RUNS: no run named '$name' (runs:$NAMES)" >&2; exit 2 ;; esac
done
mkdir -p "$OUT_DIR"

bench() {
    local name=$1
    shift
    case " ${RUNS:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name"
    # shellcheck disable=SC2086
    timeout "$RUN_TIMEOUT" $PYTHON tools/analysis_tools/benchmark.py \
        "$CONFIG" --compare "$PEER" "${CLIP[@]}" "$@" \
        >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    grep '^{' "$OUT_DIR/$name.log" | tee "$OUT_DIR/$name.jsonl"
    [ $rc -eq 0 ] || { echo "$name failed (exit $rc):"; tail -5 "$OUT_DIR/$name.log"; }
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
bench predict_fp32
bench predict_bf16 --dtype bf16
bench train_fp32 --train --warmup 1 --repeats 3 "${CHECKPOINTING[@]}"
bench train_bf16 --train --warmup 1 --repeats 3 --dtype bf16 "${CHECKPOINTING[@]}"
bench predict_bf16_compile --dtype bf16 --compile
bench predict_fp32_compile --compile
bench predict_bf16_graph --dtype bf16 "${GRAPHS[@]}"
bench predict_fp32_graph "${GRAPHS[@]}"
bench predict_bf16_compile_graph --dtype bf16 --compile "${GRAPHS[@]}"
bench predict_bf16_graph_compiled_deform --dtype bf16 "${GRAPHS[@]}" \
    --cfg-options model.track_head.mask_head.cuda_deform=compiled
bench predict_bf16_graph_triton_deform --dtype bf16 "${GRAPHS[@]}" \
    --cfg-options model.track_head.mask_head.cuda_deform=triton
bench predict_bf16_compile_graph_triton_deform --dtype bf16 --compile \
    "${GRAPHS[@]}" --cfg-options model.track_head.mask_head.cuda_deform=triton
