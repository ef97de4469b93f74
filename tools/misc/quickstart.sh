#!/usr/bin/env bash
# make quickstart: synthetic YouTube-VIS-format data (if missing) -> train -> test -> AP.
# Usage: tools/misc/quickstart.sh CONFIG DATA_DIR WORK_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-configs/ttsrn/ttsrn_synthetic.py}
DATA=${2:-data/synthetic_vis}
WORK_DIR=${3:-work_dirs/ttsrn_synthetic}
PY=${PY:-.venv/bin/python}
start=$(date +%s)

if [ ! -f "$DATA/annotations/train.json" ]; then
  echo "[quickstart] generating the synthetic dataset in $DATA"
  $PY tools/dataset_converters/make_synthetic_vis.py --out "$DATA" --num-train 120 --num-val 20
else
  echo "[quickstart] using the synthetic dataset in $DATA"
fi

echo "[quickstart] training $CONFIG into $WORK_DIR"
$PY tools/train.py "$CONFIG" --work-dir "$WORK_DIR" \
  --cfg-options train_dataloader.dataset.data_root="$DATA/" \
  val_dataloader.dataset.data_root="$DATA/" test_dataloader.dataset.data_root="$DATA/"
ckpt=$(cat "$WORK_DIR/last_checkpoint")

echo "[quickstart] testing $ckpt on the held-out split"
$PY tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR" \
  --cfg-options test_dataloader.dataset.data_root="$DATA/" \
  test_evaluator.outfile_prefix="$WORK_DIR/results" | tee "$WORK_DIR/test.log"

echo
echo "[quickstart] done in $(( $(date +%s) - start )) s"
grep -E "youtube_vis/(segm_)?mAP" "$WORK_DIR/test.log" | tail -n 1 || true
echo "[quickstart] results.json: $WORK_DIR/results.json (server zip: $WORK_DIR/results.submission_file.zip)"
